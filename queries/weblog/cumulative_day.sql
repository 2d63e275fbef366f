-- CUMULATE: requests per status class so far this minute, updated every
-- 10 seconds (windows [S, S+10s), [S, S+20s), ... [S, S+60s)).
SELECT window_start, window_end, status / 100 AS class, count(*) AS requests
FROM TABLE(CUMULATE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, status / 100;

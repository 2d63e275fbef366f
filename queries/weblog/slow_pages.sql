-- Aggregates with FILTER and HAVING: per 10-second window, the pages whose
-- requests took more than 50 ms on average, with their error counts.
SELECT window_end, url, count(*) AS requests,
       count(*) FILTER (WHERE status >= 400) AS errors,
       sum(duration) AS total_duration
FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, url
HAVING avg(duration) > 0.05;

-- Load shedding: hits per IP in 5-second windows that keep within 500 ms
-- of the input. When the query falls behind, it sheds rows at a rate it
-- adapts and says so: each window's sample_rate, its estimated hits and
-- their 95 % error (exact, error 0, while nothing is shed).
SET max_lag = '500ms';
SELECT window_start, ip, count(*) AS hits, count_error(*) AS hits_error,
       avg(duration) AS avg_duration
FROM TUMBLE(weblog, ts, INTERVAL '5' SECOND)
GROUP BY window_start, window_end, ip;

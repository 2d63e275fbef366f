-- Count by key per window: requests per status code in 5-second windows
-- (the short TUMBLE form), with their average and maximum durations.
SELECT window_start, status, count(*) AS requests,
       avg(duration) AS avg_duration, max(duration) AS max_duration
FROM TUMBLE(weblog, ts, INTERVAL '5' SECOND)
GROUP BY window_start, window_end, status;

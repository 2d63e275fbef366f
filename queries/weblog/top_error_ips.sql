-- Top-N per window: the three IPs with the most error responses (status >= 400)
-- in each one-second tumbling window of event time. Each window is emitted once,
-- when the watermark (ts - 2 s) passes its end.
SELECT window_start, window_end, ip, count(*) AS hits
FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))
WHERE status >= 400
GROUP BY window_start, window_end, ip
ORDER BY hits DESC LIMIT 3;

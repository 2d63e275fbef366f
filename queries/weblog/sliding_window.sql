-- A 3-second window sliding every second (HOP): requests and distinct IPs
-- per URL section. Windows are merged from 1-second panes, so each slide
-- costs the same however long the window is.
SELECT window_start, window_end, split_part(url, '/', 2) AS section,
       count(*) AS requests, count(DISTINCT ip) AS ips
FROM TABLE(HOP(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND))
GROUP BY window_start, window_end, split_part(url, '/', 2);

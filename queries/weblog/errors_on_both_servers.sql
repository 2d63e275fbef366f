-- A window join (Nexmark q8's shape): per 10-second window, the clients that
-- got errors from both servers, with their error counts on each.
SELECT a.window_start, a.ip, a.errors AS errors_a, b.errors AS errors_b
FROM (SELECT ip, window_start, window_end, count(*) AS errors
      FROM TUMBLE(weblog, ts, INTERVAL '10' SECOND) WHERE status >= 500
      GROUP BY ip, window_start, window_end) a
JOIN (SELECT ip, window_start, window_end, count(*) AS errors
      FROM TUMBLE(weblog_b, ts, INTERVAL '10' SECOND) WHERE status >= 500
      GROUP BY ip, window_start, window_end) b
  ON a.ip = b.ip AND a.window_start = b.window_start AND a.window_end = b.window_end;

-- An interval join of two web-log streams by client IP: each request to the
-- first server that the same client followed with a request to the second
-- server within 500 ms. State is purged as the watermark passes, so memory
-- stays flat however long it runs.
SELECT a.ts, a.ip, a.url AS first_url, b.url AS then_url, b.ts - a.ts AS after
FROM weblog a
JOIN weblog_b b
  ON a.ip = b.ip AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '500' MILLISECOND;

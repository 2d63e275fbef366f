-- Filter: only server errors, as they arrive (a stateless, append-only query).
SELECT ts, ip, status, url
FROM weblog
WHERE status >= 500;

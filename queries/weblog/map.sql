-- Map: derive new columns with scalar functions on every record.
SELECT ts, upper(method) AS method, split_part(url, '/', 2) AS section,
       duration * 1000 AS duration_ms, status / 100 AS status_class
FROM weblog;

-- "A login, then no activity for 10 minutes", on the demo stream: a server
-- error (500) after which the same IP sends nothing for 3 seconds. The pattern
-- waits for any next request within 3 s; when none comes, the partial match
-- times out and is the row we want.
SELECT ip, failed_at FROM weblog MATCH_RECOGNIZE (
  PARTITION BY ip
  ORDER BY ts
  MEASURES E.ts AS failed_at
  ONE ROW PER MATCH WITH TIMEOUT ROWS
  PATTERN (E NEXT_REQUEST)
  WITHIN INTERVAL '3' SECOND
  DEFINE E AS E.status = 500
) AS m
WHERE timed_out;

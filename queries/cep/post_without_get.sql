-- Absence ("an order not followed by a payment within 5 minutes"): a POST from
-- an IP not followed by a GET from the same IP within 2 seconds. WITH TIMEOUT
-- ROWS emits one row when the watermark passes the POST's time plus 2 s without
-- a GET (timed_out = true), and one row per POST that was followed in time.
SELECT ip, posted, followed_by, timed_out FROM weblog MATCH_RECOGNIZE (
  PARTITION BY ip
  ORDER BY ts
  MEASURES P.ts AS posted, G.ts AS followed_by
  ONE ROW PER MATCH WITH TIMEOUT ROWS
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (P OTHER*? G)
  WITHIN INTERVAL '2' SECOND
  DEFINE P AS P.method = 'POST', OTHER AS OTHER.method <> 'GET', G AS G.method = 'GET'
) AS m
WHERE timed_out;

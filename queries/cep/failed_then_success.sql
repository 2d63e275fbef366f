-- Complex event processing: an IP that is refused (403) at least twice and then
-- gets through (200), all within 10 seconds of event time. One row per match,
-- as soon as the success arrives and the watermark (ts - 2 s) has passed it.
SELECT * FROM weblog MATCH_RECOGNIZE (
  PARTITION BY ip
  ORDER BY ts
  MEASURES FIRST(REFUSED.ts) AS first_refused, COUNT(REFUSED.*) AS refusals, OK.ts AS succeeded
  ONE ROW PER MATCH
  AFTER MATCH SKIP PAST LAST ROW
  PATTERN (REFUSED{2,} OK)
  WITHIN INTERVAL '10' SECOND
  DEFINE REFUSED AS REFUSED.status = 403, OK AS OK.status = 200
) AS m;

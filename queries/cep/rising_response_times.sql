-- Rising runs: per IP, at least three requests in a row each slower than the
-- one before, within 5 seconds. ALL ROWS PER MATCH shows every request of the
-- run with its place in it (CLASSIFIER) and the run's number (MATCH_NUMBER).
SELECT ip, ts, duration, step, run FROM weblog MATCH_RECOGNIZE (
  PARTITION BY ip
  ORDER BY ts
  MEASURES CLASSIFIER() AS step, MATCH_NUMBER() AS run
  ALL ROWS PER MATCH
  PATTERN (FIRST_REQUEST SLOWER{2,})
  WITHIN INTERVAL '5' SECOND
  DEFINE SLOWER AS SLOWER.duration > PREV(SLOWER.duration)
) AS m;

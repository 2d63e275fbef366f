-- Patterns compose with windows: V shapes in each IP's response times (a
-- request, faster ones, then slower ones), counted per IP per 10 seconds. The
-- matches are a stream whose event time is MATCH_ROWTIME() (the match's last
-- row), so a window over them closes as the watermark passes.
SELECT window_start, ip, count(*) AS v_shapes, max(depth) AS deepest
FROM TUMBLE(TABLE (
  SELECT * FROM weblog MATCH_RECOGNIZE (
    PARTITION BY ip
    ORDER BY ts
    MEASURES MATCH_ROWTIME() AS rowtime, FIRST(DOWN.duration) - LAST(DOWN.duration) AS depth
    AFTER MATCH SKIP TO LAST UP
    PATTERN (START DOWN+ UP+)
    WITHIN INTERVAL '5' SECOND
    DEFINE DOWN AS DOWN.duration < PREV(DOWN.duration), UP AS UP.duration > PREV(UP.duration)
  ) AS m), DESCRIPTOR(rowtime), INTERVAL '10' SECOND)
GROUP BY window_start, window_end, ip;

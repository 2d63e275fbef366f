-- Nexmark q8 (new users) in DataFusion batch: both TUMBLE(10 s) as date_bin.
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, date_bin(INTERVAL '10' SECOND, date_time) AS starttime
  FROM person
  GROUP BY id, name, date_bin(INTERVAL '10' SECOND, date_time)
) P
JOIN (
  SELECT seller, date_bin(INTERVAL '10' SECOND, date_time) AS starttime
  FROM auction
  GROUP BY seller, date_bin(INTERVAL '10' SECOND, date_time)
) A
ON P.id = A.seller AND P.starttime = A.starttime;

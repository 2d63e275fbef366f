-- Nexmark q11 (user sessions) in DataFusion batch: SESSION(10 s gap) per
-- bidder as gaps and islands (a bid at most 10 s after the bidder's previous
-- one continues its session, as the streaming sessions merge touching
-- intervals).
WITH flagged AS (
  SELECT bidder, date_time,
         CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time) <= INTERVAL '10' SECOND
              THEN 0 ELSE 1 END AS starts
  FROM bid
),
numbered AS (
  SELECT bidder, date_time,
         sum(starts) OVER (PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS session
  FROM flagged
)
SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime, max(date_time) + INTERVAL '10' SECOND AS endtime
FROM numbered
GROUP BY bidder, session;

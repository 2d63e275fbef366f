-- Nexmark q11, user sessions: bids per bidder session (10 s of inactivity
-- ends a session). Flink's newer SESSION window TVF form of the query.
SELECT B.bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) B
GROUP BY B.bidder, window_start, window_end;

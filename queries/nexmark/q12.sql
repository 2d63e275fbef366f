-- Nexmark q12, processing-time windows: bids per bidder per 10 seconds of
-- processing time.
SELECT B.bidder, count(*) AS bid_count, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid_proctime, DESCRIPTOR(p_time), INTERVAL '10' SECOND)) B
GROUP BY B.bidder, window_start, window_end;

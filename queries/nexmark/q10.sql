-- Nexmark q10, log to file system: bids with their date and hour. Flink
-- writes them to a partitioned file sink; Sluice has no sinks yet, so the
-- query streams the same rows to its subscribers.
SELECT auction, bidder, price, date_time, extra,
       to_char(date_time, '%Y-%m-%d') AS dt, to_char(date_time, '%H:%M') AS hm
FROM bid;

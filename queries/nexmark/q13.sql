-- Nexmark q13, bounded side input join: each bid with a value from a static
-- table (side_input, from a file or INSERT INTO), by key.
SELECT B.auction, B.bidder, B.price, B.date_time, S.value
FROM bid B
JOIN side_input FOR SYSTEM_TIME AS OF B.date_time AS S
ON B.auction % 10000 = S.key;

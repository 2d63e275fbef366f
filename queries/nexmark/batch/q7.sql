-- Nexmark q7 (highest bid) in DataFusion batch: TUMBLE(10 s) as date_bin.
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid B
JOIN (
  SELECT max(price) AS maxprice, date_bin(INTERVAL '10' SECOND, date_time) + INTERVAL '10' SECOND AS date_time
  FROM bid
  GROUP BY date_bin(INTERVAL '10' SECOND, date_time)
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time;

-- Nexmark q5 (hot items) in DataFusion batch, for `sluice bench nexmark`'s
-- batch ratio: HOP(2 s slide, 10 s size) as the five window starts of each
-- bid (date_bin to the slide, then unnest of the starts), the rest as the
-- streaming query (both count subqueries computed, as streaming does).
WITH hopped AS (
  SELECT auction,
         unnest(make_array(s, s - INTERVAL '2' SECOND, s - INTERVAL '4' SECOND, s - INTERVAL '6' SECOND,
                           s - INTERVAL '8' SECOND)) AS starttime
  FROM (SELECT auction, date_bin(INTERVAL '2' SECOND, date_time) AS s FROM bid) AS binned
),
counts AS (
  SELECT auction, count(*) AS num, starttime, starttime + INTERVAL '10' SECOND AS endtime
  FROM hopped
  GROUP BY auction, starttime
)
SELECT AuctionBids.auction, AuctionBids.num
FROM counts AS AuctionBids
JOIN (
  SELECT max(num) AS maxn, starttime, endtime FROM counts GROUP BY starttime, endtime
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
   AND AuctionBids.num >= MaxBids.maxn;

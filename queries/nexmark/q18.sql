-- Nexmark q18, last bid: each bidder's latest bid per auction. ROW_NUMBER()
-- deduplication over a stream (a Top-1 per bidder and auction): an updating
-- result, a later bid retracting the one before.
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 1;

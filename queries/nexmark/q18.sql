-- Nexmark q18, last bid: each bidder's latest bid per auction. Needs
-- ROW_NUMBER() deduplication over a stream (a retracting top-1), which
-- Sluice does not run yet.
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 1;

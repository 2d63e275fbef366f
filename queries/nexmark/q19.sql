-- Nexmark q19, auction top-10 price: the ten highest bids of each auction.
-- Needs ROW_NUMBER() over a whole stream (a retracting top-N), which Sluice
-- does not run yet (it runs ROW_NUMBER per window).
SELECT *
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 10;

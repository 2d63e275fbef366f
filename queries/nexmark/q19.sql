-- Nexmark q19, auction top-10 price: the ten highest bids of each auction,
-- with their rank (a Top-10 per auction over the whole stream: an updating
-- result, a new bid shifting the ranks below it).
SELECT *
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 10;

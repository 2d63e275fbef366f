-- Nexmark q6, average selling price by seller: the average of each seller's
-- last 10 closing prices. Not supported: it needs an OVER aggregate
-- (ROWS BETWEEN 10 PRECEDING) over an updating result (the closing prices,
-- which change as bids arrive), which Sluice does not run yet (Flink does
-- not run q6 either). The text is Nexmark's; B.date_time is neither grouped
-- nor aggregated, so it is not valid SQL as it stands.
SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
  SELECT MAX(B.price) AS final, A.seller, B.date_time
  FROM auction AS A, bid AS B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.seller
) AS Q;

-- Nexmark q6, average selling price by seller: the average of each seller's
-- last 10 closing prices. Needs ROWS BETWEEN 10 PRECEDING over an updating
-- result (an OVER window on a stream), which Sluice does not run yet.
SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
  SELECT MAX(B.price) AS final, A.seller, B.date_time
  FROM auction AS A, bid AS B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.seller
) AS Q;

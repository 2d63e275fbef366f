-- Running state per key (updateStateByKey): requests and errors per IP over
-- the whole stream, as a changelog: each change retracts the old row (-)
-- and adds the new one (+).
SELECT ip, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors
FROM weblog
GROUP BY ip;

-- Nexmark q0, pass-through: every bid as it is. Measures the cost of
-- reading, decoding and emitting rows.
SELECT auction, bidder, price, date_time, extra FROM bid;

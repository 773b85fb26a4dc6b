-- A trade paid wholly with points is refunded with a refund_amount of 0 (its burned points come
-- back): refund_amount_minor may be 0.
ALTER TABLE refunds DROP CONSTRAINT refunds_refund_amount_minor_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_refund_amount_minor_check CHECK (refund_amount_minor >= 0);

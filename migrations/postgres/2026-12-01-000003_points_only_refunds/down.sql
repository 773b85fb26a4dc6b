ALTER TABLE refunds DROP CONSTRAINT refunds_refund_amount_minor_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_refund_amount_minor_check CHECK (refund_amount_minor > 0);

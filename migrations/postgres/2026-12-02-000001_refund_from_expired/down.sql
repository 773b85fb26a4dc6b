ALTER TABLE refund_lines DROP COLUMN from_expired;

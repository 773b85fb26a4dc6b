DROP TABLE refund_settlements;
ALTER TABLE debt_movements DROP COLUMN restored;
DROP TABLE refund_takes;
ALTER TABLE refund_lines DROP COLUMN from_grant;

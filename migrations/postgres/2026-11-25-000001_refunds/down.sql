DELETE FROM entries WHERE kind = 'reverse';
DROP INDEX entries_refund;
ALTER TABLE entries DROP CONSTRAINT entries_reverse_refund;
ALTER TABLE entries DROP CONSTRAINT entries_sign;
ALTER TABLE entries ADD CONSTRAINT entries_sign CHECK ((kind = 'earn') = (points > 0));
ALTER TABLE entries DROP COLUMN refund_id;
DROP TABLE refund_lines;
DROP TABLE refunds;
DROP TABLE rulesets;

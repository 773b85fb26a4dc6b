DROP TABLE campaign_budgets;
DROP TABLE trade_lines;
ALTER TABLE trades DROP COLUMN discount_minor;
ALTER TABLE trades DROP COLUMN post_fee_minor;

DROP INDEX entries_member;
CREATE INDEX entries_member ON entries (member_id, id);
ALTER TABLE entries DROP COLUMN out_trade_no;
ALTER TABLE entries DROP COLUMN trade_no;
ALTER TABLE entries DROP COLUMN campaign_code;
ALTER TABLE entries DROP COLUMN point_type;

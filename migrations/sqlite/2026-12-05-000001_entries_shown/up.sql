-- An entry carries what a history shows of it: its lot's point type and campaign, its trade's
-- numbers (written with the entry; the audit checks they match). A member's history page is
-- then read from one index, its rows side by side, where it read 50 entries, 50 lots and 50
-- trades scattered over the ledger.
ALTER TABLE entries ADD COLUMN point_type TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN campaign_code TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN trade_no TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN out_trade_no TEXT NOT NULL DEFAULT '';
UPDATE entries SET point_type = lots.point_type, campaign_code = lots.campaign_code
    FROM lots WHERE lots.id = entries.lot_id;
UPDATE entries SET trade_no = trades.trade_no, out_trade_no = trades.out_trade_no
    FROM trades WHERE trades.id = entries.trade_id;
DROP INDEX entries_member;
CREATE INDEX entries_member ON entries (
    member_id, id, kind, points, point_type, campaign_code, trade_no, out_trade_no,
    effective_at_ms, created_at_ms
);

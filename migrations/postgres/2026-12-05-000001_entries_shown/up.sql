-- An entry carries what a history shows of it: its lot's point type and campaign, its trade's
-- numbers (written with the entry; the audit checks they match), so a member's history page
-- reads its entries alone, not 50 lots and 50 trades scattered over the ledger besides.
ALTER TABLE entries ADD COLUMN point_type TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN campaign_code TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN trade_no TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN out_trade_no TEXT NOT NULL DEFAULT '';
UPDATE entries SET point_type = lots.point_type, campaign_code = lots.campaign_code
    FROM lots WHERE lots.id = entries.lot_id;
UPDATE entries SET trade_no = trades.trade_no, out_trade_no = trades.out_trade_no
    FROM trades WHERE trades.id = entries.trade_id;

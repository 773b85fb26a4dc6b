-- Trade lines and receipt-level amounts (so a trade can be priced again exactly: refunds,
-- backtests), and campaign budgets.

ALTER TABLE trades ADD COLUMN post_fee_minor BIGINT NOT NULL DEFAULT 0 CHECK (post_fee_minor >= 0);
ALTER TABLE trades ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0 CHECK (discount_minor >= 0);

CREATE TABLE trade_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trade_id BIGINT NOT NULL REFERENCES trades (id),
    line_no BIGINT NOT NULL CHECK (line_no >= 0),
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    UNIQUE (trade_id, line_no)
);

-- Points each budgeted campaign has granted, to every member. Updated in the trade's
-- transaction with a guard, so a budget is never overspent.
CREATE TABLE campaign_budgets (
    campaign_code TEXT PRIMARY KEY NOT NULL,
    used BIGINT NOT NULL CHECK (used >= 0)
);

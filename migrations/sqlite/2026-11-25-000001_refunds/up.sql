-- Refunds and the ruleset versions that priced trades.

-- Every ruleset the server has run, by content hash: a refund re-prices its trade under the
-- version that priced it, even after the rules changed. sources is a JSON array of
-- {"name": file name, "text": file content}.
CREATE TABLE rulesets (
    version TEXT PRIMARY KEY NOT NULL,
    sources TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- A refund of part or all of a trade's payment. burn_returned: burned points given back.
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_refund_no TEXT NOT NULL UNIQUE,
    request_fingerprint TEXT NOT NULL,
    trade_id BIGINT NOT NULL REFERENCES trades (id),
    member_id BIGINT NOT NULL REFERENCES members (id),
    refund_amount_minor BIGINT NOT NULL CHECK (refund_amount_minor > 0),
    refund_time TEXT NOT NULL,
    burn_returned BIGINT NOT NULL CHECK (burn_returned >= 0),
    shortfall_policy TEXT NOT NULL CHECK (shortfall_policy IN ('record_shortfall', 'allow_negative')),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX refunds_trade ON refunds (trade_id);

-- What a refund took back from one grant (lot) of its trade: points due; the shortfall the
-- member's points could not cover at the time; of that, what the member still owes (only
-- under allow_negative; later earns pay it off).
CREATE TABLE refund_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    refund_id BIGINT NOT NULL REFERENCES refunds (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    points BIGINT NOT NULL CHECK (points > 0),
    shortfall BIGINT NOT NULL CHECK (shortfall >= 0 AND shortfall <= points),
    owed BIGINT NOT NULL CHECK (owed >= 0 AND owed <= shortfall)
);
CREATE INDEX refund_lines_refund ON refund_lines (refund_id);
CREATE INDEX refund_lines_lot ON refund_lines (lot_id);
CREATE INDEX refund_lines_owed ON refund_lines (owed) WHERE owed > 0;

-- entries gain refund_id, and a reverse may now give points back (a refunded burn), so the
-- sign rule becomes: earn +, burn and expire -, reverse either. SQLite cannot alter a CHECK:
-- the table is rebuilt (nothing references entries).
CREATE TABLE entries_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id BIGINT NOT NULL REFERENCES members (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    trade_id BIGINT REFERENCES trades (id),
    refund_id BIGINT REFERENCES refunds (id),
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'burn', 'expire', 'reverse')),
    points BIGINT NOT NULL CHECK (points <> 0),
    effective_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK (kind = 'reverse' OR (kind = 'earn') = (points > 0)),
    CHECK ((kind = 'reverse') = (refund_id IS NOT NULL))
);
INSERT INTO entries_new (id, member_id, lot_id, trade_id, refund_id, kind, points, effective_at_ms, created_at_ms)
    SELECT id, member_id, lot_id, trade_id, NULL, kind, points, effective_at_ms, created_at_ms FROM entries;
DROP TABLE entries;
ALTER TABLE entries_new RENAME TO entries;
CREATE INDEX entries_member ON entries (member_id, id);
CREATE INDEX entries_effective ON entries (effective_at_ms);
CREATE INDEX entries_lot ON entries (lot_id);
CREATE INDEX entries_trade ON entries (trade_id);
CREATE INDEX entries_refund ON entries (refund_id);

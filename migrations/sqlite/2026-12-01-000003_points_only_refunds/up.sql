-- A trade paid wholly with points is refunded with a refund_amount of 0 (its burned points come
-- back): refund_amount_minor may be 0. SQLite changes a CHECK by rebuilding the table. entries
-- and refund_lines reference refunds: migrations run with foreign keys off, as SQLite's
-- procedure for this asks, and every foreign key is checked before they commit
-- (ledger::migrations).
CREATE TABLE refunds_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_refund_no TEXT NOT NULL UNIQUE,
    request_fingerprint TEXT NOT NULL,
    trade_id BIGINT NOT NULL REFERENCES trades (id),
    member_id BIGINT NOT NULL REFERENCES members (id),
    refund_amount_minor BIGINT NOT NULL CHECK (refund_amount_minor >= 0),
    refund_time TEXT NOT NULL,
    burn_returned BIGINT NOT NULL CHECK (burn_returned >= 0),
    shortfall_policy TEXT NOT NULL CHECK (shortfall_policy IN ('record_shortfall', 'allow_negative')),
    created_at_ms BIGINT NOT NULL
);
INSERT INTO refunds_rebuilt SELECT * FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_rebuilt RENAME TO refunds;
CREATE INDEX refunds_trade ON refunds (trade_id);

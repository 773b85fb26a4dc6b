-- Back to refunds of more than 0 (fails if a points-only trade was refunded since).
CREATE TABLE refunds_rebuilt (
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
INSERT INTO refunds_rebuilt SELECT * FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_rebuilt RENAME TO refunds;
CREATE INDEX refunds_trade ON refunds (trade_id);

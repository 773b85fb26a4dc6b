-- Refunds and the ruleset versions that priced trades (PostgreSQL; the same tables as
-- migrations/sqlite).

CREATE TABLE rulesets (
    version TEXT PRIMARY KEY NOT NULL,
    sources TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE refunds (
    id BIGSERIAL PRIMARY KEY,
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

CREATE TABLE refund_lines (
    id BIGSERIAL PRIMARY KEY,
    refund_id BIGINT NOT NULL REFERENCES refunds (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    points BIGINT NOT NULL CHECK (points > 0),
    shortfall BIGINT NOT NULL CHECK (shortfall >= 0 AND shortfall <= points),
    owed BIGINT NOT NULL CHECK (owed >= 0 AND owed <= shortfall)
);
CREATE INDEX refund_lines_refund ON refund_lines (refund_id);
CREATE INDEX refund_lines_lot ON refund_lines (lot_id);
CREATE INDEX refund_lines_owed ON refund_lines (owed) WHERE owed > 0;

-- A reverse may give points back (a refunded burn) and always names its refund.
ALTER TABLE entries ADD COLUMN refund_id BIGINT REFERENCES refunds (id);
ALTER TABLE entries DROP CONSTRAINT entries_sign;
ALTER TABLE entries ADD CONSTRAINT entries_sign CHECK (kind = 'reverse' OR (kind = 'earn') = (points > 0));
ALTER TABLE entries ADD CONSTRAINT entries_reverse_refund CHECK ((kind = 'reverse') = (refund_id IS NOT NULL));
CREATE INDEX entries_refund ON entries (refund_id);

-- The ledger (PostgreSQL; the same tables as migrations/sqlite). Amounts are integer minor
-- units (hundredths); instants are Unix epoch milliseconds (UTC); expiry dates are
-- 'YYYY-MM-DD' calendar dates in the program time zone.

CREATE TABLE members (
    id BIGSERIAL PRIMARY KEY,
    vip_accountno TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE trades (
    id BIGSERIAL PRIMARY KEY,
    trade_no TEXT NOT NULL UNIQUE,
    out_trade_no TEXT NOT NULL UNIQUE,
    request_fingerprint TEXT NOT NULL,
    member_id BIGINT NOT NULL REFERENCES members (id),
    store_code TEXT NOT NULL,
    invoice_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    total_amount_minor BIGINT NOT NULL CHECK (total_amount_minor >= 0),
    payment_amount_minor BIGINT NOT NULL CHECK (payment_amount_minor >= 0),
    payment_method TEXT NOT NULL,
    sales_time TEXT NOT NULL,
    sales_at_ms BIGINT NOT NULL,
    submit_time TEXT NOT NULL,
    approval_time TEXT NOT NULL,
    burn_point BIGINT NOT NULL CHECK (burn_point >= 0),
    resource TEXT NOT NULL,
    remark TEXT NOT NULL,
    receipt_image_urls TEXT NOT NULL,
    payment_image_urls TEXT NOT NULL,
    ruleset_version TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX trades_member ON trades (member_id);

-- A lot: the points of one grant, and how many of them remain. Its points are pending (not
-- usable) before available_at_ms and expired from expires_at_ms.
CREATE TABLE lots (
    id BIGSERIAL PRIMARY KEY,
    member_id BIGINT NOT NULL REFERENCES members (id),
    trade_id BIGINT NOT NULL REFERENCES trades (id),
    point_type TEXT NOT NULL CHECK (point_type IN ('E', 'A')),
    campaign_code TEXT NOT NULL,
    remark TEXT NOT NULL,
    expire_type TEXT NOT NULL CHECK (expire_type IN ('KDP', 'QUARTER')),
    expire_date TEXT,
    expires_at_ms BIGINT,
    available_at_ms BIGINT NOT NULL,
    points BIGINT NOT NULL CHECK (points > 0),
    remaining BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    ruleset_version TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX lots_member_expiry ON lots (member_id, expires_at_ms);
CREATE INDEX lots_trade ON lots (trade_id);
CREATE INDEX lots_expiring ON lots (expires_at_ms) WHERE remaining > 0;

-- Append-only movements of points, each against one lot: earn (+), burn, expire, reverse (-).
-- effective_at_ms is when the movement counts for finance (an expiry: the lot's expiry instant);
-- created_at_ms is when it was written.
CREATE TABLE entries (
    id BIGSERIAL PRIMARY KEY,
    member_id BIGINT NOT NULL REFERENCES members (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    trade_id BIGINT REFERENCES trades (id),
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'burn', 'expire', 'reverse')),
    points BIGINT NOT NULL CHECK (points <> 0),
    effective_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CONSTRAINT entries_sign CHECK ((kind = 'earn') = (points > 0))
);
CREATE INDEX entries_member ON entries (member_id, id);
CREATE INDEX entries_effective ON entries (effective_at_ms);
CREATE INDEX entries_lot ON entries (lot_id);
CREATE INDEX entries_trade ON entries (trade_id);

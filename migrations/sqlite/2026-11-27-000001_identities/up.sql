-- Identities that lead to one member, the profile fields adapters send, and the orders of
-- the other contracts (their last state, for idempotency and the order lifecycle).

CREATE TABLE member_identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id BIGINT NOT NULL REFERENCES members (id),
    kind TEXT NOT NULL CHECK (kind IN ('weixin_openid', 'mobile_phone', 'card_code')),
    value TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (kind, value)
);
CREATE INDEX member_identities_member ON member_identities (member_id);

CREATE TABLE member_profiles (
    member_id BIGINT PRIMARY KEY NOT NULL REFERENCES members (id),
    name TEXT,
    nick_name TEXT,
    gender TEXT,
    country TEXT,
    province TEXT,
    city TEXT,
    updated_at_ms BIGINT NOT NULL
);

-- One row per order of another contract: its source, its id there, the trade it became (once
-- it earned), and its last status and update time (older updates are ignored).
CREATE TABLE external_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    trade_id BIGINT REFERENCES trades (id),
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (source, external_id)
);

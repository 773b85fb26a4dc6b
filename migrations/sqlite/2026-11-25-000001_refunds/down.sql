CREATE TABLE entries_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id BIGINT NOT NULL REFERENCES members (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    trade_id BIGINT REFERENCES trades (id),
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'burn', 'expire', 'reverse')),
    points BIGINT NOT NULL CHECK (points <> 0),
    effective_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK ((kind = 'earn') = (points > 0))
);
INSERT INTO entries_old (id, member_id, lot_id, trade_id, kind, points, effective_at_ms, created_at_ms)
    SELECT id, member_id, lot_id, trade_id, kind, points, effective_at_ms, created_at_ms FROM entries WHERE kind <> 'reverse';
DROP TABLE entries;
ALTER TABLE entries_old RENAME TO entries;
CREATE INDEX entries_member ON entries (member_id, id);
CREATE INDEX entries_effective ON entries (effective_at_ms);
CREATE INDEX entries_lot ON entries (lot_id);
CREATE INDEX entries_trade ON entries (trade_id);
DROP TABLE refund_lines;
DROP TABLE refunds;
DROP TABLE rulesets;

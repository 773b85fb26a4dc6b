-- Refunds in any order end the same. A refund line records where its points came from when
-- the refund was made: from_grant (the grant's own lot), the rest from the member's other lots
-- (refund_takes, allow_negative) or short (written off, or owed). When burned points later
-- come back to the grant's lot (the burning trade is refunded), they first settle that rest
-- (refund_settlements): the debt is paid, the lots that stood in (refund_takes, and debt
-- payments: debt_movements.restored) get their points back, a write-off is recovered; only
-- what is left stays in the lot.
ALTER TABLE refund_lines ADD COLUMN from_grant BIGINT NOT NULL DEFAULT 0 CHECK (from_grant >= 0);
-- Lines from before: what was taken counts as taken from the grant (the lots that stood in were
-- not recorded apart).
UPDATE refund_lines SET from_grant = points - shortfall;

CREATE TABLE refund_takes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    refund_line_id BIGINT NOT NULL REFERENCES refund_lines (id),
    lot_id BIGINT NOT NULL REFERENCES lots (id),
    points BIGINT NOT NULL CHECK (points > 0),
    restored BIGINT NOT NULL DEFAULT 0 CHECK (restored >= 0 AND restored <= points)
);
CREATE INDEX refund_takes_line ON refund_takes (refund_line_id);

ALTER TABLE debt_movements ADD COLUMN restored BIGINT NOT NULL DEFAULT 0 CHECK (restored >= 0);

CREATE TABLE refund_settlements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    refund_line_id BIGINT NOT NULL REFERENCES refund_lines (id),
    returning_refund_id BIGINT NOT NULL REFERENCES refunds (id),
    points BIGINT NOT NULL CHECK (points > 0),
    effective_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX refund_settlements_line ON refund_settlements (refund_line_id);

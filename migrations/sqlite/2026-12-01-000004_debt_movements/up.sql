-- Points members owe under allow_negative, as movements: 'owed' when a refund finds the balance
-- short, 'paid' when a later earn pays it off (from paid_by_lot_id). A refund line's owed is
-- the sum of its movements. Finance reports read them, so that the liability is the sum of the
-- members' balances (owed points negative) and each period rolls forward exactly.
CREATE TABLE debt_movements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    refund_line_id BIGINT NOT NULL REFERENCES refund_lines (id),
    kind TEXT NOT NULL CHECK (kind IN ('owed', 'paid')),
    points BIGINT NOT NULL CHECK (points > 0),
    paid_by_lot_id BIGINT REFERENCES lots (id),
    effective_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    CHECK ((kind = 'paid') = (paid_by_lot_id IS NOT NULL))
);
CREATE INDEX debt_movements_line ON debt_movements (refund_line_id);
CREATE INDEX debt_movements_effective ON debt_movements (effective_at_ms);

-- What is owed now, as owed when its refund was made (earlier payments are not known apart).
INSERT INTO debt_movements (refund_line_id, kind, points, paid_by_lot_id, effective_at_ms, created_at_ms)
    SELECT refund_lines.id, 'owed', refund_lines.owed, NULL, refunds.created_at_ms, refunds.created_at_ms
    FROM refund_lines JOIN refunds ON refunds.id = refund_lines.refund_id
    WHERE refund_lines.owed > 0;

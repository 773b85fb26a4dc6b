-- A refund of a grant whose points have expired takes them from what expired: those points had
-- left the balance already, so they are neither a shortfall (written off or owed) nor taken
-- from the member's other lots. from_expired is that part of a refund line's points; no entry
-- moves for it (the expiry was booked, at its moment, before the refund).
ALTER TABLE refund_lines ADD COLUMN from_expired BIGINT NOT NULL DEFAULT 0 CHECK (from_expired >= 0);

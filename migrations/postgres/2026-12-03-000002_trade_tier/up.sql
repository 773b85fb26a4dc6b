-- The member's tier when the trade was priced ('' when the program has no tiers): a refund
-- and the audit price the trade again at that tier, and the trade's history shows it.
ALTER TABLE trades ADD COLUMN tier TEXT NOT NULL DEFAULT '';

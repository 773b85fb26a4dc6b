CREATE TABLE card_records_global (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('objective', 'reward')),
    serial_no TEXT NOT NULL,
    card_code TEXT NOT NULL,
    card_template_id TEXT NOT NULL,
    member_id BIGINT NOT NULL REFERENCES members (id),
    item_id TEXT NOT NULL,
    record_type TEXT NOT NULL CHECK (record_type IN ('INCREASE', 'DECREASE')),
    count BIGINT NOT NULL CHECK (count > 0),
    amount BIGINT,
    occurred_at TEXT NOT NULL,
    body TEXT NOT NULL,
    trade_id BIGINT REFERENCES trades (id),
    created_at_ms BIGINT NOT NULL,
    UNIQUE (kind, serial_no)
);
INSERT INTO card_records_global SELECT * FROM card_records;
DROP TABLE card_records;
ALTER TABLE card_records_global RENAME TO card_records;
CREATE INDEX card_records_member ON card_records (member_id, kind, item_id);

-- A card record's serial number is unique within its card, not across all cards: one card's
-- serial can never reach another card's record.
ALTER TABLE card_records DROP CONSTRAINT card_records_kind_serial_no_key;
ALTER TABLE card_records ADD CONSTRAINT card_records_kind_card_serial_key
    UNIQUE (kind, card_code, serial_no);

ALTER TABLE card_records DROP CONSTRAINT card_records_kind_card_serial_key;
ALTER TABLE card_records ADD CONSTRAINT card_records_kind_serial_no_key UNIQUE (kind, serial_no);

DROP TABLE card_records;
DROP TABLE request_nonces;

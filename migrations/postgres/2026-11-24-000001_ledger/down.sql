DROP TABLE entries;
DROP TABLE lots;
DROP TABLE trades;
DROP TABLE members;

DROP TABLE debt_movements;

CREATE TABLE limits (device_id TEXT, max_temp REAL, enabled INTEGER);
INSERT INTO limits VALUES ('a', 30, 1), ('b', 25.5, 1), ('c', 40, 0), ('d', 'hot', 1);

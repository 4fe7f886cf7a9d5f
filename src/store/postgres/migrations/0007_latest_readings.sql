-- The newest reading time of each user, kept by the batch upsert in the batch's
-- transaction. `GET latest` then reads one row here and one reading by its key
-- (one partition), instead of the newest row of every partition's index.
-- Readings are never deleted, so the newest time only ever moves forward.
CREATE TABLE latest_readings (
    user_id text COLLATE "C" PRIMARY KEY,
    ts      timestamptz      NOT NULL
);
INSERT INTO latest_readings (user_id, ts)
SELECT user_id, max(ts) FROM readings GROUP BY user_id;

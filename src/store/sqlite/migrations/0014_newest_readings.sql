-- Each user's newest reading time (unix seconds), raised by the batch upsert in
-- its transaction (never lowered: a backfill does not move it back). The stale
-- timer reads users by time through the index (docs/alerts.md, "Stale").
CREATE TABLE newest_readings (
    user_id  TEXT     PRIMARY KEY,
    ts       INTEGER  NOT NULL
);
CREATE INDEX newest_readings_by_ts ON newest_readings (ts, user_id);
INSERT INTO newest_readings (user_id, ts)
SELECT user_id, max(ts) FROM readings GROUP BY user_id;

-- The stale timer reads users by their newest reading time (docs/alerts.md,
-- "Stale"): `latest_readings` (0007), raised by the batch upsert in its
-- transaction, gets an index by time.
CREATE INDEX latest_readings_by_ts ON latest_readings (ts, user_id);

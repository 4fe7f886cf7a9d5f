-- Readings: one row per (user, instant), clustered by user then time so that a
-- user's latest reading and any time range are a single index walk.
CREATE TABLE readings (
    user_id                TEXT    NOT NULL,
    ts                     INTEGER NOT NULL,             -- unix seconds, UTC
    glucose_mg_dl          INTEGER NOT NULL CHECK (glucose_mg_dl BETWEEN 20 AND 600),
    status                 TEXT    CHECK (status IN ('low', 'high')),
    trend                  TEXT,
    trend_rate             REAL,
    reading_type           TEXT    NOT NULL,
    source                 TEXT    NOT NULL,
    device_id              TEXT,
    serial_number          TEXT,
    transmitter_id         TEXT,
    source_record_id       TEXT,
    display_offset_minutes INTEGER,
    version                INTEGER NOT NULL DEFAULT 1,
    created_at_ms          INTEGER NOT NULL,
    updated_at_ms          INTEGER NOT NULL,
    PRIMARY KEY (user_id, ts)
) WITHOUT ROWID;

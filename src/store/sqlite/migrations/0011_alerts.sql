-- Alerts (contract: "Alerts and live streams") and each user's alert settings.
CREATE TABLE alert_settings (
    user_id        TEXT    PRIMARY KEY,
    settings       TEXT    NOT NULL,        -- JSON, parsed by AlertSettings::parse
    updated_at_ms  INTEGER NOT NULL
);

CREATE TABLE alerts (
    id                  TEXT    PRIMARY KEY,   -- time-ordered UUID (records::alerts::alert_id)
    user_id             TEXT    NOT NULL,
    type                TEXT    NOT NULL,
    status              TEXT    NOT NULL
                        CHECK (status IN ('active', 'acknowledged', 'resolved')),
    glucose_value       INTEGER,
    reading_ts_ms       INTEGER,
    raised_at_ms        INTEGER NOT NULL,
    acknowledged_at_ms  INTEGER,
    acknowledged_by     TEXT,
    resolved_at_ms      INTEGER,
    message             TEXT    NOT NULL
);

-- At most one open alert per (user, type), whoever writes.
CREATE UNIQUE INDEX alerts_one_open ON alerts (user_id, type)
    WHERE status IN ('active', 'acknowledged');
-- A user's history, newest first (ids order by raise time).
CREATE INDEX alerts_by_user ON alerts (user_id, id);

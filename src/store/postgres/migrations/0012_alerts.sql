-- Alerts (contract: "Alerts and live streams") and each user's alert settings.
CREATE TABLE alert_settings (
    user_id     text        PRIMARY KEY,
    settings    jsonb       NOT NULL,          -- parsed by AlertSettings::parse
    updated_at  timestamptz NOT NULL
);

CREATE TABLE alerts (
    id               uuid        PRIMARY KEY,  -- time-ordered (records::alerts::alert_id)
    user_id          text        NOT NULL,
    type             text        NOT NULL,
    status           text        NOT NULL
                     CHECK (status IN ('active', 'acknowledged', 'resolved')),
    glucose_value    integer,
    reading_ts       timestamptz,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    message          text        NOT NULL
);

-- At most one open alert per (user, type), whichever instance writes.
CREATE UNIQUE INDEX alerts_one_open ON alerts (user_id, type)
    WHERE status IN ('active', 'acknowledged');
-- A user's history, newest first (ids order by raise time).
CREATE INDEX alerts_by_user ON alerts (user_id, id);

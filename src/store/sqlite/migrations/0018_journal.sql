-- The health journal (contract: "Journal: meals, sleep, activities"): one row
-- per meal, sleep session or activity; the kind's fields as JSON in `body`.
CREATE TABLE journal_entries (
    id             TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('meal', 'sleep', 'activity')),
    at_ms          INTEGER NOT NULL,   -- meal/activity timestamp, sleep start
    source         TEXT    NOT NULL,
    external_id    TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    body           TEXT    NOT NULL    -- JSON, parsed by records::journal::JournalBody
);

-- Idempotent uploads: one entry per (user, kind, source, external_id).
CREATE UNIQUE INDEX journal_by_external_id
    ON journal_entries (user_id, kind, source, external_id)
    WHERE external_id IS NOT NULL;
-- Listing a user's entries of a kind by time, with (at, id) keyset cursors.
CREATE INDEX journal_by_time ON journal_entries (user_id, kind, at_ms, id);

-- The health journal (contract: "Journal: meals, sleep, activities"): one row
-- per meal, sleep session or activity; the kind's fields as JSON in `body`.
CREATE TABLE journal_entries (
    id           uuid        PRIMARY KEY,
    user_id      text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('meal', 'sleep', 'activity')),
    at           timestamptz NOT NULL,   -- meal/activity timestamp, sleep start
    source       text        NOT NULL,
    external_id  text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    body         text        NOT NULL    -- JSON, parsed by records::journal::JournalBody
);

-- Idempotent uploads: one entry per (user, kind, source, external_id), whichever
-- instance writes.
CREATE UNIQUE INDEX journal_by_external_id
    ON journal_entries (user_id, kind, source, external_id)
    WHERE external_id IS NOT NULL;
-- Listing a user's entries of a kind by time, with (at, id) keyset cursors.
CREATE INDEX journal_by_time ON journal_entries (user_id, kind, at, id);

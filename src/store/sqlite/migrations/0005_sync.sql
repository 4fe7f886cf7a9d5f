-- The sync engine: jobs (scheduled, manual, backfill, webhook), the per-user
-- sync lease, the per-connection high-water mark, and the webhook inbox.

-- Newest reading time a sync has stored for the connection: the next
-- incremental poll starts here minus the overlap window.
ALTER TABLE connections ADD COLUMN sync_cursor_ms INTEGER;

CREATE TABLE sync_jobs (
    id                 TEXT    PRIMARY KEY,          -- UUID
    user_id            TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    trigger            TEXT    NOT NULL
                       CHECK (trigger IN ('scheduled', 'manual', 'backfill', 'webhook')),
    status             TEXT    NOT NULL
                       CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- Lower runs first (webhook, manual, scheduled, backfill).
    priority           INTEGER NOT NULL,
    -- The requested range; both NULL for an incremental sync.
    requested_start_ms INTEGER,
    requested_end_ms   INTEGER,
    -- The range resolved on the first run, then fixed so a resumed job fetches
    -- the same range; resume_from_ms is where the next window starts.
    range_start_ms     INTEGER,
    range_end_ms       INTEGER,
    resume_from_ms     INTEGER,
    fetched            INTEGER NOT NULL DEFAULT 0,
    inserted           INTEGER NOT NULL DEFAULT 0,
    updated            INTEGER NOT NULL DEFAULT 0,
    duplicates         INTEGER NOT NULL DEFAULT 0,
    rejected           INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    errors             TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    idempotency_key    TEXT,
    request_hash       TEXT,
    not_before_ms      INTEGER NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    started_at_ms      INTEGER,
    finished_at_ms     INTEGER,
    updated_at_ms      INTEGER NOT NULL
);

CREATE UNIQUE INDEX sync_jobs_idempotency
    ON sync_jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sync_jobs_by_user ON sync_jobs (user_id, created_at_ms);
CREATE INDEX sync_jobs_open ON sync_jobs (priority, created_at_ms)
    WHERE status IN ('queued', 'running');

-- At most one holder syncs a (user, provider) at a time; a holder that dies
-- stops renewing and its lease lapses at until_ms.
CREATE TABLE sync_leases (
    user_id   TEXT    NOT NULL,
    provider  TEXT    NOT NULL,
    owner     TEXT    NOT NULL,
    job_id    TEXT    NOT NULL,
    until_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, provider)
) WITHOUT ROWID;

-- Signed webhook deliveries, written before the 202 and processed afterwards.
-- The body is kept until processed (and for failed deliveries, so they can be
-- replayed), then cleared: it holds health data.
CREATE TABLE webhook_inbox (
    id                  TEXT    PRIMARY KEY,          -- UUID
    user_id             TEXT    NOT NULL,
    signature_hash      TEXT    NOT NULL UNIQUE,      -- SHA-256 of the signature: a replay is the same delivery
    kind                TEXT    NOT NULL,
    body                BLOB,
    status              TEXT    NOT NULL
                        CHECK (status IN ('queued', 'processing', 'done', 'ignored', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  INTEGER NOT NULL,
    claimed_by          TEXT,
    claimed_until_ms    INTEGER,
    last_error          TEXT,
    outcome             TEXT,                          -- JSON summary
    received_at_ms      INTEGER NOT NULL,
    processed_at_ms     INTEGER
);

CREATE INDEX webhook_inbox_pending ON webhook_inbox (next_attempt_at_ms)
    WHERE status IN ('queued', 'processing');

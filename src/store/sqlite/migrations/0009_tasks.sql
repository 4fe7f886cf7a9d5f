-- General background tasks (src/tasks): one row per task of any kind, with
-- the lease that keeps it to one runner and the history a status report needs.
CREATE TABLE tasks (
    id               TEXT    PRIMARY KEY,           -- UUID
    kind             TEXT    NOT NULL,
    user_id          TEXT,                          -- NULL: system-wide work
    payload          TEXT    NOT NULL,              -- JSON
    priority         INTEGER NOT NULL,              -- lower runs first
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    errors           TEXT    NOT NULL DEFAULT '[]',  -- JSON array of strings
    idempotency_key  TEXT,
    concurrency_key  TEXT,
    not_before_ms    INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    started_at_ms    INTEGER,
    finished_at_ms   INTEGER,
    updated_at_ms    INTEGER NOT NULL,
    -- The runner holding a running task, until when; a lapsed lease makes the
    -- task claimable again (its runner died).
    lease_owner      TEXT,
    lease_until_ms   INTEGER
);

CREATE UNIQUE INDEX tasks_idempotency ON tasks (kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_open ON tasks (kind, priority, created_at_ms)
    WHERE status IN ('queued', 'running');
CREATE INDEX tasks_running_by_key ON tasks (concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;

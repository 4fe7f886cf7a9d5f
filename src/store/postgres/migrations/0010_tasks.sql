-- General background tasks (src/tasks): one row per task of any kind, with
-- the lease that keeps it to one runner and the history a status report needs.
CREATE TABLE tasks (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    user_id          text,                          -- NULL: system-wide work
    payload          jsonb       NOT NULL,
    priority         smallint    NOT NULL,          -- lower runs first
    status           text        NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    idempotency_key  text,
    concurrency_key  text,
    not_before       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    -- The runner holding a running task, until when; a lapsed lease makes the
    -- task claimable again (its runner died).
    lease_owner      text,
    lease_until      timestamptz
);

CREATE UNIQUE INDEX tasks_idempotency ON tasks (kind, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_open ON tasks (kind, priority, created_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX tasks_running_by_key ON tasks (concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;

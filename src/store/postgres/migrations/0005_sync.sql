-- The sync engine: jobs (scheduled, manual, backfill, webhook), the per-user
-- sync lease, and the webhook inbox.

CREATE TABLE sync_jobs (
    id               uuid             PRIMARY KEY,
    user_id          text COLLATE "C" NOT NULL,
    provider         text COLLATE "C" NOT NULL,
    trigger          text             NOT NULL
                     CHECK (trigger IN ('scheduled', 'manual', 'backfill', 'webhook')),
    status           text             NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- Lower runs first (webhook, manual, scheduled, backfill).
    priority         smallint         NOT NULL,
    -- The requested range; both NULL for an incremental sync.
    requested_start  timestamptz,
    requested_end    timestamptz,
    -- The range resolved on the first run, then fixed so a resumed job fetches
    -- the same range; resume_from is where the next window starts.
    range_start      timestamptz,
    range_end        timestamptz,
    resume_from      timestamptz,
    fetched          bigint           NOT NULL DEFAULT 0,
    inserted         bigint           NOT NULL DEFAULT 0,
    updated          bigint           NOT NULL DEFAULT 0,
    duplicates       bigint           NOT NULL DEFAULT 0,
    rejected         bigint           NOT NULL DEFAULT 0,
    attempts         integer          NOT NULL DEFAULT 0,
    errors           jsonb            NOT NULL DEFAULT '[]',  -- array of strings
    idempotency_key  text,
    request_hash     text,
    not_before       timestamptz      NOT NULL,
    created_at       timestamptz      NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz      NOT NULL
);

CREATE UNIQUE INDEX sync_jobs_idempotency
    ON sync_jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX sync_jobs_by_user ON sync_jobs (user_id, created_at);
CREATE INDEX sync_jobs_open ON sync_jobs (priority, created_at)
    WHERE status IN ('queued', 'running');

-- At most one holder syncs a (user, provider) at a time; a holder that dies
-- stops renewing and its lease lapses at `until`.
CREATE TABLE sync_leases (
    user_id   text COLLATE "C" NOT NULL,
    provider  text COLLATE "C" NOT NULL,
    owner     text             NOT NULL,
    job_id    uuid             NOT NULL,
    until     timestamptz      NOT NULL,
    PRIMARY KEY (user_id, provider)
);

CREATE INDEX sync_leases_by_job ON sync_leases (job_id);

-- Signed webhook deliveries, written before the 202 and processed afterwards.
-- The body is kept until processed (and for failed deliveries, so they can be
-- replayed), then cleared: it holds health data.
CREATE TABLE webhook_inbox (
    id               uuid             PRIMARY KEY,
    user_id          text COLLATE "C" NOT NULL,
    -- SHA-256 of the signature: a replay is the same delivery.
    signature_hash   text             NOT NULL UNIQUE,
    kind             text             NOT NULL,
    body             bytea,
    status           text             NOT NULL
                     CHECK (status IN ('queued', 'processing', 'done', 'ignored', 'failed')),
    attempts         integer          NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz      NOT NULL,
    claimed_by       text,
    claimed_until    timestamptz,
    last_error       text,
    outcome          text,            -- JSON summary
    received_at      timestamptz      NOT NULL,
    processed_at     timestamptz
);

CREATE INDEX webhook_inbox_pending ON webhook_inbox (received_at, id)
    WHERE status IN ('queued', 'processing');

-- The audit trail, append-only: triggers refuse any UPDATE or DELETE.
--
-- One row holds a run of consecutive, alike accesses (same actor, roles, action,
-- user, decision and status): an app polling a patient's latest reading makes
-- thousands of them a minute, and one row per run instead of per access keeps
-- the trail's cost per request small. Each access keeps its own time and request
-- id; its position in the trail is seq * 65536 + its index in the run.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,  -- rowid: only grows, since nothing is ever deleted
    first_at_ms    INTEGER NOT NULL,     -- the run's earliest access
    last_at_ms     INTEGER NOT NULL,     -- the run's latest access
    actor          TEXT    NOT NULL,
    actor_roles    TEXT    NOT NULL,     -- comma-separated
    action         TEXT    NOT NULL,
    target_user    TEXT    NOT NULL,
    decision       TEXT    NOT NULL,
    status         INTEGER NOT NULL,
    accesses       INTEGER NOT NULL,     -- how many accesses the run holds
    at_offsets_ms  TEXT    NOT NULL,     -- JSON array: each access's time, ms after first_at_ms
    request_ids    TEXT    NOT NULL      -- JSON array: each access's request id
);
CREATE INDEX audit_by_user ON audit_log (target_user, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The audit trail, append-only: triggers refuse any UPDATE or DELETE.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    actor_roles  TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target_user  TEXT    NOT NULL,
    decision     TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    request_id   TEXT    NOT NULL
);
CREATE INDEX audit_by_user ON audit_log (target_user, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

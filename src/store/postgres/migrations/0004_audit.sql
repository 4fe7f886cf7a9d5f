-- The audit trail, append-only: triggers refuse any UPDATE, DELETE or TRUNCATE.
-- One row per access. seq is the position in the trail; the store appends one
-- batch at a time (under an advisory lock), so positions follow commit order
-- and a reader paging by seq never skips an entry committed later.
CREATE TABLE audit_log (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz      NOT NULL,
    actor        text             NOT NULL,
    actor_roles  text[]           NOT NULL,
    action       text             NOT NULL,
    target_user  text COLLATE "C" NOT NULL,
    decision     text             NOT NULL CHECK (decision IN ('allowed', 'denied')),
    status       integer          NOT NULL,
    request_id   text             NOT NULL
);

CREATE INDEX audit_by_user ON audit_log (target_user, seq);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

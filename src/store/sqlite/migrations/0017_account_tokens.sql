-- Single-use account tokens (password reset, email verification), by the
-- SHA-256 of the token (the token itself is never stored). `purpose` is
-- `password_reset` or `verify_email`.
CREATE TABLE account_tokens (
    token_hash     TEXT    PRIMARY KEY,
    purpose        TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX account_tokens_by_expiry ON account_tokens (expires_at_ms);

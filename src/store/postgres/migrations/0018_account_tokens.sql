-- Single-use account tokens (password reset, email verification), by the
-- SHA-256 of the token (the token itself is never stored). `purpose` is
-- `password_reset` or `verify_email`.
CREATE TABLE account_tokens (
    token_hash  text COLLATE "C" PRIMARY KEY,
    purpose     text        NOT NULL,
    user_id     text COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used        boolean     NOT NULL DEFAULT false
);
CREATE INDEX account_tokens_by_expiry ON account_tokens (expires_at);

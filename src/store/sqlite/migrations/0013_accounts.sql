-- Built-in accounts. `user_id` is the `sub` of the account's access tokens;
-- `email_key` is the ASCII-lowercased email, unique (emails compare
-- case-insensitively); `password_hash` is an Argon2id PHC string; `roles` are
-- comma-separated role names.
CREATE TABLE accounts (
    user_id         TEXT    PRIMARY KEY,
    email           TEXT    NOT NULL,
    email_key       TEXT    NOT NULL UNIQUE,
    password_hash   TEXT    NOT NULL,
    roles           TEXT    NOT NULL,
    full_name       TEXT,
    email_verified  INTEGER NOT NULL DEFAULT 0,
    created_at_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- Refresh-token families: one per login; revoked as a whole.
CREATE TABLE refresh_families (
    family         TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL,
    revoked        INTEGER NOT NULL DEFAULT 0,
    created_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- Refresh tokens by SHA-256 fingerprint (the token itself is never stored).
CREATE TABLE refresh_tokens (
    token_hash     TEXT    PRIMARY KEY,
    family         TEXT    NOT NULL REFERENCES refresh_families (family),
    user_id        TEXT    NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0,
    issued_at_ms   INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);

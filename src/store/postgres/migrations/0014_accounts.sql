-- Built-in accounts. `user_id` is the `sub` of the account's access tokens;
-- `email_key` is the ASCII-lowercased email, unique (emails compare
-- case-insensitively); `password_hash` is an Argon2id PHC string; `roles` are
-- comma-separated role names.
CREATE TABLE accounts (
    user_id         text COLLATE "C" PRIMARY KEY,
    email           text        NOT NULL,
    email_key       text COLLATE "C" NOT NULL UNIQUE,
    password_hash   text        NOT NULL,
    roles           text        NOT NULL,
    full_name       text,
    email_verified  boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL
);

-- Refresh-token families: one per login; revoked as a whole.
CREATE TABLE refresh_families (
    family      uuid        PRIMARY KEY,
    user_id     text COLLATE "C" NOT NULL,
    revoked     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);

-- Refresh tokens by SHA-256 fingerprint (the token itself is never stored).
CREATE TABLE refresh_tokens (
    token_hash  text COLLATE "C" PRIMARY KEY,
    family      uuid        NOT NULL REFERENCES refresh_families (family),
    user_id     text COLLATE "C" NOT NULL,
    used        boolean     NOT NULL DEFAULT false,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);

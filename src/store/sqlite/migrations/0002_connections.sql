-- Source connections: status and sealed OAuth tokens per (user, provider).
-- Tokens are AES-256-GCM ciphertext (see connections::cipher); no plaintext token
-- is ever written here. The refresh lease lets one holder at a time refresh.
CREATE TABLE connections (
    user_id                TEXT    NOT NULL,
    provider               TEXT    NOT NULL,
    status                 TEXT    NOT NULL
                           CHECK (status IN ('connected', 'reauth_required', 'disconnected')),
    token_key_id           TEXT,
    token_nonce            BLOB,
    token_ciphertext       BLOB,
    access_expires_at_ms   INTEGER,
    access_refresh_at_ms   INTEGER,
    token_version          INTEGER NOT NULL DEFAULT 0,
    connected_at_ms        INTEGER,
    last_sync_at_ms        INTEGER,
    last_error             TEXT,
    updated_at_ms          INTEGER NOT NULL,
    refresh_lease_owner    TEXT,
    refresh_lease_until_ms INTEGER,
    PRIMARY KEY (user_id, provider),
    CHECK ((status = 'connected') = (token_ciphertext IS NOT NULL))
) WITHOUT ROWID;

CREATE INDEX connections_by_status ON connections (provider, status, user_id);

-- OAuth authorizations in flight, keyed by SHA-256 of the state; single use.
CREATE TABLE oauth_states (
    state_hash     TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    pkce_verifier  TEXT,
    browser_hash   TEXT,
    expires_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;

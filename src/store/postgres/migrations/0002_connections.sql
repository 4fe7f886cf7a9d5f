-- Source connections: status and sealed OAuth tokens per (user, provider).
-- Tokens are AES-256-GCM ciphertext (see connections::cipher); no plaintext token
-- is ever written here. The refresh lease lets one holder at a time refresh.
CREATE TABLE connections (
    user_id             text COLLATE "C" NOT NULL,
    provider            text COLLATE "C" NOT NULL,
    status              text             NOT NULL
                        CHECK (status IN ('connected', 'reauth_required', 'disconnected')),
    token_key_id        text,
    token_nonce         bytea,
    token_ciphertext    bytea,
    access_expires_at   timestamptz,
    access_refresh_at   timestamptz,
    token_version       bigint           NOT NULL DEFAULT 0,
    connected_at        timestamptz,
    last_sync_at        timestamptz,
    last_error          text,
    updated_at          timestamptz      NOT NULL,
    refresh_lease_owner text,
    refresh_lease_until timestamptz,
    -- The high-water mark: newest reading time a sync has stored. The next
    -- incremental poll starts here minus the overlap window.
    sync_cursor         timestamptz,
    PRIMARY KEY (user_id, provider),
    CHECK ((status = 'connected') = (token_ciphertext IS NOT NULL))
);

CREATE INDEX connections_by_status ON connections (provider, status, user_id);

-- OAuth authorizations in flight, keyed by SHA-256 of the state; single use.
CREATE TABLE oauth_states (
    state_hash     text        PRIMARY KEY,
    user_id        text        NOT NULL,
    provider       text        NOT NULL,
    pkce_verifier  text,
    browser_hash   text,
    expires_at     timestamptz NOT NULL
);

CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

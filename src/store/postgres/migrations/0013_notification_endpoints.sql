-- Where users want alert events POSTed (signed outbound webhooks). The signing
-- secret is sealed (AES-256-GCM, bound to the user and endpoint id), never clear.
CREATE TABLE notification_endpoints (
    id                 uuid             PRIMARY KEY,
    user_id            text COLLATE "C" NOT NULL,
    url                text             NOT NULL,
    events             text             NOT NULL,
    secret_key_id      text             NOT NULL,
    secret_nonce       bytea            NOT NULL,
    secret_ciphertext  bytea            NOT NULL,
    created_at         timestamptz      NOT NULL
);
CREATE INDEX notification_endpoints_by_user ON notification_endpoints (user_id, created_at, id);

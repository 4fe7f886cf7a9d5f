-- Where users want alert events POSTed (signed outbound webhooks). The signing
-- secret is sealed (AES-256-GCM, bound to the user and endpoint id), never clear.
CREATE TABLE notification_endpoints (
    id                 TEXT    NOT NULL PRIMARY KEY,
    user_id            TEXT    NOT NULL,
    url                TEXT    NOT NULL,
    events             TEXT    NOT NULL,
    secret_key_id      TEXT    NOT NULL,
    secret_nonce       BLOB    NOT NULL,
    secret_ciphertext  BLOB    NOT NULL,
    created_at_ms      INTEGER NOT NULL
);
CREATE INDEX notification_endpoints_by_user ON notification_endpoints (user_id, created_at_ms, id);

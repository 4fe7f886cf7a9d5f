-- Invitations to sign up, by the SHA-256 of their token (the token itself is
-- never stored). `email_key` is the ASCII-lowercased email the token is for;
-- `share_*` is the share to create when the invitee signs up (all null: none).
CREATE TABLE invitations (
    token_hash        TEXT    PRIMARY KEY,
    email             TEXT    NOT NULL,
    email_key         TEXT    NOT NULL,
    invited_by        TEXT    NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    share_patient     TEXT,
    share_role        TEXT,
    share_expires_ms  INTEGER,
    used              INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX invitations_by_email ON invitations (email_key);

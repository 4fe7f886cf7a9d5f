-- Invitations to sign up, by the SHA-256 of their token (the token itself is
-- never stored). `email_key` is the ASCII-lowercased email the token is for;
-- `share_*` is the share to create when the invitee signs up (all null: none).
CREATE TABLE invitations (
    token_hash      text COLLATE "C" PRIMARY KEY,
    email           text        NOT NULL,
    email_key       text COLLATE "C" NOT NULL,
    invited_by      text COLLATE "C" NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    share_patient   text COLLATE "C",
    share_role      text,
    share_expires   timestamptz,
    used            boolean     NOT NULL DEFAULT false
);
CREATE INDEX invitations_by_email ON invitations (email_key);

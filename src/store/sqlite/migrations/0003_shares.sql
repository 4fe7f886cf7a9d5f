-- Read access a patient granted to a caregiver or clinician; revoking deletes the row.
CREATE TABLE shares (
    patient_id     TEXT    NOT NULL,
    grantee_id     TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('caregiver', 'clinician')),
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    PRIMARY KEY (patient_id, grantee_id)
) WITHOUT ROWID;

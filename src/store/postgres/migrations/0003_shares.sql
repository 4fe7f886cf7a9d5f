-- Read access a patient granted to a caregiver or clinician; revoking deletes the row.
CREATE TABLE shares (
    patient_id  text COLLATE "C" NOT NULL,
    grantee_id  text COLLATE "C" NOT NULL,
    role        text             NOT NULL CHECK (role IN ('caregiver', 'clinician')),
    created_at  timestamptz      NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (patient_id, grantee_id)
);

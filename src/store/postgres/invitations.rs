//! PostgreSQL side of invitations: the `invitations` table; "use" is a
//! conditional update, so of two concurrent uses one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{db_error, ms, PostgresStore};
use crate::records::invitations::{Invitation, StoredInvitation};
use crate::store::{InvitationStore, StoreError};

#[async_trait]
impl InvitationStore for PostgresStore {
    async fn put_invitation(&self, i: Invitation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO invitations (token_hash, email, email_key, invited_by, created_at, \
             expires_at, share_patient, share_role, share_expires, used) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&i.token_hash)
        .bind(i.email.as_str())
        .bind(i.email.key())
        .bind(i.invited_by.as_str())
        .bind(ms(i.created_at))
        .bind(ms(i.expires_at))
        .bind(i.share.as_ref().map(|s| s.patient.as_str().to_owned()))
        .bind(i.share.as_ref().map(|s| s.role.as_str()))
        .bind(i.share.as_ref().and_then(|s| s.expires_at).map(ms))
        .bind(i.used)
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_invitation(&self, token_hash: &str) -> Result<Option<Invitation>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT email, invited_by, created_at, expires_at, share_patient, share_role, \
             share_expires, used FROM invitations WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let email: String = row.try_get(0).map_err(db_error)?;
        let by: String = row.try_get(1).map_err(db_error)?;
        let patient: Option<String> = row.try_get(4).map_err(db_error)?;
        let role: Option<String> = row.try_get(5).map_err(db_error)?;
        StoredInvitation {
            token_hash: token_hash.to_owned(),
            email: &email,
            invited_by: &by,
            created_at: row.try_get::<DateTime<Utc>, _>(2).map_err(db_error)?,
            expires_at: row.try_get::<DateTime<Utc>, _>(3).map_err(db_error)?,
            share_patient: patient.as_deref(),
            share_role: role.as_deref(),
            share_expires: row.try_get(6).map_err(db_error)?,
            used: row.try_get(7).map_err(db_error)?,
        }
        .parse()
        .map(Some)
        .map_err(StoreError::Corrupt)
    }

    async fn use_invitation(&self, token_hash: &str) -> Result<bool, StoreError> {
        let changed =
            sqlx::query("UPDATE invitations SET used = true WHERE token_hash = $1 AND NOT used")
                .bind(token_hash)
                .execute(self.pool())
                .await
                .map_err(db_error)?
                .rows_affected();
        Ok(changed == 1)
    }
}

//! SQLite side of invitations: the `invitations` table; "use" is a
//! conditional update on the single writer.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::rows::millis;
use super::{internal, SqliteStore};
use crate::records::invitations::{Invitation, StoredInvitation};
use crate::store::{InvitationStore, StoreError};

fn time(ms: i64, what: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    millis(ms).ok_or_else(|| StoreError::Corrupt(format!("invitation {what}: {ms}")))
}

#[async_trait]
impl InvitationStore for SqliteStore {
    async fn put_invitation(&self, i: Invitation) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO invitations (token_hash, email, email_key, invited_by, created_at_ms, \
                 expires_at_ms, share_patient, share_role, share_expires_ms, used) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(internal)?
            .execute(params![
                i.token_hash,
                i.email.as_str(),
                i.email.key(),
                i.invited_by.as_str(),
                i.created_at.timestamp_millis(),
                i.expires_at.timestamp_millis(),
                i.share.as_ref().map(|s| s.patient.as_str().to_owned()),
                i.share.as_ref().map(|s| s.role.as_str()),
                i.share
                    .as_ref()
                    .and_then(|s| s.expires_at)
                    .map(|t| t.timestamp_millis()),
                i.used,
            ])
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn get_invitation(&self, token_hash: &str) -> Result<Option<Invitation>, StoreError> {
        let hash = token_hash.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT email, invited_by, created_at_ms, expires_at_ms, share_patient, \
                     share_role, share_expires_ms, used FROM invitations WHERE token_hash = ?1",
                )
                .map_err(internal)?
                .query_row([&hash], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, i64>(7)? != 0,
                    ))
                })
                .optional()
                .map_err(internal)?;
            let Some((email, by, created, expires, patient, role, share_expires, used)) = row
            else {
                return Ok(None);
            };
            StoredInvitation {
                token_hash: hash,
                email: &email,
                invited_by: &by,
                created_at: time(created, "created_at_ms")?,
                expires_at: time(expires, "expires_at_ms")?,
                share_patient: patient.as_deref(),
                share_role: role.as_deref(),
                share_expires: share_expires
                    .map(|ms| time(ms, "share_expires_ms"))
                    .transpose()?,
                used,
            }
            .parse()
            .map(Some)
            .map_err(StoreError::Corrupt)
        })
        .await
    }

    async fn use_invitation(&self, token_hash: &str) -> Result<bool, StoreError> {
        let hash = token_hash.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE invitations SET used = 1 WHERE token_hash = ?1 AND used = 0",
                )
                .map_err(internal)?
                .execute([&hash])
                .map_err(internal)?;
            Ok(changed == 1)
        })
        .await
    }
}

//! SQLite side of single-use account tokens (password reset, email
//! verification): the `account_tokens` table; "use" is a conditional update
//! on the single writer.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::rows::millis;
use super::{internal, SqliteStore};
use crate::records::account_tokens::AccountToken;
use crate::store::{AccountTokenStore, StoreError};

fn time(ms: i64, what: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    millis(ms).ok_or_else(|| StoreError::Corrupt(format!("account token {what}: {ms}")))
}

#[async_trait]
impl AccountTokenStore for SqliteStore {
    async fn put_account_token(&self, t: AccountToken) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO account_tokens (token_hash, purpose, user_id, created_at_ms, \
                 expires_at_ms, used) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(internal)?
            .execute(params![
                t.token_hash,
                t.purpose.as_str(),
                t.account.as_str(),
                t.created_at.timestamp_millis(),
                t.expires_at.timestamp_millis(),
                t.used,
            ])
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn get_account_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountToken>, StoreError> {
        let hash = token_hash.to_owned();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT purpose, user_id, created_at_ms, expires_at_ms, used \
                     FROM account_tokens WHERE token_hash = ?1",
                )
                .map_err(internal)?
                .query_row([&hash], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)? != 0,
                    ))
                })
                .optional()
                .map_err(internal)?;
            let Some((purpose, user, created, expires, used)) = row else {
                return Ok(None);
            };
            AccountToken::from_stored(
                hash,
                &purpose,
                &user,
                time(created, "created_at_ms")?,
                time(expires, "expires_at_ms")?,
                used,
            )
            .map(Some)
            .map_err(StoreError::Corrupt)
        })
        .await
    }

    async fn use_account_token(&self, token_hash: &str) -> Result<bool, StoreError> {
        let hash = token_hash.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE account_tokens SET used = 1 WHERE token_hash = ?1 AND used = 0",
                )
                .map_err(internal)?
                .execute([&hash])
                .map_err(internal)?;
            Ok(changed == 1)
        })
        .await
    }
}

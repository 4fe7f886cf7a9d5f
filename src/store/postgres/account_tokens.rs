//! PostgreSQL side of single-use account tokens (password reset, email
//! verification): the `account_tokens` table; "use" is a conditional update,
//! so of two concurrent uses one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{db_error, ms, PostgresStore};
use crate::records::account_tokens::AccountToken;
use crate::store::{AccountTokenStore, StoreError};

#[async_trait]
impl AccountTokenStore for PostgresStore {
    async fn put_account_token(&self, t: AccountToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO account_tokens (token_hash, purpose, user_id, created_at, expires_at, \
             used) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.token_hash)
        .bind(t.purpose.as_str())
        .bind(t.account.as_str())
        .bind(ms(t.created_at))
        .bind(ms(t.expires_at))
        .bind(t.used)
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_account_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<AccountToken>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT purpose, user_id, created_at, expires_at, used FROM account_tokens \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let purpose: String = row.try_get(0).map_err(db_error)?;
        let user: String = row.try_get(1).map_err(db_error)?;
        AccountToken::from_stored(
            token_hash.to_owned(),
            &purpose,
            &user,
            row.try_get::<DateTime<Utc>, _>(2).map_err(db_error)?,
            row.try_get::<DateTime<Utc>, _>(3).map_err(db_error)?,
            row.try_get(4).map_err(db_error)?,
        )
        .map(Some)
        .map_err(StoreError::Corrupt)
    }

    async fn use_account_token(&self, token_hash: &str) -> Result<bool, StoreError> {
        let changed =
            sqlx::query("UPDATE account_tokens SET used = true WHERE token_hash = $1 AND NOT used")
                .bind(token_hash)
                .execute(self.pool())
                .await
                .map_err(db_error)?
                .rows_affected();
        Ok(changed == 1)
    }
}

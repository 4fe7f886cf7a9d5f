//! PostgreSQL side of accounts: `accounts`, `refresh_families`, `refresh_tokens`.
//! A rotation locks the token's row (and its family's) `FOR UPDATE`, so two
//! concurrent rotations of one token serialize: one rotates, the other finds it
//! used.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{db_error, ms, PostgresStore};
use crate::domain::{Email, UserId};
use crate::records::accounts::{roles_to_text, Account, AccountCreated, NewRefreshToken, Rotation};
use crate::store::{AccountStore, StoreError};

/// The account columns, in the order `account` reads them (a macro, so that
/// queries stay string literals).
macro_rules! columns {
    () => {
        "user_id, email, password_hash, roles, full_name, email_verified, created_at"
    };
}

const BY_ID: &str = concat!("SELECT ", columns!(), " FROM accounts WHERE user_id = $1");
const BY_EMAIL: &str = concat!("SELECT ", columns!(), " FROM accounts WHERE email_key = $1");

fn account(row: &PgRow) -> Result<Account, StoreError> {
    let id: String = row.try_get(0).map_err(db_error)?;
    let email: String = row.try_get(1).map_err(db_error)?;
    let roles: String = row.try_get(3).map_err(db_error)?;
    Account::from_stored(
        &id,
        &email,
        row.try_get(2).map_err(db_error)?,
        &roles,
        row.try_get(4).map_err(db_error)?,
        row.try_get(5).map_err(db_error)?,
        row.try_get(6).map_err(db_error)?,
    )
    .map_err(StoreError::Corrupt)
}

impl PostgresStore {
    async fn one_account(
        &self,
        query: &'static str,
        value: &str,
    ) -> Result<Option<Account>, StoreError> {
        sqlx::query(query)
            .bind(value)
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?
            .as_ref()
            .map(account)
            .transpose()
    }
}

async fn insert_token(
    tx: &mut sqlx::PgConnection,
    token: &NewRefreshToken,
    family: uuid::Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, used, issued_at, expires_at) \
         VALUES ($1, $2, $3, false, $4, $5)",
    )
    .bind(&token.hash)
    .bind(family)
    .bind(token.account.as_str())
    .bind(ms(token.issued_at))
    .bind(ms(token.expires_at))
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn create_account(&self, a: Account) -> Result<AccountCreated, StoreError> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO accounts (",
            columns!(),
            ", email_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
        ))
        .bind(a.id.as_str())
        .bind(a.email.as_str())
        .bind(&a.password_hash)
        .bind(roles_to_text(a.roles))
        .bind(&a.full_name)
        .bind(a.email_verified)
        .bind(ms(a.created_at))
        .bind(a.email.key())
        .execute(self.pool())
        .await
        .map_err(db_error)?
        .rows_affected();
        Ok(if inserted == 1 {
            AccountCreated::Created
        } else {
            AccountCreated::Taken
        })
    }

    async fn get_account(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        self.one_account(BY_ID, id.as_str()).await
    }

    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
        self.one_account(BY_EMAIL, email.key()).await
    }

    async fn start_refresh_family(&self, first: NewRefreshToken) -> Result<uuid::Uuid, StoreError> {
        let family = uuid::Uuid::new_v4();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO refresh_families (family, user_id, revoked, created_at) \
             VALUES ($1, $2, false, $3)",
        )
        .bind(family)
        .bind(first.account.as_str())
        .bind(ms(first.issued_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_token(&mut tx, &first, family).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(family)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: NewRefreshToken,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.begin().await?;
        let found: Option<(uuid::Uuid, String, bool, DateTime<Utc>, bool)> = sqlx::query_as(
            "SELECT t.family, t.user_id, t.used, t.expires_at, f.revoked \
             FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family \
             WHERE t.token_hash = $1 FOR UPDATE OF t, f",
        )
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some((family, user, used, expires_at, revoked)) = found else {
            return Ok(Rotation::Unknown);
        };
        let account = UserId::parse(&user)
            .map_err(|e| StoreError::Corrupt(format!("refresh token owner {user}: {e}")))?;
        if revoked {
            return Ok(Rotation::Revoked);
        }
        if used {
            sqlx::query("UPDATE refresh_families SET revoked = true WHERE family = $1")
                .bind(family)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            return Ok(Rotation::Reused { account, family });
        }
        if expires_at <= next.issued_at {
            return Ok(Rotation::Expired);
        }
        sqlx::query("UPDATE refresh_tokens SET used = true WHERE token_hash = $1")
            .bind(presented)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let next = NewRefreshToken {
            account: account.clone(),
            ..next
        };
        insert_token(&mut tx, &next, family).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Rotation::Rotated { account, family })
    }

    async fn disable_account(&self, id: &UserId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let found = sqlx::query(
            "UPDATE accounts SET disabled_at = COALESCE(disabled_at, $2) WHERE user_id = $1",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        sqlx::query("UPDATE refresh_families SET revoked = true WHERE user_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(found > 0)
    }

    async fn account_disabled(&self, id: &UserId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT disabled_at IS NOT NULL FROM accounts WHERE user_id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => row.try_get::<bool, _>(0).map_err(db_error),
            None => Ok(false),
        }
    }

    async fn enable_account(&self, id: &UserId) -> Result<bool, StoreError> {
        let found = sqlx::query("UPDATE accounts SET disabled_at = NULL WHERE user_id = $1")
            .bind(id.as_str())
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(found > 0)
    }

    async fn set_password(&self, id: &UserId, password_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(db_error)?;
        let found = sqlx::query("UPDATE accounts SET password_hash = $2 WHERE user_id = $1")
            .bind(id.as_str())
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        sqlx::query("UPDATE refresh_families SET revoked = true WHERE user_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(found > 0)
    }

    async fn set_email_verified(&self, id: &UserId) -> Result<bool, StoreError> {
        let found = sqlx::query("UPDATE accounts SET email_verified = true WHERE user_id = $1")
            .bind(id.as_str())
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(found > 0)
    }

    async fn revoke_refresh_family(&self, presented: &str) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE refresh_families SET revoked = true WHERE family = \
             (SELECT family FROM refresh_tokens WHERE token_hash = $1)",
        )
        .bind(presented)
        .execute(self.pool())
        .await
        .map_err(db_error)?
        .rows_affected();
        Ok(changed > 0)
    }
}

//! SQLite side of accounts: `accounts`, `refresh_families`, `refresh_tokens`.
//! Every write is one transaction on the single writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::rows::millis;
use super::{internal, SqliteStore};
use crate::domain::{Email, UserId};
use crate::records::accounts::{roles_to_text, Account, AccountCreated, NewRefreshToken, Rotation};
use crate::store::{AccountStore, StoreError};

const COLUMNS: &str =
    "user_id, email, password_hash, roles, full_name, email_verified, created_at_ms";

fn account(r: &Row<'_>) -> rusqlite::Result<Result<Account, StoreError>> {
    let id: String = r.get(0)?;
    let email: String = r.get(1)?;
    let roles: String = r.get(3)?;
    let created: i64 = r.get(6)?;
    let Some(created_at) = millis(created) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "account {id}: created_at_ms {created}"
        ))));
    };
    Ok(Account::from_stored(
        &id,
        &email,
        r.get(2)?,
        &roles,
        r.get(4)?,
        r.get::<_, i64>(5)? != 0,
        created_at,
    )
    .map_err(StoreError::Corrupt))
}

fn one_account(
    conn: &rusqlite::Connection,
    column: &str,
    value: &str,
) -> Result<Option<Account>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM accounts WHERE {column} = ?1"
    ))
    .map_err(internal)?
    .query_row([value], account)
    .optional()
    .map_err(internal)?
    .transpose()
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, a: Account) -> Result<AccountCreated, StoreError> {
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(&format!(
                    "INSERT INTO accounts ({COLUMNS}, email_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT DO NOTHING"
                ))
                .map_err(internal)?
                .execute(params![
                    a.id.as_str(),
                    a.email.as_str(),
                    a.password_hash,
                    roles_to_text(a.roles),
                    a.full_name,
                    a.email_verified,
                    a.created_at.timestamp_millis(),
                    a.email.key(),
                ])
                .map_err(internal)?;
            Ok(if inserted == 1 {
                AccountCreated::Created
            } else {
                AccountCreated::Taken
            })
        })
        .await
    }

    async fn get_account(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        let id = id.clone();
        self.read(move |conn| one_account(conn, "user_id", id.as_str()))
            .await
    }

    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError> {
        let key = email.key().to_owned();
        self.read(move |conn| one_account(conn, "email_key", &key))
            .await
    }

    async fn start_refresh_family(&self, first: NewRefreshToken) -> Result<uuid::Uuid, StoreError> {
        let family = uuid::Uuid::new_v4();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            tx.prepare_cached(
                "INSERT INTO refresh_families (family, user_id, revoked, created_at_ms) \
                 VALUES (?1, ?2, 0, ?3)",
            )
            .map_err(internal)?
            .execute(params![
                family.to_string(),
                first.account.as_str(),
                first.issued_at.timestamp_millis()
            ])
            .map_err(internal)?;
            insert_token(&tx, &first, family)?;
            tx.commit().map_err(internal)?;
            Ok(family)
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: NewRefreshToken,
    ) -> Result<Rotation, StoreError> {
        let presented = presented.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let found = tx
                .prepare_cached(
                    "SELECT t.family, t.user_id, t.used, t.expires_at_ms, f.revoked \
                     FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family \
                     WHERE t.token_hash = ?1",
                )
                .map_err(internal)?
                .query_row([&presented], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? != 0,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)? != 0,
                    ))
                })
                .optional()
                .map_err(internal)?;
            let Some((family, user, used, expires_ms, revoked)) = found else {
                return Ok(Rotation::Unknown);
            };
            let family_id = uuid::Uuid::parse_str(&family)
                .map_err(|e| StoreError::Corrupt(format!("refresh family {family}: {e}")))?;
            let account = UserId::parse(&user)
                .map_err(|e| StoreError::Corrupt(format!("refresh token owner {user}: {e}")))?;
            if revoked {
                return Ok(Rotation::Revoked);
            }
            if used {
                revoke(&tx, &family)?;
                tx.commit().map_err(internal)?;
                return Ok(Rotation::Reused {
                    account,
                    family: family_id,
                });
            }
            if expires_ms <= next.issued_at.timestamp_millis() {
                return Ok(Rotation::Expired);
            }
            tx.prepare_cached("UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?1")
                .map_err(internal)?
                .execute([&presented])
                .map_err(internal)?;
            let next = NewRefreshToken {
                account: account.clone(),
                ..next
            };
            insert_token(&tx, &next, family_id)?;
            tx.commit().map_err(internal)?;
            Ok(Rotation::Rotated {
                account,
                family: family_id,
            })
        })
        .await
    }

    async fn disable_account(&self, id: &UserId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let found = tx
                .prepare_cached(
                    "UPDATE accounts SET disabled_at_ms = COALESCE(disabled_at_ms, ?2) \
                     WHERE user_id = ?1",
                )
                .map_err(internal)?
                .execute(params![id.as_str(), at.timestamp_millis()])
                .map_err(internal)?;
            tx.prepare_cached("UPDATE refresh_families SET revoked = 1 WHERE user_id = ?1")
                .map_err(internal)?
                .execute([id.as_str()])
                .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(found > 0)
        })
        .await
    }

    async fn account_disabled(&self, id: &UserId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT disabled_at_ms IS NOT NULL FROM accounts WHERE user_id = ?1",
            )
            .map_err(internal)?
            .query_row([id.as_str()], |row| row.get::<_, bool>(0))
            .optional()
            .map_err(internal)
            .map(|found| found.unwrap_or(false))
        })
        .await
    }

    async fn enable_account(&self, id: &UserId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE accounts SET disabled_at_ms = NULL WHERE user_id = ?1")
                .map_err(internal)?
                .execute([id.as_str()])
                .map_err(internal)?;
            Ok(found > 0)
        })
        .await
    }

    async fn set_password(&self, id: &UserId, password_hash: &str) -> Result<bool, StoreError> {
        let id = id.clone();
        let hash = password_hash.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let found = tx
                .prepare_cached("UPDATE accounts SET password_hash = ?2 WHERE user_id = ?1")
                .map_err(internal)?
                .execute(params![id.as_str(), hash])
                .map_err(internal)?;
            tx.prepare_cached("UPDATE refresh_families SET revoked = 1 WHERE user_id = ?1")
                .map_err(internal)?
                .execute([id.as_str()])
                .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(found > 0)
        })
        .await
    }

    async fn set_email_verified(&self, id: &UserId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let found = conn
                .prepare_cached("UPDATE accounts SET email_verified = 1 WHERE user_id = ?1")
                .map_err(internal)?
                .execute([id.as_str()])
                .map_err(internal)?;
            Ok(found > 0)
        })
        .await
    }

    async fn revoke_refresh_family(&self, presented: &str) -> Result<bool, StoreError> {
        let presented = presented.to_owned();
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE refresh_families SET revoked = 1 WHERE family = \
                     (SELECT family FROM refresh_tokens WHERE token_hash = ?1)",
                )
                .map_err(internal)?
                .execute([&presented])
                .map_err(internal)?;
            Ok(changed > 0)
        })
        .await
    }
}

fn insert_token(
    tx: &rusqlite::Transaction<'_>,
    token: &NewRefreshToken,
    family: uuid::Uuid,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, used, issued_at_ms, \
         expires_at_ms) VALUES (?1, ?2, ?3, 0, ?4, ?5)",
    )
    .map_err(internal)?
    .execute(params![
        token.hash,
        family.to_string(),
        token.account.as_str(),
        token.issued_at.timestamp_millis(),
        token.expires_at.timestamp_millis(),
    ])
    .map_err(internal)?;
    Ok(())
}

fn revoke(tx: &rusqlite::Transaction<'_>, family: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE refresh_families SET revoked = 1 WHERE family = ?1")
        .map_err(internal)?
        .execute([family])
        .map_err(internal)?;
    Ok(())
}

//! PostgreSQL side of source connections: rows of `connections` and
//! `oauth_states`, and the refresh lease, taken and released by conditional
//! UPDATEs so that one holder wins across instances.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::PgConnection;

use super::{col, db_error, int, ms, opt_ms, user_id, PostgresStore};
use crate::domain::UserId;
use crate::records::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome, SealedTokens,
    SyncNote,
};
use crate::records::events::Event;
use crate::secret::Secret;
use crate::store::ConnectionStore;
use crate::store::StoreError;
use async_trait::async_trait;

macro_rules! columns {
    () => {
        "user_id, provider, status, token_key_id, token_nonce, token_ciphertext, \
         access_expires_at, access_refresh_at, token_version, connected_at, last_sync_at, \
         last_error, updated_at, sync_cursor"
    };
}

const SELECT_ONE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM connections WHERE user_id = $1 AND provider = $2"
);

fn read_connection(row: &PgRow) -> Result<Connection, StoreError> {
    let provider: &str = col(row, 1)?;
    let status: &str = col(row, 2)?;
    let tokens = match (col(row, 3)?, col(row, 4)?, col(row, 5)?) {
        (Some(key_id), Some(nonce), Some(ciphertext)) => Some(SealedTokens {
            key_id,
            nonce,
            ciphertext,
        }),
        (None, None, None) => None,
        _ => return Err(StoreError::Corrupt("partial token columns".into())),
    };
    Ok(Connection {
        user_id: user_id(col(row, 0)?, "connection")?,
        provider: Provider::parse(provider)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {provider:?}")))?,
        status: ConnectionStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        tokens,
        access_expires_at: col(row, 6)?,
        access_refresh_at: col(row, 7)?,
        token_version: col(row, 8)?,
        connected_at: col(row, 9)?,
        last_sync_at: col(row, 10)?,
        last_error: col(row, 11)?,
        updated_at: col(row, 12)?,
        sync_cursor: col(row, 13)?,
    })
}

async fn select_one(
    conn: &mut PgConnection,
    user: &str,
    provider: Provider,
) -> Result<Option<Connection>, StoreError> {
    sqlx::query(SELECT_ONE)
        .bind(user)
        .bind(provider.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_connection)
        .transpose()
}

/// The sealed token columns of a write: all three or none.
/// Applies a finished sync's note to the connection, if there is one.
pub(super) async fn note_sync(
    conn: &mut PgConnection,
    user: &UserId,
    provider: Provider,
    note: &SyncNote,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connections SET last_sync_at = COALESCE($3, last_sync_at), \
         last_error = $4, updated_at = $5 WHERE user_id = $1 AND provider = $2",
    )
    .bind(user.as_str())
    .bind(provider.as_str())
    .bind(opt_ms(note.last_sync_at))
    .bind(note.last_error.as_deref())
    .bind(ms(note.updated_at))
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

fn token_columns(tokens: Option<&SealedTokens>) -> (Option<&str>, Option<&[u8]>, Option<&[u8]>) {
    match tokens {
        Some(t) => (
            Some(t.key_id.as_str()),
            Some(t.nonce.as_slice()),
            Some(t.ciphertext.as_slice()),
        ),
        None => (None, None, None),
    }
}

#[async_trait]
impl ConnectionStore for PostgresStore {
    async fn put_pending_authorization(
        &self,
        p: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, user_id, provider, pkce_verifier, \
             browser_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&p.state_hash)
        .bind(p.user_id.as_str())
        .bind(p.provider.as_str())
        .bind(p.pkce_verifier.as_ref().map(|v| v.expose().as_str()))
        .bind(&p.browser_hash)
        .bind(ms(p.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // The new one stays; of the others, the newest keep_per_user - 1.
        sqlx::query(
            "DELETE FROM oauth_states WHERE user_id = $1 AND state_hash <> $2 \
             AND state_hash NOT IN (SELECT state_hash FROM oauth_states \
                 WHERE user_id = $1 AND state_hash <> $2 \
                 ORDER BY expires_at DESC, state_hash DESC LIMIT $3)",
        )
        .bind(p.user_id.as_str())
        .bind(&p.state_hash)
        .bind(int(keep_per_user.saturating_sub(1)))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let pruned = sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(pruned)
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let now = ms(now);
        let mut tx = self.begin().await?;
        let found = sqlx::query(
            "DELETE FROM oauth_states WHERE state_hash = $1 \
             RETURNING user_id, provider, pkce_verifier, browser_hash, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let Some(row) = found else {
            return Ok(None);
        };
        let expires_at: DateTime<Utc> = col(&row, 4)?;
        if expires_at <= now {
            return Ok(None);
        }
        let provider: &str = col(&row, 1)?;
        Ok(Some(PendingAuthorization {
            state_hash: state_hash.to_owned(),
            user_id: user_id(col(&row, 0)?, "oauth state")?,
            provider: Provider::parse(provider)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {provider:?}")))?,
            pkce_verifier: col::<Option<String>>(&row, 2)?.map(Secret::new),
            browser_hash: col(&row, 3)?,
            expires_at,
        }))
    }

    async fn put_connection(&self, c: Connection) -> Result<(), StoreError> {
        let (key_id, nonce, ciphertext) = token_columns(c.tokens.as_ref());
        let mut tx = self.begin().await?;
        // The status before this write decides whether it is news. The row is
        // locked when it exists; when it does not, the INSERT settles who
        // creates it, and the loser reads the winner's row on its next turn.
        let previous = loop {
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT status FROM connections WHERE user_id = $1 AND provider = $2 FOR UPDATE",
            )
            .bind(c.user_id.as_str())
            .bind(c.provider.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            if let Some(status) = stored {
                sqlx::query(
                    "UPDATE connections SET status = $3, token_key_id = $4, token_nonce = $5, \
                     token_ciphertext = $6, access_expires_at = $7, access_refresh_at = $8, \
                     token_version = token_version + 1, connected_at = $9, last_sync_at = $10, \
                     last_error = $11, updated_at = $12, \
                     refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     WHERE user_id = $1 AND provider = $2",
                )
                .bind(c.user_id.as_str())
                .bind(c.provider.as_str())
                .bind(c.status.as_str())
                .bind(key_id)
                .bind(nonce)
                .bind(ciphertext)
                .bind(opt_ms(c.access_expires_at))
                .bind(opt_ms(c.access_refresh_at))
                .bind(opt_ms(c.connected_at))
                .bind(opt_ms(c.last_sync_at))
                .bind(&c.last_error)
                .bind(ms(c.updated_at))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                break ConnectionStatus::parse(&status);
            }
            let inserted = sqlx::query(
                "INSERT INTO connections (user_id, provider, status, token_key_id, token_nonce, \
                 token_ciphertext, access_expires_at, access_refresh_at, token_version, \
                 connected_at, last_sync_at, last_error, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12) \
                 ON CONFLICT (user_id, provider) DO NOTHING",
            )
            .bind(c.user_id.as_str())
            .bind(c.provider.as_str())
            .bind(c.status.as_str())
            .bind(key_id)
            .bind(nonce)
            .bind(ciphertext)
            .bind(opt_ms(c.access_expires_at))
            .bind(opt_ms(c.access_refresh_at))
            .bind(opt_ms(c.connected_at))
            .bind(opt_ms(c.last_sync_at))
            .bind(&c.last_error)
            .bind(ms(c.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if inserted == 1 {
                break None;
            }
        };
        let events = if c.status.is_news_after(previous) {
            super::outbox::append(
                &mut tx,
                [Event::connection_changed(&c.user_id, c.provider, c.status)],
            )
            .await?
        } else {
            0
        };
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(())
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(db_error)?;
        select_one(&mut conn, user.as_str(), provider).await
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM connections WHERE user_id = $1 ORDER BY provider"
        ))
        .bind(user.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_connection)
        .collect()
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM connections WHERE provider = $1 AND status = $2 ORDER BY user_id"
        ))
        .bind(provider.as_str())
        .bind(status.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_connection)
        .collect()
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await.map_err(db_error)?;
        note_sync(&mut conn, user, provider, &SyncNote::of(at, error)).await
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError> {
        // One statement: a competing UPDATE waits for this one's row lock and
        // then re-checks the condition against the row as this one left it.
        sqlx::query(concat!(
            "UPDATE connections SET refresh_lease_owner = $3, refresh_lease_until = $5 \
             WHERE user_id = $1 AND provider = $2 AND status = 'connected' \
             AND (refresh_lease_owner IS NULL OR refresh_lease_owner = $3 \
                  OR refresh_lease_until <= $4) \
             RETURNING ",
            columns!()
        ))
        .bind(user.as_str())
        .bind(provider.as_str())
        .bind(owner)
        .bind(ms(now))
        .bind(ms(until))
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_connection)
        .transpose()
    }

    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = ms(now);
        // Every statement: `WHERE user_id = $1 AND provider = $2 AND
        // refresh_lease_owner = $3`, and releases the lease.
        let query = match &outcome {
            RefreshOutcome::Refreshed {
                tokens,
                access_expires_at,
                access_refresh_at,
            } => sqlx::query(
                "UPDATE connections SET status = 'connected', token_key_id = $4, \
                 token_nonce = $5, token_ciphertext = $6, access_expires_at = $7, \
                 access_refresh_at = $8, token_version = token_version + 1, \
                 last_error = NULL, updated_at = $9, \
                 refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE user_id = $1 AND provider = $2 AND refresh_lease_owner = $3",
            )
            .bind(user.as_str())
            .bind(provider.as_str())
            .bind(owner)
            .bind(&tokens.key_id)
            .bind(&tokens.nonce)
            .bind(&tokens.ciphertext)
            .bind(ms(*access_expires_at))
            .bind(ms(*access_refresh_at))
            .bind(now),
            RefreshOutcome::Revoked { error } => sqlx::query(
                "UPDATE connections SET status = 'reauth_required', token_key_id = NULL, \
                 token_nonce = NULL, token_ciphertext = NULL, access_expires_at = NULL, \
                 access_refresh_at = NULL, token_version = token_version + 1, \
                 last_error = $4, updated_at = $5, \
                 refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE user_id = $1 AND provider = $2 AND refresh_lease_owner = $3",
            )
            .bind(user.as_str())
            .bind(provider.as_str())
            .bind(owner)
            .bind(error)
            .bind(now),
            RefreshOutcome::Failed { error } => sqlx::query(
                "UPDATE connections SET last_error = $4, updated_at = $5, \
                 refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE user_id = $1 AND provider = $2 AND refresh_lease_owner = $3",
            )
            .bind(user.as_str())
            .bind(provider.as_str())
            .bind(owner)
            .bind(error)
            .bind(now),
            RefreshOutcome::Rewrapped { tokens } => sqlx::query(
                "UPDATE connections SET token_key_id = $4, token_nonce = $5, \
                 token_ciphertext = $6, refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE user_id = $1 AND provider = $2 AND refresh_lease_owner = $3 \
                 AND status = 'connected'",
            )
            .bind(user.as_str())
            .bind(provider.as_str())
            .bind(owner)
            .bind(&tokens.key_id)
            .bind(&tokens.nonce)
            .bind(&tokens.ciphertext),
            RefreshOutcome::Released => sqlx::query(
                "UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE user_id = $1 AND provider = $2 AND refresh_lease_owner = $3",
            )
            .bind(user.as_str())
            .bind(provider.as_str())
            .bind(owner),
        };
        let mut tx = self.begin().await?;
        let changed = query
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
            == 1;
        // A revocation changes the connection's status: that is news.
        let events = if changed && matches!(outcome, RefreshOutcome::Revoked { .. }) {
            super::outbox::append(
                &mut tx,
                [Event::connection_changed(
                    user,
                    provider,
                    ConnectionStatus::ReauthRequired,
                )],
            )
            .await?
        } else {
            0
        };
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(changed)
    }
}

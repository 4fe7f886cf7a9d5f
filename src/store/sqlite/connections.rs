//! SQLite side of source connections: rows of `connections` and `oauth_states`,
//! and the refresh lease (a conditional UPDATE, so only one holder wins).

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{internal, SqliteStore};
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

const COLUMNS: &str = "user_id, provider, status, token_key_id, token_nonce, token_ciphertext, \
     access_expires_at_ms, access_refresh_at_ms, token_version, connected_at_ms, last_sync_at_ms, last_error, \
     updated_at_ms, sync_cursor_ms";

pub(super) fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub(super) fn time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
    })
    .transpose()
}

fn read_connection(row: &Row<'_>) -> rusqlite::Result<Result<Connection, StoreError>> {
    let user: String = row.get(0)?;
    let provider: String = row.get(1)?;
    let status: String = row.get(2)?;
    let key_id: Option<String> = row.get(3)?;
    let nonce: Option<Vec<u8>> = row.get(4)?;
    let ciphertext: Option<Vec<u8>> = row.get(5)?;
    let access_expires_at: Option<i64> = row.get(6)?;
    let access_refresh_at: Option<i64> = row.get(7)?;
    let token_version: i64 = row.get(8)?;
    let connected_at: Option<i64> = row.get(9)?;
    let last_sync_at: Option<i64> = row.get(10)?;
    let last_error: Option<String> = row.get(11)?;
    let updated_at: i64 = row.get(12)?;
    let sync_cursor: Option<i64> = row.get(13)?;
    Ok((|| {
        let tokens = match (key_id, nonce, ciphertext) {
            (Some(key_id), Some(nonce), Some(ciphertext)) => Some(SealedTokens {
                key_id,
                nonce,
                ciphertext,
            }),
            (None, None, None) => None,
            _ => return Err(StoreError::Corrupt("partial token columns".into())),
        };
        Ok(Connection {
            user_id: UserId::parse(&user)
                .map_err(|e| StoreError::Corrupt(format!("connection user id: {e}")))?,
            provider: Provider::parse(&provider)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {provider:?}")))?,
            status: ConnectionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
            tokens,
            access_expires_at: time(access_expires_at)?,
            access_refresh_at: time(access_refresh_at)?,
            token_version,
            connected_at: time(connected_at)?,
            last_sync_at: time(last_sync_at)?,
            sync_cursor: time(sync_cursor)?,
            last_error,
            updated_at: time(Some(updated_at))?.unwrap_or_default(),
        })
    })())
}

/// Applies a finished sync's note to the connection, if there is one.
pub(super) fn note_sync(
    conn: &rusqlite::Connection,
    user: &UserId,
    provider: Provider,
    note: &SyncNote,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE connections SET last_sync_at_ms = COALESCE(?3, last_sync_at_ms), \
         last_error = ?4, updated_at_ms = ?5 WHERE user_id = ?1 AND provider = ?2",
    )
    .map_err(internal)?
    .execute(params![
        user.as_str(),
        provider.as_str(),
        ms(note.last_sync_at),
        note.last_error,
        note.updated_at.timestamp_millis()
    ])
    .map_err(internal)?;
    Ok(())
}

fn select_one(
    conn: &rusqlite::Connection,
    user: &str,
    provider: &str,
) -> Result<Option<Connection>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM connections WHERE user_id = ?1 AND provider = ?2"
    ))
    .map_err(internal)?
    .query_row((user, provider), read_connection)
    .optional()
    .map_err(internal)?
    .transpose()
}

fn select_many(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Connection>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt.query_map(params, read_connection).map_err(internal)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(internal)??);
    }
    Ok(out)
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn put_pending_authorization(
        &self,
        p: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            tx.execute(
                "INSERT INTO oauth_states (state_hash, user_id, provider, pkce_verifier, \
                 browser_hash, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.state_hash,
                    p.user_id.as_str(),
                    p.provider.as_str(),
                    p.pkce_verifier.as_ref().map(|v| v.expose().as_str()),
                    p.browser_hash,
                    p.expires_at.timestamp_millis()
                ],
            )
            .map_err(internal)?;
            // The new one stays; of the others, the newest keep_per_user - 1.
            tx.execute(
                "DELETE FROM oauth_states WHERE user_id = ?1 AND state_hash <> ?2 \
                 AND state_hash NOT IN (SELECT state_hash FROM oauth_states \
                     WHERE user_id = ?1 AND state_hash <> ?2 \
                     ORDER BY expires_at_ms DESC, state_hash DESC LIMIT ?3)",
                params![
                    p.user_id.as_str(),
                    p.state_hash,
                    i64::try_from(keep_per_user.saturating_sub(1)).unwrap_or(i64::MAX)
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let pruned = conn
                .execute(
                    "DELETE FROM oauth_states WHERE expires_at_ms <= ?1",
                    [now.timestamp_millis()],
                )
                .map_err(internal)?;
            Ok(pruned as u64)
        })
        .await
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        let state_hash = state_hash.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let found = tx
                .query_row(
                    "DELETE FROM oauth_states WHERE state_hash = ?1 \
                     RETURNING user_id, provider, pkce_verifier, browser_hash, expires_at_ms",
                    [&state_hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()
                .map_err(internal)?;
            tx.execute(
                "DELETE FROM oauth_states WHERE expires_at_ms <= ?1",
                [now.timestamp_millis()],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            let Some((user, provider, verifier, browser_hash, expires_at_ms)) = found else {
                return Ok(None);
            };
            let expires_at = time(Some(expires_at_ms))?.unwrap_or_default();
            if expires_at <= now {
                return Ok(None);
            }
            Ok(Some(PendingAuthorization {
                state_hash,
                user_id: UserId::parse(&user)
                    .map_err(|e| StoreError::Corrupt(format!("oauth state user id: {e}")))?,
                provider: Provider::parse(&provider)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown provider {provider:?}")))?,
                pkce_verifier: verifier.map(Secret::new),
                browser_hash,
                expires_at,
            }))
        })
        .await
    }

    async fn put_connection(&self, c: Connection) -> Result<(), StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let previous: Option<String> = tx
                .query_row(
                    "SELECT status FROM connections WHERE user_id = ?1 AND provider = ?2",
                    params![c.user_id.as_str(), c.provider.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            let (key_id, nonce, ciphertext) = match &c.tokens {
                Some(t) => (
                    Some(t.key_id.as_str()),
                    Some(t.nonce.as_slice()),
                    Some(t.ciphertext.as_slice()),
                ),
                None => (None, None, None),
            };
            tx.prepare_cached(&format!(
                "INSERT INTO connections ({COLUMNS}, refresh_lease_owner, refresh_lease_until_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11, ?12, NULL, NULL, NULL) \
                 ON CONFLICT (user_id, provider) DO UPDATE SET status = excluded.status, \
                 token_key_id = excluded.token_key_id, token_nonce = excluded.token_nonce, \
                 token_ciphertext = excluded.token_ciphertext, \
                 access_expires_at_ms = excluded.access_expires_at_ms, \
                 access_refresh_at_ms = excluded.access_refresh_at_ms, \
                 token_version = connections.token_version + 1, \
                 connected_at_ms = excluded.connected_at_ms, \
                 last_sync_at_ms = excluded.last_sync_at_ms, last_error = excluded.last_error, \
                 updated_at_ms = excluded.updated_at_ms, \
                 refresh_lease_owner = NULL, refresh_lease_until_ms = NULL"
            ))
            .map_err(internal)?
            .execute(params![
                c.user_id.as_str(),
                c.provider.as_str(),
                c.status.as_str(),
                key_id,
                nonce,
                ciphertext,
                ms(c.access_expires_at),
                ms(c.access_refresh_at),
                ms(c.connected_at),
                ms(c.last_sync_at),
                c.last_error,
                c.updated_at.timestamp_millis(),
            ])
            .map_err(internal)?;
            if c.status
                .is_news_after(previous.as_deref().and_then(ConnectionStatus::parse))
            {
                super::outbox::append(
                    &tx,
                    [Event::connection_changed(&c.user_id, c.provider, c.status)],
                )?;
            }
            tx.commit().map_err(internal)
        })
        .await?;
        // The write may have changed the status: publish at once.
        self.inner.outbox_written.notify_one();
        Ok(())
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError> {
        let user = user.clone();
        self.read(move |conn| select_one(conn, user.as_str(), provider.as_str()))
            .await
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            select_many(
                conn,
                &format!("SELECT {COLUMNS} FROM connections WHERE user_id = ?1 ORDER BY provider"),
                [user.as_str()],
            )
        })
        .await
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError> {
        self.read(move |conn| {
            select_many(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM connections WHERE provider = ?1 AND status = ?2 \
                     ORDER BY user_id"
                ),
                [provider.as_str(), status.as_str()],
            )
        })
        .await
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(move |conn| note_sync(conn, &user, provider, &SyncNote::of(at, error)))
            .await
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError> {
        let user = user.clone();
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let taken = tx
                .execute(
                    "UPDATE connections SET refresh_lease_owner = ?3, refresh_lease_until_ms = ?5 \
                     WHERE user_id = ?1 AND provider = ?2 AND status = 'connected' \
                     AND (refresh_lease_owner IS NULL OR refresh_lease_owner = ?3 \
                          OR refresh_lease_until_ms <= ?4)",
                    params![
                        user.as_str(),
                        provider.as_str(),
                        owner,
                        now.timestamp_millis(),
                        until.timestamp_millis()
                    ],
                )
                .map_err(internal)?;
            let row = if taken == 1 {
                select_one(&tx, user.as_str(), provider.as_str())?
            } else {
                None
            };
            tx.commit().map_err(internal)?;
            Ok(row)
        })
        .await
    }

    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let user = user.clone();
        let owner = owner.to_owned();
        let finished = self.write(move |conn| {
            let now = now.timestamp_millis();
            let held = "WHERE user_id = ?1 AND provider = ?2 AND refresh_lease_owner = ?3";
            let release = "refresh_lease_owner = NULL, refresh_lease_until_ms = NULL";
            let changed = match outcome {
                RefreshOutcome::Refreshed {
                    tokens,
                    access_expires_at,
                    access_refresh_at,
                } => conn.execute(
                    &format!(
                        "UPDATE connections SET status = 'connected', token_key_id = ?4, \
                         token_nonce = ?5, token_ciphertext = ?6, access_expires_at_ms = ?7, \
                         access_refresh_at_ms = ?8, token_version = token_version + 1, \
                         last_error = NULL, updated_at_ms = ?9, {release} {held}"
                    ),
                    params![
                        user.as_str(),
                        provider.as_str(),
                        owner,
                        tokens.key_id,
                        tokens.nonce,
                        tokens.ciphertext,
                        access_expires_at.timestamp_millis(),
                        access_refresh_at.timestamp_millis(),
                        now
                    ],
                ),
                RefreshOutcome::Revoked { error } => {
                    let tx = conn.transaction().map_err(internal)?;
                    let changed = tx
                        .execute(
                            &format!(
                                "UPDATE connections SET status = 'reauth_required', \
                                 token_key_id = NULL, token_nonce = NULL, token_ciphertext = NULL, \
                                 access_expires_at_ms = NULL, access_refresh_at_ms = NULL, \
                                 token_version = token_version + 1, last_error = ?4, \
                                 updated_at_ms = ?5, {release} {held}"
                            ),
                            params![user.as_str(), provider.as_str(), owner, error, now],
                        )
                        .map_err(internal)?;
                    if changed == 1 {
                        super::outbox::append(
                            &tx,
                            [Event::connection_changed(
                                &user,
                                provider,
                                ConnectionStatus::ReauthRequired,
                            )],
                        )?;
                    }
                    tx.commit().map_err(internal)?;
                    Ok(changed)
                }
                RefreshOutcome::Failed { error } => conn.execute(
                    &format!(
                        "UPDATE connections SET last_error = ?4, updated_at_ms = ?5, {release} {held}"
                    ),
                    params![user.as_str(), provider.as_str(), owner, error, now],
                ),
                RefreshOutcome::Rewrapped { tokens } => conn.execute(
                    &format!(
                        "UPDATE connections SET token_key_id = ?4, token_nonce = ?5, \
                         token_ciphertext = ?6, {release} {held} AND status = 'connected'"
                    ),
                    params![user.as_str(), provider.as_str(), owner, tokens.key_id, tokens.nonce, tokens.ciphertext],
                ),
                RefreshOutcome::Released => conn.execute(
                    &format!("UPDATE connections SET {release} {held}"),
                    params![user.as_str(), provider.as_str(), owner],
                ),
            }
            .map_err(internal)?;
            Ok(changed == 1)
        })
        .await?;
        self.inner.outbox_written.notify_one();
        Ok(finished)
    }
}

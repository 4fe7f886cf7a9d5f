//! SQLite side of notification endpoints: rows of `notification_endpoints`;
//! the per-user cap is counted and written in one immediate transaction.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::connections::SealedTokens;
use crate::records::notifications::{
    join_events, split_events, EndpointId, EndpointWrite, NotificationEndpoint,
};
use crate::store::{NotificationStore, StoreError};

const COLUMNS: &str =
    "id, user_id, url, events, secret_key_id, secret_nonce, secret_ciphertext, created_at_ms";

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

type Raw = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    i64,
);

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn endpoint(raw: Raw) -> Result<NotificationEndpoint, StoreError> {
    let (id, user, url, events, key_id, nonce, ciphertext, created) = raw;
    Ok(NotificationEndpoint {
        id: EndpointId::parse(&id)
            .ok_or_else(|| StoreError::Corrupt(format!("endpoint id {id:?}")))?,
        user_id: UserId::parse(&user)
            .map_err(|e| StoreError::Corrupt(format!("endpoint user id: {e}")))?,
        url,
        events: split_events(&events)
            .ok_or_else(|| StoreError::Corrupt(format!("endpoint events {events:?}")))?,
        secret: SealedTokens {
            key_id,
            nonce,
            ciphertext,
        },
        created_at: time(created)?,
    })
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn put_notification_endpoint(
        &self,
        e: NotificationEndpoint,
        max_per_user: usize,
    ) -> Result<EndpointWrite, StoreError> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let held: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM notification_endpoints WHERE user_id = ?1",
                    [e.user_id.as_str()],
                    |r| r.get(0),
                )
                .map_err(internal)?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= max_per_user {
                return Ok(EndpointWrite::LimitReached);
            }
            tx.execute(
                &format!(
                    "INSERT INTO notification_endpoints ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    e.id.to_string(),
                    e.user_id.as_str(),
                    e.url,
                    join_events(&e.events),
                    e.secret.key_id,
                    e.secret.nonce,
                    e.secret.ciphertext,
                    e.created_at.timestamp_millis(),
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(EndpointWrite::Stored)
        })
        .await
    }

    async fn list_notification_endpoints(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationEndpoint>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM notification_endpoints WHERE user_id = ?1 \
                     ORDER BY created_at_ms, id"
                ))
                .map_err(internal)?;
            let rows = stmt.query_map([user.as_str()], raw).map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(endpoint(row.map_err(internal)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<Option<NotificationEndpoint>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM notification_endpoints WHERE id = ?1 AND user_id = ?2"
                ),
                params![id.to_string(), user.as_str()],
                raw,
            )
            .optional()
            .map_err(internal)?
            .map(endpoint)
            .transpose()
        })
        .await
    }

    async fn delete_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<bool, StoreError> {
        let user = user.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM notification_endpoints WHERE id = ?1 AND user_id = ?2",
                    params![id.to_string(), user.as_str()],
                )
                .map_err(internal)?;
            Ok(n == 1)
        })
        .await
    }
}

//! The SQLite outbox: events appended inside the writer's transactions, claimed
//! and deleted by the relay.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::{internal, SqliteStore};
use crate::records::events::{Event, Message};
use crate::store::OutboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

/// Appends events inside the caller's transaction; returns how many.
pub(super) fn append(
    conn: &Connection,
    events: impl IntoIterator<Item = Event>,
) -> Result<usize, StoreError> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO outbox (event_id, routing_key, payload, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(internal)?;
    let mut written = 0;
    for event in events {
        let m = event.to_message();
        insert
            .execute(params![
                m.id.to_string(),
                m.routing_key,
                m.payload,
                m.created_at.timestamp_millis()
            ])
            .map_err(internal)?;
        written += 1;
    }
    Ok(written)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.inner.outbox_written
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let mut claim = conn
                .prepare_cached(
                    "UPDATE outbox SET claimed_by = ?1, claimed_until_ms = ?2 WHERE seq IN \
                     (SELECT seq FROM outbox WHERE claimed_until_ms IS NULL \
                      OR claimed_until_ms < ?3 OR claimed_by = ?1 ORDER BY seq LIMIT ?4) \
                     RETURNING seq, event_id, routing_key, payload, created_at_ms",
                )
                .map_err(internal)?;
            let mut rows = claim
                .query_map(
                    params![
                        owner,
                        until.timestamp_millis(),
                        now.timestamp_millis(),
                        limit as i64
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .map_err(internal)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?;
            // RETURNING gives no order guarantee; commit order is the contract.
            rows.sort_by_key(|r| r.0);
            rows.into_iter()
                .map(|(_, id, routing_key, payload, created)| {
                    Ok(Message::stored(
                        Uuid::parse_str(&id)
                            .map_err(|e| StoreError::Corrupt(format!("outbox event id: {e}")))?,
                        routing_key,
                        payload,
                        Utc.timestamp_millis_opt(created)
                            .single()
                            .ok_or_else(|| StoreError::Corrupt("outbox time".into()))?,
                    ))
                })
                .collect()
        })
        .await
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let mut deleted = 0;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM outbox WHERE event_id = ?1")
                    .map_err(internal)?;
                for id in &ids {
                    deleted += delete.execute([id.to_string()]).map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)?;
            Ok(deleted)
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(internal)
        })
        .await
    }
}

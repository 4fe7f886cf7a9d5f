//! The PostgreSQL outbox: events appended inside the transactions of the
//! changes they describe, claimed by relays (several instances may run one
//! each) and deleted once published.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgBindIterExt;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{col, count, db_error, int, ms, PostgresStore};
use crate::records::events::{Event, Message};
use crate::store::OutboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

/// Appends events inside the caller's transaction, in one statement; returns
/// how many. The caller wakes the relay after its commit (`written`).
pub(super) async fn append(
    tx: &mut PgConnection,
    events: impl IntoIterator<Item = Event>,
) -> Result<usize, StoreError> {
    let messages: Vec<Message> = events.into_iter().map(|e| e.to_message()).collect();
    if messages.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "INSERT INTO outbox (event_id, routing_key, payload, created_at) \
         SELECT id, routing_key, payload::json, created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) \
              WITH ORDINALITY AS m(id, routing_key, payload, created_at, position) \
         ORDER BY position",
    )
    .bind(messages.iter().map(|m| m.id).bind_iter())
    .bind(messages.iter().map(|m| m.routing_key.as_str()).bind_iter())
    .bind(messages.iter().map(|m| m.payload.as_str()).bind_iter())
    .bind(messages.iter().map(|m| ms(m.created_at)).bind_iter())
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(messages.len())
}

#[async_trait]
impl OutboxStore for PostgresStore {
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
        // Rows another relay is claiming right now are skipped, not waited for.
        let rows = sqlx::query(
            "WITH picked AS ( \
                 SELECT seq FROM outbox \
                 WHERE claimed_until IS NULL OR claimed_until < $3 OR claimed_by = $1 \
                 ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox o SET claimed_by = $1, claimed_until = $2 FROM picked \
             WHERE o.seq = picked.seq \
             RETURNING o.seq, o.event_id, o.routing_key, o.payload::text, o.created_at",
        )
        .bind(owner)
        .bind(ms(until))
        .bind(ms(now))
        .bind(int(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let seq: i64 = col(row, 0)?;
                let message =
                    Message::stored(col(row, 1)?, col(row, 2)?, col(row, 3)?, col(row, 4)?);
                Ok((seq, message))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING gives no order; oldest first is the contract.
        claimed.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, m)| m).collect())
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        let deleted = sqlx::query("DELETE FROM outbox WHERE event_id = ANY($1)")
            .bind(&ids)
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(self.pool())
            .await
            .map_err(db_error)?;
        count(n, "outbox count")
    }
}

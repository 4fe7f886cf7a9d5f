//! SQLite side of the webhook inbox: deliveries stored before the 202, claimed
//! by a processor under a lapsing claim, and finished with their outcome.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};
use uuid::Uuid;

use super::connections::time;
use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::inbox::{Accepted, Delivery, DeliveryEnd, DeliveryStatus, NewDelivery};
use crate::store::InboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

const COLUMNS: &str = "id, user_id, kind, body, status, attempts, last_error, outcome, \
     received_at_ms, processed_at_ms";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("webhook delivery {what}: {e}"))
}

fn read_delivery(row: &Row<'_>) -> rusqlite::Result<Result<Delivery, StoreError>> {
    let id: String = row.get(0)?;
    let user: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let body: Option<Vec<u8>> = row.get(3)?;
    let status: String = row.get(4)?;
    let attempts: i64 = row.get(5)?;
    let last_error: Option<String> = row.get(6)?;
    let outcome: Option<String> = row.get(7)?;
    let received: i64 = row.get(8)?;
    let processed: Option<i64> = row.get(9)?;
    Ok((|| {
        Ok(Delivery {
            id: Uuid::parse_str(&id).map_err(|e| corrupt("id", e))?,
            user_id: UserId::parse(&user).map_err(|e| corrupt("user id", e))?,
            kind,
            body,
            status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
            last_error,
            outcome,
            received_at: time(Some(received))?.unwrap_or_default(),
            processed_at: time(processed)?,
        })
    })())
}

fn delivery_by_id(conn: &rusqlite::Connection, id: &str) -> Result<Option<Delivery>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_inbox WHERE id = ?1"
    ))
    .map_err(internal)?
    .query_row([id], read_delivery)
    .optional()
    .map_err(internal)?
    .transpose()
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn put_delivery(&self, d: NewDelivery) -> Result<Accepted, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let received = d.received_at.timestamp_millis();
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO webhook_inbox (id, user_id, signature_hash, kind, body, status, \
                     next_attempt_at_ms, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6) \
                     ON CONFLICT (signature_hash) DO NOTHING",
                )
                .map_err(internal)?
                .execute(params![
                    d.id.to_string(),
                    d.user_id.as_str(),
                    d.signature_hash,
                    d.kind,
                    d.body,
                    received
                ])
                .map_err(internal)?;
            let accepted = if inserted == 1 {
                Accepted::New(d.id)
            } else {
                let first: String = tx
                    .query_row(
                        "SELECT id FROM webhook_inbox WHERE signature_hash = ?1",
                        [&d.signature_hash],
                        |r| r.get(0),
                    )
                    .map_err(internal)?;
                Accepted::Replay(Uuid::parse_str(&first).map_err(|e| corrupt("id", e))?)
            };
            tx.commit().map_err(internal)?;
            Ok(accepted)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let now = now.timestamp_millis();
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id FROM webhook_inbox WHERE status IN ('queued', 'processing') \
                         AND next_attempt_at_ms <= ?1 \
                         AND (claimed_until_ms IS NULL OR claimed_until_ms <= ?1) \
                         ORDER BY received_at_ms, id LIMIT ?2",
                    )
                    .map_err(internal)?;
                let rows = stmt
                    .query_map(
                        params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
                        |r| r.get(0),
                    )
                    .map_err(internal)?;
                rows.collect::<Result<_, _>>().map_err(internal)?
            };
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                tx.prepare_cached(
                    "UPDATE webhook_inbox SET status = 'processing', claimed_by = ?2, \
                     claimed_until_ms = ?3, attempts = attempts + 1 WHERE id = ?1",
                )
                .map_err(internal)?
                .execute(params![id, owner, until.timestamp_millis()])
                .map_err(internal)?;
                claimed.extend(delivery_by_id(&tx, &id)?);
            }
            tx.commit().map_err(internal)?;
            Ok(claimed)
        })
        .await
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let mut recorded = 0;
            for (delivery, end) in ends {
                recorded += finish_one(&tx, &delivery.to_string(), &owner, end, now)?;
            }
            tx.commit().map_err(internal)?;
            Ok(recorded)
        })
        .await
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.read(move |conn| delivery_by_id(conn, &delivery.to_string()))
            .await
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM webhook_inbox WHERE status IN ('queued', 'processing')",
                )
                .map_err(internal)?
                .query_row([], |r| r.get(0))
                .map_err(internal)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

/// Records one delivery's end if `owner` holds its claim: 1, else 0.
fn finish_one(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    owner: &str,
    end: DeliveryEnd,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let now = now.timestamp_millis();
    let held = "WHERE id = ?1 AND claimed_by = ?2 AND status = 'processing'";
    let unclaim = "claimed_by = NULL, claimed_until_ms = NULL";
    let (sql, value, at) = match end {
        DeliveryEnd::Done { outcome } => (
            format!(
                "UPDATE webhook_inbox SET status = 'done', body = NULL, outcome = ?3, \
                 last_error = NULL, processed_at_ms = ?4, {unclaim} {held}"
            ),
            outcome,
            now,
        ),
        DeliveryEnd::Ignored { reason } => (
            format!(
                "UPDATE webhook_inbox SET status = 'ignored', body = NULL, outcome = ?3, \
                 processed_at_ms = ?4, {unclaim} {held}"
            ),
            reason,
            now,
        ),
        DeliveryEnd::Retry { not_before, error } => (
            format!(
                "UPDATE webhook_inbox SET status = 'queued', next_attempt_at_ms = ?4, \
                 last_error = ?3, {unclaim} {held}"
            ),
            error,
            not_before.timestamp_millis(),
        ),
        DeliveryEnd::Failed { error } => (
            format!(
                "UPDATE webhook_inbox SET status = 'failed', last_error = ?3, \
                 processed_at_ms = ?4, {unclaim} {held}"
            ),
            error,
            now,
        ),
    };
    tx.prepare_cached(&sql)
        .map_err(internal)?
        .execute(params![id, owner, value, at])
        .map_err(internal)
}

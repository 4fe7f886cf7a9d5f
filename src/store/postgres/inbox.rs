//! PostgreSQL side of the webhook inbox: deliveries stored before the 202,
//! claimed by processors (one per instance) under lapsing claims with
//! `FOR UPDATE SKIP LOCKED`, and finished with their outcome.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{col, count, db_error, int, ms, user_id, PostgresStore};
use crate::records::inbox::{Accepted, Delivery, DeliveryEnd, DeliveryStatus, NewDelivery};
use crate::store::InboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

macro_rules! columns {
    () => {
        "id, user_id, kind, body, status, attempts, last_error, outcome, received_at, \
         processed_at"
    };
}

fn read_delivery(row: &PgRow) -> Result<Delivery, StoreError> {
    let status: &str = col(row, 4)?;
    let attempts: i32 = col(row, 5)?;
    Ok(Delivery {
        id: col(row, 0)?,
        user_id: user_id(col(row, 1)?, "webhook delivery")?,
        kind: col(row, 2)?,
        body: col(row, 3)?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook delivery status {status:?}")))?,
        attempts: u32::try_from(attempts)
            .map_err(|e| StoreError::Corrupt(format!("webhook delivery attempts: {e}")))?,
        last_error: col(row, 6)?,
        outcome: col(row, 7)?,
        received_at: col(row, 8)?,
        processed_at: col(row, 9)?,
    })
}

#[async_trait]
impl InboxStore for PostgresStore {
    async fn put_delivery(&self, d: NewDelivery) -> Result<Accepted, StoreError> {
        let received = ms(d.received_at);
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_inbox (id, user_id, signature_hash, kind, body, status, \
             next_attempt_at, received_at) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6) \
             ON CONFLICT (signature_hash) DO NOTHING",
        )
        .bind(d.id)
        .bind(d.user_id.as_str())
        .bind(&d.signature_hash)
        .bind(&d.kind)
        .bind(&d.body)
        .bind(received)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        let accepted = if inserted == 1 {
            Accepted::New(d.id)
        } else {
            // The conflict waited for the first delivery's commit, so it is visible.
            let first: Uuid =
                sqlx::query_scalar("SELECT id FROM webhook_inbox WHERE signature_hash = $1")
                    .bind(&d.signature_hash)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
            Accepted::Replay(first)
        };
        tx.commit().await.map_err(db_error)?;
        Ok(accepted)
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(concat!(
            "WITH picked AS ( \
                 SELECT id FROM webhook_inbox \
                 WHERE status IN ('queued', 'processing') AND next_attempt_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until <= $1) \
                 ORDER BY received_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE webhook_inbox w SET status = 'processing', claimed_by = $2, \
                 claimed_until = $3, attempts = attempts + 1 \
             FROM picked WHERE w.id = picked.id RETURNING ",
            "w.id, w.user_id, w.kind, w.body, w.status, w.attempts, w.last_error, w.outcome, \
             w.received_at, w.processed_at"
        ))
        .bind(ms(now))
        .bind(owner)
        .bind(ms(until))
        .bind(int(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        let mut claimed = rows
            .iter()
            .map(read_delivery)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; oldest first is the contract.
        claimed.sort_unstable_by_key(|d| (d.received_at, d.id));
        Ok(claimed)
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let now = ms(now);
        let mut tx = self.begin().await?;
        let mut recorded = 0;
        for (id, end) in ends {
            // Every statement: `WHERE id = $1 AND claimed_by = $2 AND status =
            // 'processing'`, and drops the claim.
            let query = match end {
                DeliveryEnd::Done { outcome } => sqlx::query(
                    "UPDATE webhook_inbox SET status = 'done', body = NULL, outcome = $3, \
                     last_error = NULL, processed_at = $4, claimed_by = NULL, \
                     claimed_until = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
                )
                .bind(id)
                .bind(owner)
                .bind(outcome)
                .bind(now),
                DeliveryEnd::Ignored { reason } => sqlx::query(
                    "UPDATE webhook_inbox SET status = 'ignored', body = NULL, outcome = $3, \
                     processed_at = $4, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
                )
                .bind(id)
                .bind(owner)
                .bind(reason)
                .bind(now),
                DeliveryEnd::Retry { not_before, error } => sqlx::query(
                    "UPDATE webhook_inbox SET status = 'queued', next_attempt_at = $4, \
                     last_error = $3, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
                )
                .bind(id)
                .bind(owner)
                .bind(error)
                .bind(ms(not_before)),
                DeliveryEnd::Failed { error } => sqlx::query(
                    "UPDATE webhook_inbox SET status = 'failed', last_error = $3, \
                     processed_at = $4, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = $1 AND claimed_by = $2 AND status = 'processing'",
                )
                .bind(id)
                .bind(owner)
                .bind(error)
                .bind(now),
            };
            recorded += query
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
        Ok(usize::try_from(recorded).unwrap_or(usize::MAX))
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM webhook_inbox WHERE id = $1"
        ))
        .bind(delivery)
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_delivery)
        .transpose()
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_inbox WHERE status IN ('queued', 'processing')",
        )
        .fetch_one(self.pool())
        .await
        .map_err(db_error)?;
        count(n, "inbox backlog")
    }
}

//! PostgreSQL side of the general task queue: the `tasks` table, correct with
//! several instances on one database. A claim is a conditional UPDATE of one
//! candidate row in a short transaction of its own (two claimers of one task:
//! the second re-checks the row after the first commits and finds it taken),
//! and a task with a concurrency key is claimed only under a transaction-scoped
//! try-lock on that key, so two claimers of different tasks of one key cannot
//! both see the key free. No transaction waits on a lock while holding a row
//! lock, so claims, renewals and ends never deadlock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::{col, db_error, ms, user_id, PostgresStore};
use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd, TaskId, TaskStatus};
use crate::store::{StoreError, TaskStore};

/// Due tasks looked at per claim: when another instance wins one, the next is
/// tried.
const CLAIM_CANDIDATES: i64 = 16;

macro_rules! columns {
    () => {
        "id, kind, user_id, payload, priority, status, attempts, errors, idempotency_key, \
         concurrency_key, not_before, created_at, started_at, finished_at, updated_at, \
         lease_owner, lease_until"
    };
}

const BY_ID: &str = concat!("SELECT ", columns!(), " FROM tasks WHERE id = $1");

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("task {what}: {e}"))
}

fn read_task(row: &PgRow) -> Result<Task, StoreError> {
    let status: &str = col(row, 5)?;
    let attempts: i32 = col(row, 6)?;
    let Json(errors): Json<Vec<String>> = col(row, 7)?;
    let Json(payload): Json<serde_json::Value> = col(row, 3)?;
    let user: Option<&str> = col(row, 2)?;
    Ok(Task {
        id: TaskId(col(row, 0)?),
        kind: col(row, 1)?,
        user_id: user.map(|u| user_id(u, "task")).transpose()?,
        payload,
        priority: col(row, 4)?,
        status: TaskStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
        errors,
        idempotency_key: col(row, 8)?,
        concurrency_key: col(row, 9)?,
        not_before: col(row, 10)?,
        created_at: col(row, 11)?,
        started_at: col(row, 12)?,
        finished_at: col(row, 13)?,
        updated_at: col(row, 14)?,
        lease_owner: col(row, 15)?,
        lease_until: col(row, 16)?,
    })
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn create_task(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        // A concurrent create with the same key waits for the first to commit,
        // then inserts nothing; the SELECT after it sees the first one's row.
        let inserted = sqlx::query(concat!(
            "INSERT INTO tasks (id, kind, user_id, payload, priority, status, idempotency_key, \
             concurrency_key, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $9) \
             ON CONFLICT (kind, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING ",
            columns!()
        ))
        .bind(task.id.0)
        .bind(&task.kind)
        .bind(task.user_id.as_ref().map(|u| u.as_str()))
        .bind(Json(&task.payload))
        .bind(task.priority)
        .bind(&task.idempotency_key)
        .bind(&task.concurrency_key)
        .bind(ms(task.not_before))
        .bind(ms(task.created_at))
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db_error)?;
        if let Some(row) = inserted {
            return Ok(Enqueued::New(read_task(&row)?));
        }
        let existing = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM tasks WHERE kind = $1 AND idempotency_key = $2"
        ))
        .bind(&task.kind)
        .bind(&task.idempotency_key)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| {
            StoreError::Internal("task idempotency key conflict without a row".into())
        })?;
        Ok(Enqueued::Existing(read_task(&existing)?))
    }

    async fn claim_task(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let (now, until) = (ms(now), ms(until));
        let candidates: Vec<(uuid::Uuid, Option<String>)> = sqlx::query_as(
            "SELECT t.id, t.concurrency_key FROM tasks t \
             WHERE t.status IN ('queued', 'running') AND t.kind = ANY($2) \
             AND t.not_before <= $1 AND (t.status = 'queued' OR t.lease_until <= $1) \
             AND (t.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM tasks r \
                  WHERE r.status = 'running' AND r.concurrency_key = t.concurrency_key \
                  AND r.lease_until > $1)) \
             ORDER BY t.priority, t.created_at, t.id LIMIT $3",
        )
        .bind(now)
        .bind(kinds)
        .bind(CLAIM_CANDIDATES)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db_error)?;
        for (id, key) in candidates {
            let mut tx = self.begin().await?;
            if let Some(key) = &key {
                // Never waits: a key another claim is deciding on is skipped.
                let locked: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_xact_lock(\
                     hashtext('cgm-hub task concurrency in ' || current_schema()), hashtext($1))",
                )
                .bind(key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                if !locked {
                    tx.rollback().await.map_err(db_error)?;
                    continue;
                }
                // A new statement: sees every claim of this key committed
                // before the lock was taken.
                let busy: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'running' \
                     AND concurrency_key = $1 AND lease_until > $2 AND id <> $3)",
                )
                .bind(key)
                .bind(now)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                if busy {
                    tx.rollback().await.map_err(db_error)?;
                    continue;
                }
            }
            // Still claimable? Another instance may have claimed (or finished)
            // it since the SELECT; a concurrent claim of this row is waited for
            // and then re-checked here.
            let claimed = sqlx::query(concat!(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, \
                 started_at = COALESCE(started_at, $2), updated_at = $2, \
                 lease_owner = $3, lease_until = $4 \
                 WHERE id = $1 AND status IN ('queued', 'running') AND not_before <= $2 \
                 AND (status = 'queued' OR lease_until <= $2) RETURNING ",
                columns!()
            ))
            .bind(id)
            .bind(now)
            .bind(owner)
            .bind(until)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            match claimed {
                Some(row) => {
                    let task = read_task(&row)?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok(Some(task));
                }
                None => tx.rollback().await.map_err(db_error)?,
            }
        }
        Ok(None)
    }

    async fn renew_task_lease(
        &self,
        id: TaskId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE tasks SET lease_until = $3 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(owner)
        .bind(ms(until))
        .execute(&self.inner.pool)
        .await
        .map_err(db_error)?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn finish_task(
        &self,
        id: TaskId,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let now = ms(now);
        let (status, not_before, error) = match &end {
            TaskEnd::Succeeded => ("succeeded", None, None),
            TaskEnd::Failed { error } => ("failed", None, Some(error.as_str())),
            TaskEnd::Retry { not_before, error } => {
                ("queued", Some(ms(*not_before)), error.as_deref())
            }
        };
        let ended = sqlx::query(concat!(
            "UPDATE tasks SET status = $4, updated_at = $3, \
             finished_at = CASE WHEN $4 = 'queued' THEN finished_at ELSE $3 END, \
             not_before = COALESCE($5, not_before), \
             lease_owner = NULL, lease_until = NULL, \
             errors = CASE WHEN $6::text IS NULL THEN errors \
                      ELSE errors || jsonb_build_array($6::text) END \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING ",
            columns!()
        ))
        .bind(id.0)
        .bind(owner)
        .bind(now)
        .bind(status)
        .bind(not_before)
        .bind(error)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(db_error)?;
        ended.as_ref().map(read_task).transpose()
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        sqlx::query(BY_ID)
            .bind(id.0)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(read_task)
            .transpose()
    }

    async fn task_backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError> {
        let rows: Vec<(String, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT kind, COUNT(*), MIN(not_before) FROM tasks \
             WHERE status IN ('queued', 'running') AND status = 'queued' \
             AND kind = ANY($2) AND not_before <= $1 GROUP BY kind",
        )
        .bind(ms(now))
        .bind(kinds)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(db_error)?;
        Ok(kinds
            .iter()
            .map(|kind| {
                let backlog = rows
                    .iter()
                    .find(|(k, _, _)| k == kind)
                    .map(|(_, n, oldest)| TaskBacklog {
                        due: u64::try_from(*n).unwrap_or(0),
                        oldest_due: *oldest,
                    })
                    .unwrap_or_default();
                (kind.clone(), backlog)
            })
            .collect())
    }
}

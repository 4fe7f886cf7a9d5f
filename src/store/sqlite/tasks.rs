//! SQLite side of the general task queue: the `tasks` table. Every write is one
//! transaction on the single writer, so "is this task (and its concurrency
//! key) free? take it" cannot interleave with another claim.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, OptionalExtension, Row};

use super::connections::time;
use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd, TaskId, TaskStatus};
use crate::store::{StoreError, TaskStore};

const COLUMNS: &str = "id, kind, user_id, payload, priority, status, attempts, errors, \
     idempotency_key, concurrency_key, not_before_ms, created_at_ms, started_at_ms, \
     finished_at_ms, updated_at_ms, lease_owner, lease_until_ms";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("task {what}: {e}"))
}

fn read_task(row: &Row<'_>) -> rusqlite::Result<Result<Task, StoreError>> {
    let id: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let user: Option<String> = row.get(2)?;
    let payload: String = row.get(3)?;
    let priority: i64 = row.get(4)?;
    let status: String = row.get(5)?;
    let attempts: i64 = row.get(6)?;
    let errors: String = row.get(7)?;
    let idempotency_key: Option<String> = row.get(8)?;
    let concurrency_key: Option<String> = row.get(9)?;
    let stamps: [Option<i64>; 5] = [
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
        row.get(13)?,
        row.get(14)?,
    ];
    let lease_owner: Option<String> = row.get(15)?;
    let lease_until: Option<i64> = row.get(16)?;
    Ok((|| {
        Ok(Task {
            id: TaskId::parse(&id).ok_or_else(|| corrupt("id", &id))?,
            kind,
            user_id: user
                .map(|u| UserId::parse(&u).map_err(|e| corrupt("user id", e)))
                .transpose()?,
            payload: serde_json::from_str(&payload).map_err(|e| corrupt("payload", e))?,
            priority: i16::try_from(priority).map_err(|e| corrupt("priority", e))?,
            status: TaskStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
            errors: serde_json::from_str(&errors).map_err(|e| corrupt("errors", e))?,
            idempotency_key,
            concurrency_key,
            not_before: time(stamps[0])?.unwrap_or_default(),
            created_at: time(stamps[1])?.unwrap_or_default(),
            started_at: time(stamps[2])?,
            finished_at: time(stamps[3])?,
            updated_at: time(stamps[4])?.unwrap_or_default(),
            lease_owner,
            lease_until: time(lease_until)?,
        })
    })())
}

fn select_task(
    conn: &rusqlite::Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Task>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE {filter}"))
        .map_err(internal)?
        .query_row(params, read_task)
        .optional()
        .map_err(internal)?
        .transpose()
}

/// `?2, ?3, ...` for `n` kinds after the first parameter.
fn kind_placeholders(n: usize) -> String {
    (0..n)
        .map(|i| format!("?{}", i + 2))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn create_task(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            if let Some(key) = &task.idempotency_key {
                if let Some(existing) = select_task(
                    &tx,
                    "kind = ?1 AND idempotency_key = ?2",
                    params![task.kind, key],
                )? {
                    return Ok(Enqueued::Existing(existing));
                }
            }
            let id = task.id.to_string();
            let payload = serde_json::to_string(&task.payload)
                .map_err(|e| StoreError::Internal(format!("task payload: {e}")))?;
            tx.prepare_cached(
                "INSERT INTO tasks (id, kind, user_id, payload, priority, status, \
                 idempotency_key, concurrency_key, not_before_ms, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?9)",
            )
            .map_err(internal)?
            .execute(params![
                id,
                task.kind,
                task.user_id.as_ref().map(UserId::as_str),
                payload,
                task.priority,
                task.idempotency_key,
                task.concurrency_key,
                task.not_before.timestamp_millis(),
                task.created_at.timestamp_millis(),
            ])
            .map_err(internal)?;
            let created = select_task(&tx, "id = ?1", [&id])?
                .ok_or_else(|| StoreError::Internal("inserted task not found".into()))?;
            tx.commit().map_err(internal)?;
            Ok(Enqueued::New(created))
        })
        .await
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
        let kinds = kinds.to_vec();
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let now = now.timestamp_millis();
            let sql = format!(
                "SELECT t.id FROM tasks t WHERE t.status IN ('queued', 'running') \
                 AND t.kind IN ({}) AND t.not_before_ms <= ?1 \
                 AND (t.status = 'queued' OR t.lease_until_ms <= ?1) \
                 AND (t.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM tasks r \
                      WHERE r.status = 'running' AND r.concurrency_key = t.concurrency_key \
                      AND r.lease_until_ms > ?1)) \
                 ORDER BY t.priority, t.created_at_ms, t.id LIMIT 1",
                kind_placeholders(kinds.len())
            );
            let params = std::iter::once(rusqlite::types::Value::from(now))
                .chain(kinds.into_iter().map(rusqlite::types::Value::from));
            let next: Option<String> = tx
                .prepare_cached(&sql)
                .map_err(internal)?
                .query_row(params_from_iter(params), |r| r.get(0))
                .optional()
                .map_err(internal)?;
            let Some(id) = next else {
                return Ok(None);
            };
            tx.prepare_cached(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, \
                 started_at_ms = COALESCE(started_at_ms, ?2), updated_at_ms = ?2, \
                 lease_owner = ?3, lease_until_ms = ?4 WHERE id = ?1",
            )
            .map_err(internal)?
            .execute(params![id, now, owner, until.timestamp_millis()])
            .map_err(internal)?;
            let task = select_task(&tx, "id = ?1", [&id])?;
            tx.commit().map_err(internal)?;
            Ok(task)
        })
        .await
    }

    async fn renew_task_lease(
        &self,
        id: TaskId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let renewed = conn
                .prepare_cached(
                    "UPDATE tasks SET lease_until_ms = ?3 \
                     WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
                )
                .map_err(internal)?
                .execute(params![id.to_string(), owner, until.timestamp_millis()])
                .map_err(internal)?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn finish_task(
        &self,
        id: TaskId,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let id = id.to_string();
            let now = now.timestamp_millis();
            let held = "WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'";
            let changed = match &end {
                TaskEnd::Succeeded => tx.execute(
                    &format!(
                        "UPDATE tasks SET status = 'succeeded', finished_at_ms = ?3, \
                         updated_at_ms = ?3, lease_owner = NULL, lease_until_ms = NULL {held}"
                    ),
                    params![id, owner, now],
                ),
                TaskEnd::Failed { error } => tx.execute(
                    &format!(
                        "UPDATE tasks SET status = 'failed', finished_at_ms = ?3, \
                         updated_at_ms = ?3, lease_owner = NULL, lease_until_ms = NULL, \
                         errors = json_insert(errors, '$[#]', ?4) {held}"
                    ),
                    params![id, owner, now, error],
                ),
                TaskEnd::Retry { not_before, error } => tx.execute(
                    &format!(
                        "UPDATE tasks SET status = 'queued', not_before_ms = ?4, \
                         updated_at_ms = ?3, lease_owner = NULL, lease_until_ms = NULL, \
                         errors = CASE WHEN ?5 IS NULL THEN errors \
                                  ELSE json_insert(errors, '$[#]', ?5) END {held}"
                    ),
                    params![id, owner, now, not_before.timestamp_millis(), error],
                ),
            }
            .map_err(internal)?;
            if changed == 0 {
                return Ok(None);
            }
            let ended = select_task(&tx, "id = ?1", [&id])?;
            tx.commit().map_err(internal)?;
            Ok(ended)
        })
        .await
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.read(move |conn| select_task(conn, "id = ?1", [id.to_string()]))
            .await
    }

    async fn task_backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError> {
        let kinds = kinds.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    // The first term lets SQLite use the partial index of open tasks.
                    "SELECT COUNT(*), MIN(not_before_ms) FROM tasks \
                     WHERE status IN ('queued', 'running') AND kind = ?2 \
                     AND status = 'queued' AND not_before_ms <= ?1",
                )
                .map_err(internal)?;
            let mut backlog = Vec::with_capacity(kinds.len());
            for kind in kinds {
                let (n, oldest): (i64, Option<i64>) = stmt
                    .query_row(params![now.timestamp_millis(), kind], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(internal)?;
                backlog.push((
                    kind,
                    TaskBacklog {
                        due: u64::try_from(n).unwrap_or(0),
                        oldest_due: time(oldest)?,
                    },
                ));
            }
            Ok(backlog)
        })
        .await
    }
}

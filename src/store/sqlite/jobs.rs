//! SQLite side of the sync engine: `sync_jobs`, the per-user `sync_leases`, and
//! the connection's high-water mark. Every method is one write transaction on
//! the single writer, so "is the lease free? take it" cannot interleave.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use uuid::Uuid;

use super::connections::{ms, note_sync, time};
use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::connections::Provider;
use crate::records::jobs::SCHEDULED_JOBS_KEPT;
use crate::records::jobs::{
    Checkpoint, Created, JobBacklog, JobCounts, JobEnd, JobStatus, NewJob, SyncJob, TimeRange,
    Trigger,
};
use crate::store::JobStore;
use crate::store::{Admission, StoreError};
use async_trait::async_trait;

/// Job `j`'s user holds no live lease at `?1`: a worker may claim it (claims
/// and the backlog's oldest claimable job ask the same).
macro_rules! lease_free {
    () => {
        "NOT EXISTS (SELECT 1 FROM sync_leases l WHERE l.user_id = j.user_id \
         AND l.provider = j.provider AND l.until_ms > ?1)"
    };
}

const COLUMNS: &str = "id, user_id, provider, trigger, status, requested_start_ms, \
     requested_end_ms, range_start_ms, range_end_ms, resume_from_ms, fetched, inserted, updated, \
     duplicates, rejected, attempts, errors, created_at_ms, started_at_ms, finished_at_ms, \
     updated_at_ms, request_hash";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("sync job {what}: {e}"))
}

fn range(start: Option<i64>, end: Option<i64>) -> Result<Option<TimeRange>, StoreError> {
    match (time(start)?, time(end)?) {
        (Some(start), Some(end)) => Ok(Some(TimeRange { start, end })),
        (None, None) => Ok(None),
        _ => Err(corrupt("range", "only one edge stored")),
    }
}

/// A row and its request hash (for idempotency checks).
fn read_job(row: &Row<'_>) -> rusqlite::Result<Result<(SyncJob, Option<String>), StoreError>> {
    let id: String = row.get(0)?;
    let user: String = row.get(1)?;
    let provider: String = row.get(2)?;
    let trigger: String = row.get(3)?;
    let status: String = row.get(4)?;
    let stamps: [Option<i64>; 5] = [
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ];
    let counts: [i64; 6] = [
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
        row.get(13)?,
        row.get(14)?,
        row.get(15)?,
    ];
    let errors: String = row.get(16)?;
    let created: i64 = row.get(17)?;
    let started: Option<i64> = row.get(18)?;
    let finished: Option<i64> = row.get(19)?;
    let updated: i64 = row.get(20)?;
    let request_hash: Option<String> = row.get(21)?;
    let count = |i: usize| u64::try_from(counts[i]).map_err(|e| corrupt("count", e));
    Ok((|| {
        let job = SyncJob {
            id: Uuid::parse_str(&id).map_err(|e| corrupt("id", e))?,
            user_id: UserId::parse(&user).map_err(|e| corrupt("user id", e))?,
            provider: Provider::parse(&provider).ok_or_else(|| corrupt("provider", &provider))?,
            trigger: Trigger::parse(&trigger).ok_or_else(|| corrupt("trigger", &trigger))?,
            status: JobStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            requested: range(stamps[0], stamps[1])?,
            resolved: range(stamps[2], stamps[3])?,
            resume_from: time(stamps[4])?,
            counts: JobCounts {
                fetched: count(0)?,
                inserted: count(1)?,
                updated: count(2)?,
                duplicates: count(3)?,
                rejected: count(4)?,
            },
            attempts: u32::try_from(counts[5]).map_err(|e| corrupt("attempts", e))?,
            errors: serde_json::from_str(&errors).map_err(|e| corrupt("errors", e))?,
            created_at: time(Some(created))?.unwrap_or_default(),
            started_at: time(started)?,
            finished_at: time(finished)?,
            updated_at: time(Some(updated))?.unwrap_or_default(),
        };
        Ok((job, request_hash))
    })())
}

fn select_job(
    conn: &rusqlite::Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> Result<Option<(SyncJob, Option<String>)>, StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM sync_jobs WHERE {filter}"))
        .map_err(internal)?
        .query_row(params, read_job)
        .optional()
        .map_err(internal)?
        .transpose()
}

fn job_by_id(conn: &rusqlite::Connection, id: &str) -> Result<Option<SyncJob>, StoreError> {
    Ok(select_job(conn, "id = ?1", [id])?.map(|(job, _)| job))
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Releases `job`'s lease if `owner` holds it; false when someone else does.
fn release(tx: &Transaction<'_>, job: &str, owner: &str) -> Result<bool, StoreError> {
    let released = tx
        .prepare_cached("DELETE FROM sync_leases WHERE job_id = ?1 AND owner = ?2")
        .map_err(internal)?
        .execute([job, owner])
        .map_err(internal)?;
    Ok(released == 1)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn admit_job(&self, job: NewJob, admission: Admission) -> Result<Created, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let user = job.user_id.as_str();
            if let Some(key) = &job.idempotency {
                if let Some((existing, hash)) = select_job(
                    &tx,
                    "user_id = ?1 AND idempotency_key = ?2",
                    params![user, key.key],
                )? {
                    return Ok(if hash.as_deref() == Some(key.request_hash.as_str()) {
                        Created::Existing(existing)
                    } else {
                        Created::KeyReused(existing)
                    });
                }
            }
            let now = job.created_at.timestamp_millis();
            match admission {
                Admission::Always => {}
                Admission::Poll(within) => {
                    let busy: Option<i64> = tx
                        .prepare_cached(
                            "SELECT 1 FROM sync_jobs WHERE user_id = ?1 AND provider = ?2 \
                             AND (status IN ('queued', 'running') \
                                  OR (trigger = ?3 AND created_at_ms > ?4)) LIMIT 1",
                        )
                        .map_err(internal)?
                        .query_row(
                            params![
                                user,
                                job.provider.as_str(),
                                job.trigger.as_str(),
                                now - within.num_milliseconds()
                            ],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(internal)?;
                    if busy.is_some() {
                        return Ok(Created::Coalesced);
                    }
                }
                Admission::Request { max_queued } => {
                    if job.idempotency.is_none() {
                        // The first term lets SQLite use the partial index of a
                        // user's open jobs; `IS` matches two incremental (NULL) ranges.
                        if let Some((waiting, _)) = select_job(
                            &tx,
                            "user_id = ?1 AND provider = ?2 AND status IN ('queued', 'running') \
                             AND status = 'queued' AND started_at_ms IS NULL AND trigger = ?3 \
                             AND requested_start_ms IS ?4 AND requested_end_ms IS ?5 \
                             ORDER BY created_at_ms LIMIT 1",
                            params![
                                user,
                                job.provider.as_str(),
                                job.trigger.as_str(),
                                ms(job.requested.map(|r| r.start)),
                                ms(job.requested.map(|r| r.end)),
                            ],
                        )? {
                            return Ok(Created::Queued(waiting));
                        }
                    }
                    let queued: i64 = tx
                        .prepare_cached(
                            "SELECT COUNT(*) FROM sync_jobs WHERE user_id = ?1 \
                             AND status IN ('queued', 'running') AND status = 'queued'",
                        )
                        .map_err(internal)?
                        .query_row([user], |r| r.get(0))
                        .map_err(internal)?;
                    if queued >= i64::from(max_queued) {
                        return Ok(Created::QueueFull { max_queued });
                    }
                }
            }
            let id = job.id.to_string();
            tx.prepare_cached(
                "INSERT INTO sync_jobs (id, user_id, provider, trigger, status, priority, \
                 requested_start_ms, requested_end_ms, idempotency_key, request_hash, \
                 not_before_ms, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)",
            )
            .map_err(internal)?
            .execute(params![
                id,
                user,
                job.provider.as_str(),
                job.trigger.as_str(),
                job.trigger.priority(),
                ms(job.requested.map(|r| r.start)),
                ms(job.requested.map(|r| r.end)),
                job.idempotency.as_ref().map(|k| k.key.as_str()),
                job.idempotency.as_ref().map(|k| k.request_hash.as_str()),
                now,
            ])
            .map_err(internal)?;
            let created = job_by_id(&tx, &id)?
                .ok_or_else(|| StoreError::Internal("inserted job not found".into()))?;
            tx.commit().map_err(internal)?;
            Ok(Created::New(created))
        })
        .await
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let now = now.timestamp_millis();
            let next: Option<(String, String, String)> = tx
                .prepare_cached(concat!(
                    "SELECT j.id, j.user_id, j.provider FROM sync_jobs j \
                         WHERE j.status IN ('queued', 'running') AND j.not_before_ms <= ?1 \
                         AND ",
                    lease_free!(),
                    " ORDER BY j.priority, j.created_at_ms LIMIT 1"
                ))
                .map_err(internal)?
                .query_row([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(internal)?;
            let Some((id, user, provider)) = next else {
                return Ok(None);
            };
            tx.prepare_cached(
                "INSERT INTO sync_leases (user_id, provider, owner, job_id, until_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, provider) DO UPDATE SET \
                 owner = excluded.owner, job_id = excluded.job_id, until_ms = excluded.until_ms",
            )
            .map_err(internal)?
            .execute(params![user, provider, owner, id, until.timestamp_millis()])
            .map_err(internal)?;
            tx.prepare_cached(
                "UPDATE sync_jobs SET status = 'running', attempts = attempts + 1, \
                 started_at_ms = COALESCE(started_at_ms, ?2), updated_at_ms = ?2 WHERE id = ?1",
            )
            .map_err(internal)?
            .execute(params![id, now])
            .map_err(internal)?;
            let job = job_by_id(&tx, &id)?;
            tx.commit().map_err(internal)?;
            Ok(job)
        })
        .await
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let id = job.to_string();
            let lease: Option<(String, String)> = tx
                .prepare_cached(
                    "UPDATE sync_leases SET until_ms = ?3 WHERE job_id = ?1 AND owner = ?2 \
                     RETURNING user_id, provider",
                )
                .map_err(internal)?
                .query_row(params![id, owner, until.timestamp_millis()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(internal)?;
            let Some((user, provider)) = lease else {
                return Ok(false);
            };
            let c = checkpoint.counts;
            tx.prepare_cached(
                "UPDATE sync_jobs SET range_start_ms = ?2, range_end_ms = ?3, resume_from_ms = ?4, \
                 fetched = ?5, inserted = ?6, updated = ?7, duplicates = ?8, rejected = ?9, \
                 updated_at_ms = ?10 WHERE id = ?1",
            )
            .map_err(internal)?
            .execute(params![
                id,
                checkpoint.resolved.start.timestamp_millis(),
                checkpoint.resolved.end.timestamp_millis(),
                checkpoint.resume_from.timestamp_millis(),
                count(c.fetched),
                count(c.inserted),
                count(c.updated),
                count(c.duplicates),
                count(c.rejected),
                Utc::now().timestamp_millis(),
            ])
            .map_err(internal)?;
            if let Some(newest) = checkpoint.newest {
                tx.prepare_cached(
                    "UPDATE connections SET sync_cursor_ms = MAX(COALESCE(sync_cursor_ms, ?3), ?3) \
                     WHERE user_id = ?1 AND provider = ?2",
                )
                .map_err(internal)?
                .execute(params![user, provider, newest.timestamp_millis()])
                .map_err(internal)?;
            }
            tx.commit().map_err(internal)?;
            Ok(true)
        })
        .await
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            let renewed = conn
                .prepare_cached(
                    "UPDATE sync_leases SET until_ms = ?3 WHERE job_id = ?1 AND owner = ?2",
                )
                .map_err(internal)?
                .execute(params![job.to_string(), owner, until.timestamp_millis()])
                .map_err(internal)?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let owner = owner.to_owned();
        let ended = self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let id = job.to_string();
            if !release(&tx, &id, &owner)? {
                return Ok(None);
            }
            let Some(current) = job_by_id(&tx, &id)? else {
                return Ok(None);
            };
            let user = current.user_id.as_str();
            let at = now;
            let now = now.timestamp_millis();
            match &end {
                JobEnd::Succeeded => {
                    tx.execute(
                        "UPDATE sync_jobs SET status = 'succeeded', finished_at_ms = ?2, \
                         updated_at_ms = ?2 WHERE id = ?1",
                        params![id, now],
                    )
                    .map_err(internal)?;
                }
                JobEnd::Failed { error } => {
                    tx.execute(
                        "UPDATE sync_jobs SET status = 'failed', finished_at_ms = ?2, \
                         updated_at_ms = ?2, errors = json_insert(errors, '$[#]', ?3) WHERE id = ?1",
                        params![id, now, error],
                    )
                    .map_err(internal)?;
                }
                JobEnd::Retry { not_before, error } => {
                    tx.execute(
                        "UPDATE sync_jobs SET status = 'queued', not_before_ms = ?2, \
                         updated_at_ms = ?3, \
                         errors = CASE WHEN ?4 IS NULL THEN errors \
                                  ELSE json_insert(errors, '$[#]', ?4) END WHERE id = ?1",
                        params![id, not_before.timestamp_millis(), now, error],
                    )
                    .map_err(internal)?;
                }
            }
            if let Some(note) = end.connection_note(at) {
                note_sync(&tx, &current.user_id, current.provider, &note)?;
            }
            let ended = job_by_id(&tx, &id)?;
            super::outbox::append(&tx, ended.iter().filter_map(crate::records::events::Event::sync_ended))?;
            if end.prunes_scheduled(current.trigger) {
                tx.prepare_cached(
                    "DELETE FROM sync_jobs WHERE user_id = ?1 AND trigger = 'scheduled' \
                     AND status IN ('succeeded', 'failed') AND id NOT IN \
                     (SELECT id FROM sync_jobs WHERE user_id = ?1 AND trigger = 'scheduled' \
                      ORDER BY created_at_ms DESC LIMIT ?2)",
                )
                .map_err(internal)?
                .execute(params![user, count(SCHEDULED_JOBS_KEPT as u64)])
                .map_err(internal)?;
            }
            tx.commit().map_err(internal)?;
            Ok(ended)
        })
        .await?;
        self.inner.outbox_written.notify_one();
        Ok(ended)
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        self.read(move |conn| job_by_id(conn, &job.to_string()))
            .await
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM sync_jobs WHERE user_id = ?1 \
                     ORDER BY created_at_ms DESC, id LIMIT ?2"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    params![user.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
                    read_job,
                )
                .map_err(internal)?;
            let mut jobs = Vec::new();
            for row in rows {
                jobs.push(row.map_err(internal)??.0);
            }
            Ok(jobs)
        })
        .await
    }

    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError> {
        self.read(move |conn| {
            let (n, oldest): (i64, Option<i64>) = conn
                .prepare_cached(
                    // The first term lets SQLite use the partial index of open jobs.
                    concat!(
                        "SELECT COUNT(*), MIN(j.not_before_ms) FILTER (WHERE ",
                        lease_free!(),
                        ") FROM sync_jobs j WHERE j.status IN ('queued', 'running') \
                         AND j.status = 'queued' AND j.not_before_ms <= ?1"
                    ),
                )
                .map_err(internal)?
                .query_row([now.timestamp_millis()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(internal)?;
            Ok(JobBacklog {
                due: u64::try_from(n).unwrap_or(0),
                oldest_due: time(oldest)?,
            })
        })
        .await
    }
}

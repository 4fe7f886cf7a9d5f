//! PostgreSQL side of the sync engine: `sync_jobs`, the per-user `sync_leases`,
//! and the connection's high-water mark, correct with several instances on
//! one database: a lease is taken by a conditional upsert that only one claimer
//! can win, and every transaction on a job takes the lease row before the job
//! row, so claims, checkpoints and ends never deadlock.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{advisory_lock, col, count, db_error, int, ms, opt_ms, user_id, PostgresStore};
use crate::domain::UserId;
use crate::records::connections::Provider;
use crate::records::events::Event;
use crate::records::jobs::SCHEDULED_JOBS_KEPT;
use crate::records::jobs::{
    Checkpoint, Created, JobBacklog, JobCounts, JobEnd, JobStatus, NewJob, SyncJob, TimeRange,
    Trigger,
};
use crate::store::JobStore;
use crate::store::{Admission, StoreError};
use async_trait::async_trait;

/// Runnable jobs looked at per claim: when another instance wins the lease of
/// one, the next is tried.
const CLAIM_CANDIDATES: i64 = 16;

/// Job `j`'s user holds no live lease at `$1`: a worker may claim it (claims
/// and the backlog's oldest claimable job ask the same).
macro_rules! lease_free {
    () => {
        "NOT EXISTS (SELECT 1 FROM sync_leases l WHERE l.user_id = j.user_id \
         AND l.provider = j.provider AND l.until > $1)"
    };
}

macro_rules! columns {
    () => {
        "id, user_id, provider, trigger, status, requested_start, requested_end, range_start, \
         range_end, resume_from, fetched, inserted, updated, duplicates, rejected, attempts, \
         errors, created_at, started_at, finished_at, updated_at, request_hash"
    };
}

const BY_ID: &str = concat!("SELECT ", columns!(), " FROM sync_jobs WHERE id = $1");

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("sync job {what}: {e}"))
}

fn range(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<Option<TimeRange>, StoreError> {
    match (start, end) {
        (Some(start), Some(end)) => Ok(Some(TimeRange { start, end })),
        (None, None) => Ok(None),
        _ => Err(corrupt("range", "only one edge stored")),
    }
}

/// A row and its request hash (for idempotency checks).
fn read_job(row: &PgRow) -> Result<(SyncJob, Option<String>), StoreError> {
    let provider: &str = col(row, 2)?;
    let trigger: &str = col(row, 3)?;
    let status: &str = col(row, 4)?;
    let attempts: i32 = col(row, 15)?;
    let Json(errors): Json<Vec<String>> = col(row, 16)?;
    let job = SyncJob {
        id: col(row, 0)?,
        user_id: user_id(col(row, 1)?, "sync job")?,
        provider: Provider::parse(provider).ok_or_else(|| corrupt("provider", provider))?,
        trigger: Trigger::parse(trigger).ok_or_else(|| corrupt("trigger", trigger))?,
        status: JobStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
        requested: range(col(row, 5)?, col(row, 6)?)?,
        resolved: range(col(row, 7)?, col(row, 8)?)?,
        resume_from: col(row, 9)?,
        counts: JobCounts {
            fetched: count(col(row, 10)?, "fetched")?,
            inserted: count(col(row, 11)?, "inserted")?,
            updated: count(col(row, 12)?, "updated")?,
            duplicates: count(col(row, 13)?, "duplicates")?,
            rejected: count(col(row, 14)?, "rejected")?,
        },
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
        errors,
        created_at: col(row, 17)?,
        started_at: col(row, 18)?,
        finished_at: col(row, 19)?,
        updated_at: col(row, 20)?,
    };
    Ok((job, col(row, 21)?))
}

async fn job_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<SyncJob>, StoreError> {
    sqlx::query(BY_ID)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?
        .map(|row| read_job(&row).map(|(job, _)| job))
        .transpose()
}

fn number(n: u64) -> i64 {
    int(n)
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn admit_job(&self, job: NewJob, admission: Admission) -> Result<Created, StoreError> {
        let user = job.user_id.as_str();
        let mut tx = self.begin().await?;
        // One create at a time per user, so that two instances scheduling the
        // same poll cannot both find nothing to coalesce with.
        advisory_lock(&mut tx, "cgm-hub job creation", user).await?;
        if let Some(key) = &job.idempotency {
            let existing = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM sync_jobs WHERE user_id = $1 AND idempotency_key = $2"
            ))
            .bind(user)
            .bind(&key.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            if let Some(row) = existing {
                let (existing, hash) = read_job(&row)?;
                return Ok(if hash.as_deref() == Some(key.request_hash.as_str()) {
                    Created::Existing(existing)
                } else {
                    Created::KeyReused(existing)
                });
            }
        }
        let now = ms(job.created_at);
        match admission {
            Admission::Always => {}
            Admission::Poll(within) => {
                let busy: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE user_id = $1 AND provider = $2 \
                     AND (status IN ('queued', 'running') \
                          OR (trigger = $3 AND created_at > $4)))",
                )
                .bind(user)
                .bind(job.provider.as_str())
                .bind(job.trigger.as_str())
                .bind(ms(now - within))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                if busy {
                    return Ok(Created::Coalesced);
                }
            }
            Admission::Request { max_queued } => {
                if job.idempotency.is_none() {
                    // The advisory lock above makes this look and the insert
                    // below one step for concurrent identical requests.
                    let waiting = sqlx::query(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM sync_jobs WHERE user_id = $1 AND provider = $2 \
                         AND status IN ('queued', 'running') AND status = 'queued' \
                         AND started_at IS NULL AND trigger = $3 \
                         AND requested_start IS NOT DISTINCT FROM $4 \
                         AND requested_end IS NOT DISTINCT FROM $5 \
                         ORDER BY created_at LIMIT 1"
                    ))
                    .bind(user)
                    .bind(job.provider.as_str())
                    .bind(job.trigger.as_str())
                    .bind(opt_ms(job.requested.map(|r| r.start)))
                    .bind(opt_ms(job.requested.map(|r| r.end)))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    if let Some(row) = waiting {
                        return Ok(Created::Queued(read_job(&row)?.0));
                    }
                }
                let queued: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sync_jobs WHERE user_id = $1 \
                     AND status IN ('queued', 'running') AND status = 'queued'",
                )
                .bind(user)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                if queued >= i64::from(max_queued) {
                    return Ok(Created::QueueFull { max_queued });
                }
            }
        }
        let created = sqlx::query(concat!(
            "INSERT INTO sync_jobs (id, user_id, provider, trigger, status, priority, \
             requested_start, requested_end, idempotency_key, request_hash, not_before, \
             created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $10, $10) RETURNING ",
            columns!()
        ))
        .bind(job.id)
        .bind(user)
        .bind(job.provider.as_str())
        .bind(job.trigger.as_str())
        .bind(job.trigger.priority() as i16)
        .bind(opt_ms(job.requested.map(|r| r.start)))
        .bind(opt_ms(job.requested.map(|r| r.end)))
        .bind(job.idempotency.as_ref().map(|k| k.key.as_str()))
        .bind(job.idempotency.as_ref().map(|k| k.request_hash.as_str()))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let (created, _) = read_job(&created)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Created::New(created))
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let (now, until) = (ms(now), ms(until));
        let mut tx = self.begin().await?;
        // Runnable jobs of users nobody holds a lease on, best first. No row is
        // locked here: each candidate is taken below in the order every other
        // transaction on a job takes its rows (the lease, then the job), so a claim
        // and a holder's checkpoint or finish never wait on each other. (Locking
        // job rows first deadlocked against a checkpoint whenever this statement's
        // snapshot predated the holder's claim.)
        let candidates: Vec<(Uuid, String, String)> = sqlx::query_as(concat!(
            "SELECT j.id, j.user_id, j.provider FROM sync_jobs j \
                 WHERE j.status IN ('queued', 'running') AND j.not_before <= $1 AND ",
            lease_free!(),
            " ORDER BY j.priority, j.created_at LIMIT $2"
        ))
        .bind(now)
        .bind(CLAIM_CANDIDATES)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        for (id, user, provider) in candidates {
            // A savepoint per candidate: one that turns out taken leaves no lock.
            let mut attempt = sqlx::Acquire::begin(&mut *tx).await.map_err(db_error)?;
            // Taken only if free or lapsed; a lease another instance holds (or
            // took since the SELECT) makes this affect no row.
            let leased = sqlx::query(
                "INSERT INTO sync_leases (user_id, provider, owner, job_id, until) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, provider) DO UPDATE \
                 SET owner = excluded.owner, job_id = excluded.job_id, until = excluded.until \
                 WHERE sync_leases.until <= $6",
            )
            .bind(&user)
            .bind(&provider)
            .bind(owner)
            .bind(id)
            .bind(until)
            .bind(now)
            .execute(&mut *attempt)
            .await
            .map_err(db_error)?
            .rows_affected();
            if leased == 0 {
                attempt.rollback().await.map_err(db_error)?;
                continue;
            }
            // Still runnable? It may have finished, or been claimed and finished,
            // since the SELECT.
            let job = sqlx::query(concat!(
                "UPDATE sync_jobs SET status = 'running', attempts = attempts + 1, \
                 started_at = COALESCE(started_at, $2), updated_at = $2 \
                 WHERE id = $1 AND status IN ('queued', 'running') AND not_before <= $2 \
                 RETURNING ",
                columns!()
            ))
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *attempt)
            .await
            .map_err(db_error)?;
            let Some(job) = job else {
                attempt.rollback().await.map_err(db_error)?;
                continue;
            };
            let (job, _) = read_job(&job)?;
            attempt.commit().await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            return Ok(Some(job));
        }
        tx.commit().await.map_err(db_error)?;
        Ok(None)
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let lease: Option<(String, String)> = sqlx::query_as(
            "UPDATE sync_leases SET until = $3 WHERE job_id = $1 AND owner = $2 \
             RETURNING user_id, provider",
        )
        .bind(job)
        .bind(owner)
        .bind(ms(until))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some((user, provider)) = lease else {
            return Ok(false);
        };
        let c = checkpoint.counts;
        sqlx::query(
            "UPDATE sync_jobs SET range_start = $2, range_end = $3, resume_from = $4, \
             fetched = $5, inserted = $6, updated = $7, duplicates = $8, rejected = $9, \
             updated_at = $10 WHERE id = $1",
        )
        .bind(job)
        .bind(ms(checkpoint.resolved.start))
        .bind(ms(checkpoint.resolved.end))
        .bind(ms(checkpoint.resume_from))
        .bind(number(c.fetched))
        .bind(number(c.inserted))
        .bind(number(c.updated))
        .bind(number(c.duplicates))
        .bind(number(c.rejected))
        .bind(ms(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(newest) = checkpoint.newest {
            // GREATEST ignores NULL: the first checkpoint sets the mark.
            sqlx::query(
                "UPDATE connections SET sync_cursor = GREATEST(sync_cursor, $3) \
                 WHERE user_id = $1 AND provider = $2",
            )
            .bind(&user)
            .bind(&provider)
            .bind(ms(newest))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let renewed =
            sqlx::query("UPDATE sync_leases SET until = $3 WHERE job_id = $1 AND owner = $2")
                .bind(job)
                .bind(owner)
                .bind(ms(until))
                .execute(self.pool())
                .await
                .map_err(db_error)?
                .rows_affected();
        Ok(renewed == 1)
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let now = ms(now);
        let mut tx = self.begin().await?;
        let released = sqlx::query("DELETE FROM sync_leases WHERE job_id = $1 AND owner = $2")
            .bind(job)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        if released != 1 {
            return Ok(None);
        }
        let Some(current) = job_by_id(&mut tx, job).await? else {
            return Ok(None);
        };
        let user = current.user_id.as_str();
        match &end {
            JobEnd::Succeeded => {
                sqlx::query(
                    "UPDATE sync_jobs SET status = 'succeeded', finished_at = $2, \
                     updated_at = $2 WHERE id = $1",
                )
                .bind(job)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            JobEnd::Failed { error } => {
                sqlx::query(
                    "UPDATE sync_jobs SET status = 'failed', finished_at = $2, updated_at = $2, \
                     errors = errors || to_jsonb($3::text) WHERE id = $1",
                )
                .bind(job)
                .bind(now)
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            JobEnd::Retry { not_before, error } => {
                sqlx::query(
                    "UPDATE sync_jobs SET status = 'queued', not_before = $2, updated_at = $3, \
                     errors = CASE WHEN $4::text IS NULL THEN errors \
                                   ELSE errors || to_jsonb($4::text) END \
                     WHERE id = $1",
                )
                .bind(job)
                .bind(ms(*not_before))
                .bind(now)
                .bind(error)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
        }
        if let Some(note) = end.connection_note(now) {
            super::connections::note_sync(&mut tx, &current.user_id, current.provider, &note)
                .await?;
        }
        let ended = job_by_id(&mut tx, job).await?;
        let events =
            super::outbox::append(&mut tx, ended.iter().filter_map(Event::sync_ended)).await?;
        if end.prunes_scheduled(current.trigger) {
            sqlx::query(
                "DELETE FROM sync_jobs WHERE user_id = $1 AND trigger = 'scheduled' \
                 AND status IN ('succeeded', 'failed') AND id NOT IN \
                 (SELECT id FROM sync_jobs WHERE user_id = $1 AND trigger = 'scheduled' \
                  ORDER BY created_at DESC LIMIT $2)",
            )
            .bind(user)
            .bind(super::int(SCHEDULED_JOBS_KEPT))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(ended)
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(db_error)?;
        job_by_id(&mut conn, job).await
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM sync_jobs WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(user.as_str())
        .bind(int(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| read_job(row).map(|(job, _)| job))
        .collect()
    }

    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError> {
        let (n, oldest_due): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            // The first term lets the planner use the partial index of open jobs.
            concat!(
                "SELECT COUNT(*), MIN(j.not_before) FILTER (WHERE ",
                lease_free!(),
                ") FROM sync_jobs j WHERE j.status IN ('queued', 'running') \
                 AND j.status = 'queued' AND j.not_before <= $1"
            ),
        )
        .bind(ms(now))
        .fetch_one(self.pool())
        .await
        .map_err(db_error)?;
        Ok(JobBacklog {
            due: count(n, "job backlog")?,
            oldest_due,
        })
    }
}

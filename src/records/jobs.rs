//! Sync jobs as stored and reported: every fetch from a source, whether the
//! scheduler, a user, a new connection or a webhook asked for it, is one job with
//! a status, counts and errors, so an operator can see what happened and a crash
//! can resume where it stopped. The policy every backend applies when a job
//! ends (what the connection notes, which jobs are kept) is decided here once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;
use crate::records::connections::{Provider, SyncNote};

/// Who asked for a sync. Lower `priority` runs first when workers are busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    Scheduled,
    Manual,
    Backfill,
    Webhook,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::Scheduled,
        Trigger::Manual,
        Trigger::Backfill,
        Trigger::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
            Trigger::Webhook => "webhook",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// Deliveries and people waiting first; a long backfill last, so it cannot
    /// hold up everyone's regular polls.
    pub fn priority(self) -> i64 {
        match self {
            Trigger::Webhook => 0,
            Trigger::Manual => 1,
            Trigger::Scheduled => 2,
            Trigger::Backfill => 3,
        }
    }
}

/// The contract's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// What a job did, per record; cumulative across resumptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobCounts {
    pub fetched: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl std::ops::AddAssign for JobCounts {
    fn add_assign(&mut self, other: Self) {
        self.fetched += other.fetched;
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// A half-open time range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Jobs waiting to run at some moment: queued and due, not yet claimed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobBacklog {
    pub due: u64,
    /// When the longest-waiting of those a worker could claim now (its user's lease
    /// free) became due; None when there are none. A job queued behind its own
    /// user's running sync is not lagging: that sync is fetching the user's data.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: Uuid,
    pub user_id: UserId,
    pub provider: Provider,
    pub trigger: Trigger,
    /// None: incremental (from the connection's high-water mark minus the overlap).
    pub requested: Option<TimeRange>,
    /// With `request_hash`: the same key returns the same job; the same key with
    /// another request is refused.
    pub idempotency: Option<Idempotency>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// A digest of what was asked (trigger and range).
    pub request_hash: String,
}

impl NewJob {
    pub fn new(
        user_id: UserId,
        provider: Provider,
        trigger: Trigger,
        requested: Option<TimeRange>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            user_id,
            provider,
            trigger,
            requested,
            idempotency: None,
            created_at: now,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncJob {
    pub id: Uuid,
    pub user_id: UserId,
    pub provider: Provider,
    pub trigger: Trigger,
    pub status: JobStatus,
    pub requested: Option<TimeRange>,
    /// Fixed on the first run; a resumed job fetches the same range.
    pub resolved: Option<TimeRange>,
    /// Everything in `resolved` before this is stored.
    pub resume_from: Option<DateTime<Utc>>,
    pub counts: JobCounts,
    pub attempts: u32,
    pub errors: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What `JobStore::create_job` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(SyncJob),
    /// The idempotency key was used before with the same request: that job.
    Existing(SyncJob),
    /// The idempotency key was used before with a different request.
    KeyReused(SyncJob),
    /// Scheduled polls only: the user already has a job queued or running, or
    /// was polled recently (possibly by another instance), so none was added.
    Coalesced,
    /// Requests only (`JobStore::create_requested_job`): a job asking for the same
    /// thing (user, provider, trigger and range) is still waiting to start, so
    /// that job is returned and none was added.
    Queued(SyncJob),
    /// Requests only: the user already has `max_queued` jobs queued, so none was
    /// added.
    QueueFull {
        max_queued: u32,
    },
}

/// Progress noted while a job runs; renews the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub resolved: TimeRange,
    pub resume_from: DateTime<Utc>,
    pub counts: JobCounts,
    /// Newest reading time stored so far (raises the connection's high-water mark).
    pub newest: Option<DateTime<Utc>>,
}

/// How a job run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Succeeded,
    /// Final: no more attempts. `connection_error` is noted on the connection.
    Failed {
        error: String,
    },
    /// Put back in the queue until `not_before` (a passing failure, or shutdown),
    /// keeping its progress; `error` (if any) is added to the job's errors.
    Retry {
        not_before: DateTime<Utc>,
        error: Option<String>,
    },
}

/// Finished scheduled jobs kept per user (the newest); older ones are pruned as
/// new ones finish, so the table does not grow by 96 rows per user per day.
/// Manual, backfill and webhook jobs are kept (idempotency keys refer to them).
pub const SCHEDULED_JOBS_KEPT: usize = 20;

impl JobEnd {
    /// Whether the job is over (no more attempts).
    pub fn is_final(&self) -> bool {
        !matches!(self, JobEnd::Retry { .. })
    }

    /// What a run ending this way at `now` notes on the job's connection (when
    /// there is one), in the transaction that ends it: success and a final
    /// failure are noted as a finished sync; a retry changes nothing.
    pub fn connection_note(&self, now: DateTime<Utc>) -> Option<SyncNote> {
        match self {
            JobEnd::Succeeded => Some(SyncNote::of(now, None)),
            JobEnd::Failed { error } => Some(SyncNote::of(now, Some(error.clone()))),
            JobEnd::Retry { .. } => None,
        }
    }

    /// Whether ending a job of `trigger` this way prunes the user's finished
    /// scheduled jobs to the newest `SCHEDULED_JOBS_KEPT`.
    pub fn prunes_scheduled(&self, trigger: Trigger) -> bool {
        trigger == Trigger::Scheduled && self.is_final()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_ends_note_the_connection_or_prune() {
        let now = Utc::now();
        let ok = JobEnd::Succeeded.connection_note(now).expect("note");
        assert_eq!((ok.last_sync_at, ok.last_error), (Some(now), None));
        let failed = JobEnd::Failed {
            error: "boom".into(),
        };
        let note = failed.connection_note(now).expect("note");
        assert_eq!(
            (note.last_sync_at, note.last_error.as_deref()),
            (None, Some("boom"))
        );
        let retry = JobEnd::Retry {
            not_before: now,
            error: None,
        };
        assert_eq!(retry.connection_note(now), None);
        assert!(failed.prunes_scheduled(Trigger::Scheduled));
        assert!(JobEnd::Succeeded.prunes_scheduled(Trigger::Scheduled));
        assert!(!retry.prunes_scheduled(Trigger::Scheduled));
        assert!(!JobEnd::Succeeded.prunes_scheduled(Trigger::Manual));
    }
}

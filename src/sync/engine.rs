//! Runs queued sync jobs as the `sync` kind of the general task runner
//! (`crate::tasks`): a bounded pool of workers claims jobs from the job tables
//! under a per-user lease (so two instances never sync one user at once), fetches
//! the job's range window by window, and checkpoints after each stored window,
//! so a job whose holder crashed is resumed by whoever claims it next, from where
//! it stopped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};

use super::source::{split_windows, Disposition, SourceAdapter, SourceError, Sources};
use crate::pipeline::{Pipeline, RecordResult, Tally};
use crate::records::connections::{ConnectionStatus, RefreshOutcome};
use crate::records::jobs::{
    Checkpoint, Created, JobCounts, JobEnd, NewJob, SyncJob, TimeRange, Trigger,
};
use crate::store::{ConnectionStore, JobStore, StoreError};
use crate::tasks::{
    Claimed, LeaseLost, RunContext, RunnerSettings, TaskBacklog, TaskEnd, TaskHandler, TaskQueue,
    TaskRunner,
};

/// How often an idle worker looks for jobs queued by another instance (jobs
/// queued in this process wake it at once).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often the backlog gauges are refreshed.
const BACKLOG_SAMPLE: Duration = Duration::from_secs(5);
/// The kind sync jobs run as under the task runner.
pub const SYNC_KIND: &str = "sync";

use crate::config::SyncSettings;

/// A finished run, as the scheduler hears of it (to back off after failures).
#[derive(Debug, Clone)]
pub struct Finished {
    pub user: crate::domain::UserId,
    pub trigger: Trigger,
    pub succeeded: bool,
}

pub struct SyncEngine {
    jobs: Arc<dyn JobStore>,
    connections: Arc<dyn ConnectionStore>,
    pipeline: Pipeline,
    /// The adapter of each provider whose jobs this engine runs.
    sources: Sources,
    settings: SyncSettings,
    /// This instance's name on leases.
    owner: String,
    wake: Arc<Notify>,
    finished: tokio::sync::broadcast::Sender<Finished>,
    /// Runs the jobs, as the `sync` kind of task.
    runner: Arc<TaskRunner<SyncJobQueue>>,
}

impl SyncEngine {
    pub fn new(
        jobs: Arc<dyn JobStore>,
        connections: Arc<dyn ConnectionStore>,
        pipeline: Pipeline,
        sources: Sources,
        settings: SyncSettings,
    ) -> Arc<Self> {
        let owner = format!("sync-{}", uuid::Uuid::new_v4());
        let wake = Arc::new(Notify::new());
        // The runner's sync kind calls back into the engine that owns the
        // runner: a weak reference, taken while the engine is being built.
        Arc::new_cyclic(|engine| {
            let runner = TaskRunner::with_wake(
                SyncJobQueue { jobs: jobs.clone() },
                RunnerSettings {
                    workers: settings.concurrency.max(1),
                    lease: settings.lease,
                    idle_poll: IDLE_POLL,
                    backlog_sample: BACKLOG_SAMPLE,
                },
                owner.clone(),
                wake.clone(),
            );
            runner.register(Arc::new(SyncKind {
                engine: engine.clone(),
            }));
            Self {
                jobs,
                connections,
                pipeline,
                sources,
                settings,
                owner,
                wake,
                finished: tokio::sync::broadcast::channel(1024).0,
                runner,
            }
        })
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    /// The connections whose jobs this engine runs (the scheduler polls them).
    pub fn connections(&self) -> &Arc<dyn ConnectionStore> {
        &self.connections
    }

    /// The sources this engine syncs (the scheduler polls their connections).
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Runs that ended (for the scheduler's backoff).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// Queues a job (see `Store::create_job`) and wakes a worker.
    pub async fn submit(
        &self,
        job: NewJob,
        coalesce_within: Option<chrono::Duration>,
    ) -> Result<Created, StoreError> {
        let trigger = job.trigger;
        let created = self.jobs.create_job(job, coalesce_within).await?;
        if matches!(created, Created::New(_)) {
            metrics::counter!("sync_jobs_queued_total", "trigger" => trigger.as_str()).increment(1);
            self.wake.notify_one();
        }
        Ok(created)
    }

    /// Queues a job someone asked for (see `Store::create_requested_job`): the
    /// same request still waiting is that job, and the user's queue is capped at
    /// `max_queued_per_user`.
    pub async fn submit_requested(&self, job: NewJob) -> Result<Created, StoreError> {
        let trigger = job.trigger;
        let created = self
            .jobs
            .create_requested_job(job, self.settings.max_queued_per_user)
            .await?;
        match &created {
            Created::New(_) => {
                metrics::counter!("sync_jobs_queued_total", "trigger" => trigger.as_str())
                    .increment(1);
                self.wake.notify_one();
            }
            Created::Queued(_) => {
                metrics::counter!("sync_jobs_coalesced_total", "trigger" => trigger.as_str())
                    .increment(1);
            }
            Created::QueueFull { .. } => {
                metrics::counter!("sync_jobs_refused_total", "trigger" => trigger.as_str())
                    .increment(1);
            }
            _ => {}
        }
        Ok(created)
    }

    /// Starts the workers and the backlog sampler; they stop claiming when `stop`
    /// fires. `shutdown` then waits for runs in flight.
    pub fn start(&self, stop: watch::Receiver<bool>) {
        self.runner.start(stop);
    }

    /// Waits up to `grace` for runs in flight. A run that cannot finish in time
    /// is put back in the queue with its last checkpoint (or, failing that, its
    /// lease lapses) and the job is resumed after the restart.
    pub async fn shutdown(&self, grace: Duration) {
        self.runner.shutdown(grace).await;
    }

    /// One run: resolve the range (first run only), then fetch window by window
    /// from the resume point, checkpointing after each.
    async fn run(&self, job: &SyncJob) -> Result<(), RunError> {
        let user = &job.user_id;
        let provider = job.provider;
        let source = self
            .sources
            .get(provider)
            .ok_or_else(|| RunError::Final(format!("no source is registered for {provider}")))?;
        let connection = self
            .connections
            .get_connection(user, provider)
            .await?
            .filter(|c| c.status == ConnectionStatus::Connected)
            .ok_or_else(|| {
                RunError::Final(format!(
                    "the user has no working {} connection",
                    super::provider::provider_name(provider)
                ))
            })?;
        match self
            .fetch_job(job, source.as_ref(), connection.sync_cursor)
            .await
        {
            Ok(()) => Ok(()),
            Err(Stop::Run(e)) => Err(e),
            // The job fails like any final error; the connection says why.
            Err(Stop::Reauth(error)) => {
                self.require_reauth(job, connection.token_version, &error)
                    .await;
                Err(RunError::Final(error))
            }
        }
    }

    async fn fetch_job(
        &self,
        job: &SyncJob,
        source: &dyn SourceAdapter,
        cursor: Option<DateTime<Utc>>,
    ) -> Result<(), Stop> {
        let user = &job.user_id;
        let (resolved, mut resume) = match (job.resolved, job.resume_from) {
            (Some(resolved), Some(resume)) => (resolved, resume),
            _ => {
                let Some(resolved) = self.resolve(job, source, cursor).await? else {
                    return Ok(());
                };
                (resolved, resolved.start)
            }
        };
        let mut counts = job.counts;
        // The first checkpoint fixes the resolved range before any fetch.
        self.checkpoint(job, resolved, resume, counts, None).await?;
        for window in split_windows(resume, resolved.end, source.max_window()) {
            let fetched_at = Instant::now();
            let records = source.fetch(user, window).await?;
            let fetched = records.len() as u64;
            let results = self.pipeline.ingest(records).await?;
            let newest = results
                .iter()
                .filter_map(|r| match r {
                    RecordResult::Stored(at, _) => Some(at.as_datetime()),
                    RecordResult::Rejected(_) => None,
                })
                .max();
            let got = Tally::of(&results).counts(fetched);
            counts += got;
            resume = window.end;
            self.checkpoint(job, resolved, resume, counts, newest)
                .await?;
            tracing::debug!(
                job_id = %job.id,
                user_id = %user,
                window_start = %window.start,
                window_end = %window.end,
                fetched = got.fetched,
                elapsed_ms = fetched_at.elapsed().as_millis() as u64,
                "sync window stored"
            );
        }
        Ok(())
    }

    /// The provider no longer accepts the user's authorization: the connection
    /// becomes `reauth_required` (tokens dropped, polling stops) unless the
    /// source marked it already or the user reconnected meanwhile (the tokens
    /// are no longer those of `seen_version`). Taken under the refresh lease,
    /// so it cannot overwrite a refresh or a reconnect.
    async fn require_reauth(&self, job: &SyncJob, seen_version: i64, error: &str) {
        let now = Utc::now();
        let marked = async {
            let held = self
                .connections
                .try_refresh_lease(
                    &job.user_id,
                    job.provider,
                    &self.owner,
                    now,
                    now + self.settings.lease,
                )
                .await?;
            let Some(held) = held else {
                return Ok(false);
            };
            let outcome = if held.token_version == seen_version {
                RefreshOutcome::Revoked {
                    error: error.to_owned(),
                }
            } else {
                RefreshOutcome::Released
            };
            let revoked = matches!(outcome, RefreshOutcome::Revoked { .. });
            let written = self
                .connections
                .finish_refresh(&job.user_id, job.provider, &self.owner, outcome, now)
                .await?;
            Ok::<_, StoreError>(written && revoked)
        }
        .await;
        match marked {
            Ok(true) => {
                tracing::warn!(user_id = %job.user_id, provider = %job.provider, "connection needs re-authorization; polling stops for this user")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(user_id = %job.user_id, error = %e, "cannot mark the connection reauth_required")
            }
        }
    }

    async fn checkpoint(
        &self,
        job: &SyncJob,
        resolved: TimeRange,
        resume_from: DateTime<Utc>,
        counts: JobCounts,
        newest: Option<DateTime<Utc>>,
    ) -> Result<(), RunError> {
        let held = self
            .jobs
            .checkpoint_job(
                job.id,
                &self.owner,
                Checkpoint {
                    resolved,
                    resume_from,
                    counts,
                    newest,
                },
                Utc::now() + self.settings.lease,
            )
            .await?;
        if held {
            Ok(())
        } else {
            Err(RunError::LeaseLost)
        }
    }

    /// The range a job fetches: the requested one, or for an incremental sync
    /// from the high-water mark minus the overlap (the backfill horizon without
    /// one) until now; clipped to what the source holds (Dexcom: `dataRange`).
    /// None when there is nothing to fetch.
    async fn resolve(
        &self,
        job: &SyncJob,
        source: &dyn SourceAdapter,
        cursor: Option<DateTime<Utc>>,
    ) -> Result<Option<TimeRange>, Stop> {
        let wanted = job.requested.unwrap_or_else(|| {
            incremental_range(
                cursor,
                Utc::now(),
                self.settings.overlap,
                self.settings.backfill_days,
            )
        });
        let held = source.data_range(&job.user_id).await?;
        Ok(held.and_then(|(first, last)| clip(wanted, first, last)))
    }
}

/// The window an incremental sync asks for: from `cursor - overlap` (or the
/// backfill horizon when nothing was synced yet) until `now`.
pub fn incremental_range(
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    overlap: Duration,
    backfill_days: u32,
) -> TimeRange {
    let horizon = now - chrono::Duration::days(i64::from(backfill_days));
    let start = match cursor {
        Some(cursor) => (cursor - overlap).max(horizon).min(now),
        None => horizon,
    };
    TimeRange { start, end: now }
}

/// `wanted` narrowed to the records the source holds (`first..=last`, record times).
pub fn clip(wanted: TimeRange, first: DateTime<Utc>, last: DateTime<Utc>) -> Option<TimeRange> {
    let start = wanted.start.max(first);
    // The latest record is inclusive; a half-open window must end after it.
    let end = wanted.end.min(last + chrono::Duration::seconds(1));
    (start < end).then_some(TimeRange { start, end })
}

enum RunError {
    /// Another holder has the user's lease now: it records the end.
    LeaseLost,
    /// Retrying will not help (malformed data, no connection, ...).
    Final(String),
    /// Worth another run later.
    Passing(String),
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Passing(e.to_string())
    }
}

/// Why fetching a job's windows stopped: as a run ends, or because the source
/// wants the user to reconnect (`run` marks the connection, then the job
/// fails like any final error).
enum Stop {
    Run(RunError),
    Reauth(String),
}

impl From<RunError> for Stop {
    fn from(e: RunError) -> Self {
        Stop::Run(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Run(e.into())
    }
}

impl From<SourceError> for Stop {
    fn from(e: SourceError) -> Self {
        let message = e.to_string();
        match e.disposition() {
            Disposition::Retry => Stop::Run(RunError::Passing(message)),
            Disposition::Final => Stop::Run(RunError::Final(message)),
            Disposition::Reauth => Stop::Reauth(message),
        }
    }
}

impl Claimed for SyncJob {
    fn task_id(&self) -> uuid::Uuid {
        self.id
    }

    fn kind(&self) -> &str {
        SYNC_KIND
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// Sync jobs as a task queue: claims, renewals and ends go to the job tables
/// and their per-user sync lease (one sync per user across instances).
pub struct SyncJobQueue {
    jobs: Arc<dyn JobStore>,
}

#[async_trait]
impl TaskQueue for SyncJobQueue {
    type Item = SyncJob;

    async fn claim(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        if !kinds.iter().any(|k| k == SYNC_KIND) {
            return Ok(None);
        }
        self.jobs.claim_job(owner, now, until).await
    }

    async fn renew(
        &self,
        job: &SyncJob,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.jobs.renew_job_lease(job.id, owner, until).await
    }

    async fn finish(
        &self,
        job: &SyncJob,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let end = match end {
            TaskEnd::Succeeded => JobEnd::Succeeded,
            TaskEnd::Failed { error } => JobEnd::Failed { error },
            TaskEnd::Retry { not_before, error } => JobEnd::Retry { not_before, error },
        };
        self.jobs.finish_job(job.id, owner, end, now).await
    }

    async fn backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError> {
        if !kinds.iter().any(|k| k == SYNC_KIND) {
            return Ok(Vec::new());
        }
        let backlog = self.jobs.job_backlog(now).await?;
        Ok(vec![(
            SYNC_KIND.to_owned(),
            TaskBacklog {
                due: backlog.due,
                oldest_due: backlog.oldest_due,
            },
        )])
    }
}

/// The sync kind: runs a claimed job through the engine (bounded by the
/// per-sync timeout), and keeps the sync metrics, logs and the scheduler's
/// notices of finished runs. Holds the engine weakly: the engine holds the
/// runner that holds this.
struct SyncKind {
    engine: Weak<SyncEngine>,
}

#[async_trait]
impl TaskHandler<SyncJob> for SyncKind {
    fn kind(&self) -> &str {
        SYNC_KIND
    }

    fn max_attempts(&self) -> u32 {
        self.engine
            .upgrade()
            .map_or(1, |engine| engine.settings.max_attempts)
    }

    fn timeout(&self) -> Option<Duration> {
        self.engine.upgrade().map(|engine| engine.settings.timeout)
    }

    fn timed_out(&self, after: Duration) -> String {
        format!("timed out after {} s; progress kept", after.as_secs())
    }

    async fn run(&self, job: &SyncJob, _run: &RunContext) -> Result<TaskEnd, LeaseLost> {
        // The engine is gone (its owner dropped it): leave the lease to lapse.
        let engine = self.engine.upgrade().ok_or(LeaseLost)?;
        match engine.run(job).await {
            Ok(()) => Ok(TaskEnd::Succeeded),
            Err(RunError::LeaseLost) => {
                tracing::warn!(job_id = %job.id, user_id = %job.user_id, "sync lease lost; another holder continues this job");
                Err(LeaseLost)
            }
            Err(RunError::Final(error)) => Ok(TaskEnd::Failed { error }),
            // The runner backs it off (retry_delay) or gives up after max_attempts.
            Err(RunError::Passing(error)) => Ok(TaskEnd::Retry {
                not_before: Utc::now(),
                error: Some(error),
            }),
        }
    }

    fn ending(&self, job: &SyncJob, end: &TaskEnd, elapsed: Duration) {
        let outcome = end.outcome();
        metrics::histogram!("sync_duration_seconds", "trigger" => job.trigger.as_str(), "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        metrics::counter!("sync_runs_total", "trigger" => job.trigger.as_str(), "outcome" => outcome)
            .increment(1);
    }

    async fn ended(&self, job: &SyncJob, end: &TaskEnd, ended: &SyncJob, elapsed: Duration) {
        let counts = ended.counts;
        tracing::info!(
            job_id = %job.id,
            user_id = %job.user_id,
            trigger = job.trigger.as_str(),
            outcome = end.outcome(),
            attempt = job.attempts,
            fetched = counts.fetched,
            inserted = counts.inserted,
            updated = counts.updated,
            duplicates = counts.duplicates,
            rejected = counts.rejected,
            elapsed_ms = elapsed.as_millis() as u64,
            error = end.error().unwrap_or(""),
            "sync job run ended"
        );
        if matches!(end, TaskEnd::Retry { .. }) {
            return;
        }
        // The store committed sync.completed / sync.failed to its outbox with
        // the end; a revoked connection announced reauth_required when it was
        // revoked.
        if let Some(engine) = self.engine.upgrade() {
            let _ = engine.finished.send(Finished {
                user: job.user_id.clone(),
                trigger: job.trigger,
                succeeded: matches!(end, TaskEnd::Succeeded),
            });
        }
    }

    fn backlog_sampled(&self, backlog: &TaskBacklog, now: DateTime<Utc>) {
        metrics::gauge!("sync_backlog_jobs").set(backlog.due as f64);
        let waited = backlog.oldest_due.map_or(0.0, |due| {
            (now - due).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("sync_backlog_oldest_seconds").set(waited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::retry_delay;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h)
    }

    #[test]
    fn incremental_syncs_reread_the_overlap_window() {
        let overlap = Duration::from_secs(3 * 3600);
        let r = incremental_range(Some(t(10)), t(12), overlap, 30);
        assert_eq!((r.start, r.end), (t(7), t(12)));
        // Never synced: the backfill horizon.
        let r = incremental_range(None, t(12), overlap, 30);
        assert_eq!(r.start, t(12) - chrono::Duration::days(30));
        // A mark older than the horizon is capped by it; one in the future by now.
        let r = incremental_range(Some(t(-2000)), t(12), overlap, 30);
        assert_eq!(r.start, t(12) - chrono::Duration::days(30));
        let r = incremental_range(Some(t(20)), t(12), overlap, 30);
        assert_eq!(r.start, t(12));
        // No overlap configured: from the mark itself.
        let r = incremental_range(Some(t(10)), t(12), Duration::ZERO, 30);
        assert_eq!(r.start, t(10));
    }

    #[test]
    fn ranges_are_clipped_to_what_the_source_holds() {
        let wanted = TimeRange {
            start: t(0),
            end: t(48),
        };
        let clipped = clip(wanted, t(10), t(20)).unwrap();
        assert_eq!(clipped.start, t(10));
        // The latest record is inclusive.
        assert_eq!(clipped.end, t(20) + chrono::Duration::seconds(1));
        assert_eq!(clip(wanted, t(50), t(60)), None, "nothing in the range");
        assert_eq!(clip(wanted, t(-10), t(100)), Some(wanted));
    }

    #[test]
    fn job_retries_back_off_to_fifteen_minutes() {
        let secs: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
    }
}

//! Runs queued sync jobs: a bounded pool of workers claims jobs from the store
//! under a per-user lease (so two instances never sync one user at once), fetches
//! the job's range window by window, and checkpoints after each stored window,
//! so a job whose holder crashed is resumed by whoever claims it next, from where
//! it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};
use tokio_util::task::TaskTracker;

use super::jobs::{Checkpoint, Created, JobCounts, JobEnd, NewJob, SyncJob, TimeRange, Trigger};
use super::source::{split_windows, Disposition, SourceAdapter, SourceError, Sources};
use crate::connections::{ConnectionStatus, RefreshOutcome};
use crate::pipeline::{Pipeline, RecordResult, Tally};
use crate::store::{Store, StoreError};

/// How often an idle worker looks for jobs queued by another instance (jobs
/// queued in this process wake it at once).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often the backlog gauges are refreshed.
const BACKLOG_SAMPLE: Duration = Duration::from_secs(5);

pub use crate::config::SyncSettings;

/// The delay before run `attempt + 1` of a job that failed for a passing
/// reason: 30 s, 1 min, 2 min, ... at most 15 min.
pub fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(5);
    Duration::from_secs(30 << doublings).min(Duration::from_secs(900))
}

/// Renews a running job's lease every third of its length; tells `lost` (and
/// stops) when another holder has it. Aborted when the run ends.
async fn heartbeat(
    store: Arc<dyn Store>,
    job: uuid::Uuid,
    owner: String,
    lease: Duration,
    lost: tokio::sync::oneshot::Sender<()>,
) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = Utc::now() + lease;
        match store.renew_job_lease(job, &owner, until).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = lost.send(());
                return;
            }
            Err(e) => tracing::warn!(job_id = %job, error = %e, "cannot renew sync lease"),
        }
    }
}

/// A finished run, as the scheduler hears of it (to back off after failures).
#[derive(Debug, Clone)]
pub struct Finished {
    pub user: crate::domain::UserId,
    pub trigger: Trigger,
    pub succeeded: bool,
}

pub struct SyncEngine {
    store: Arc<dyn Store>,
    pipeline: Pipeline,
    /// The adapter of each provider whose jobs this engine runs.
    sources: Sources,
    settings: SyncSettings,
    /// This instance's name on leases.
    owner: String,
    wake: Notify,
    finished: tokio::sync::broadcast::Sender<Finished>,
    workers: TaskTracker,
}

impl SyncEngine {
    pub fn new(pipeline: Pipeline, sources: Sources, settings: SyncSettings) -> Arc<Self> {
        Arc::new(Self {
            store: pipeline.store().clone(),
            pipeline,
            sources,
            settings,
            owner: format!("sync-{}", uuid::Uuid::new_v4()),
            wake: Notify::new(),
            finished: tokio::sync::broadcast::channel(1024).0,
            workers: TaskTracker::new(),
        })
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
        let created = self.store.create_job(job, coalesce_within).await?;
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
            .store
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
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        for _ in 0..self.settings.concurrency.max(1) {
            self.workers.spawn(self.clone().worker(stop.clone()));
        }
        self.workers.spawn(self.clone().sample_backlog(stop));
    }

    /// Waits up to `grace` for runs in flight. A run that cannot finish in time
    /// keeps its last checkpoint; its lease lapses and the job is resumed after
    /// the restart.
    pub async fn shutdown(&self, grace: Duration) {
        self.workers.close();
        if tokio::time::timeout(grace, self.workers.wait())
            .await
            .is_err()
        {
            tracing::warn!("sync jobs still running at shutdown; their leases will lapse");
        }
    }

    async fn worker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let claimed = {
                let now = Utc::now();
                self.store
                    .claim_job(&self.owner, now, now + self.settings.lease)
                    .await
            };
            match claimed {
                Ok(Some(job)) => self.run_claimed(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        changed = stop.changed() => if changed.is_err() { return },
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim sync jobs; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        changed = stop.changed() => if changed.is_err() { return },
                    }
                }
            }
        }
    }

    async fn sample_backlog(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let now = Utc::now();
            if let Ok(backlog) = self.store.job_backlog(now).await {
                metrics::gauge!("sync_backlog_jobs").set(backlog.due as f64);
                let waited = backlog.oldest_due.map_or(0.0, |due| {
                    (now - due).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics::gauge!("sync_backlog_oldest_seconds").set(waited);
            }
            tokio::select! {
                _ = tokio::time::sleep(BACKLOG_SAMPLE) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs a claimed job to its end: renews the lease meanwhile, bounds the run
    /// by the per-sync timeout, and records how it ended. (At shutdown the run
    /// goes on; `shutdown` bounds the wait, and a lapsed lease hands it on.)
    async fn run_claimed(&self, job: SyncJob) {
        let started = Instant::now();
        // The lease is renewed by a task of its own: awaiting a store call here,
        // beside the suspended run, could wait forever on the writer turn that
        // the run holds.
        let (lost_tx, lost) = tokio::sync::oneshot::channel();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            job.id,
            self.owner.clone(),
            self.settings.lease,
            lost_tx,
        ));
        let outcome = tokio::select! {
            result = self.run(&job) => Some(result),
            _ = tokio::time::sleep(self.settings.timeout) => None,
            Ok(()) = lost => Some(Err(RunError::LeaseLost)),
        };
        heartbeat.abort();
        let end = match outcome {
            Some(Ok(())) => JobEnd::Succeeded,
            Some(Err(RunError::LeaseLost)) => {
                tracing::warn!(job_id = %job.id, user_id = %job.user_id, "sync lease lost; another holder continues this job");
                return;
            }
            Some(Err(RunError::Final(error))) => JobEnd::Failed { error },
            Some(Err(RunError::Passing(error))) => self.retry_or_fail(&job, error),
            None => self.retry_or_fail(
                &job,
                format!(
                    "timed out after {} s; progress kept",
                    self.settings.timeout.as_secs()
                ),
            ),
        };
        self.finish(&job, end, started).await;
    }

    fn retry_or_fail(&self, job: &SyncJob, error: String) -> JobEnd {
        if job.attempts >= self.settings.max_attempts {
            JobEnd::Failed {
                error: format!("{error} (gave up after {} attempts)", job.attempts),
            }
        } else {
            let delay = retry_delay(job.attempts);
            JobEnd::Retry {
                not_before: Utc::now() + delay,
                error: Some(error),
            }
        }
    }

    async fn finish(&self, job: &SyncJob, end: JobEnd, started: Instant) {
        let elapsed = started.elapsed();
        let outcome = match &end {
            JobEnd::Succeeded => "succeeded",
            JobEnd::Failed { .. } => "failed",
            JobEnd::Retry { .. } => "retry",
        };
        metrics::histogram!("sync_duration_seconds", "trigger" => job.trigger.as_str(), "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        metrics::counter!("sync_runs_total", "trigger" => job.trigger.as_str(), "outcome" => outcome)
            .increment(1);
        let recorded = self
            .store
            .finish_job(job.id, &self.owner, end.clone(), Utc::now())
            .await;
        let counts = match recorded {
            Ok(Some(ended)) => ended.counts,
            Ok(None) => {
                tracing::warn!(job_id = %job.id, "sync lease lost before the end was recorded");
                return;
            }
            Err(e) => {
                // The lease lapses and the job is claimed again: nothing is lost,
                // the next run fetches the remaining range.
                tracing::error!(job_id = %job.id, error = %e, "cannot record the end of a sync job");
                return;
            }
        };
        let error = match &end {
            JobEnd::Failed { error } => Some(error.clone()),
            JobEnd::Retry { error, .. } => error.clone(),
            JobEnd::Succeeded => None,
        };
        tracing::info!(
            job_id = %job.id,
            user_id = %job.user_id,
            trigger = job.trigger.as_str(),
            outcome,
            attempt = job.attempts,
            fetched = counts.fetched,
            inserted = counts.inserted,
            updated = counts.updated,
            duplicates = counts.duplicates,
            rejected = counts.rejected,
            elapsed_ms = elapsed.as_millis() as u64,
            error = error.as_deref().unwrap_or(""),
            "sync job run ended"
        );
        if matches!(end, JobEnd::Retry { .. }) {
            return;
        }
        // The store committed sync.completed / sync.failed to its outbox with
        // the end; a revoked connection announced reauth_required when it was
        // revoked.
        let succeeded = matches!(end, JobEnd::Succeeded);
        let _ = self.finished.send(Finished {
            user: job.user_id.clone(),
            trigger: job.trigger,
            succeeded,
        });
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
            .store
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
            let got = JobCounts::of(fetched, Tally::of(&results));
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
                .store
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
                .store
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
            .store
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

#[cfg(test)]
mod tests {
    use super::*;
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

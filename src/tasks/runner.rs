//! The runner: N workers claim due tasks of the registered kinds from one
//! queue, each under a lease renewed on a heartbeat while its handler runs,
//! and record how the run ended: a passing failure is retried with backoff
//! until the kind's attempts run out, a run that outlives the grace period of
//! a shutdown is put back in the queue, and a runner that dies leaves leases
//! that lapse, so another runner resumes its tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::queue::{Claimed, StoreQueue, TaskQueue};
use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd};
use crate::store::StoreError;

/// The delay before run `attempt + 1` of a task that failed for a passing
/// reason: 30 s, 1 min, 2 min, ... at most 15 min.
pub fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(5);
    Duration::from_secs(30 << doublings).min(Duration::from_secs(900))
}

/// A handler found that another runner holds its task now (it records the
/// end): nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLost;

/// What a handler knows of the run it is in.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// This runner's name on leases.
    pub owner: String,
    /// How long a lease lasts (the heartbeat renews it every third).
    pub lease: Duration,
}

/// One kind of task: its name and how to run one.
#[async_trait]
pub trait TaskHandler<T: Claimed = Task>: Send + Sync + 'static {
    /// The kind this handler runs (`NewTask::kind`).
    fn kind(&self) -> &str;

    /// Runs of one task before a passing failure becomes final.
    fn max_attempts(&self) -> u32 {
        5
    }

    /// The least delay before run `attempt + 1` after a passing failure.
    fn retry_delay(&self, attempt: u32) -> Duration {
        retry_delay(attempt)
    }

    /// One run's limit; a run that reaches it is retried like a passing failure.
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// The error noted for a run that reached `timeout`.
    fn timed_out(&self, after: Duration) -> String {
        format!("timed out after {} s", after.as_secs())
    }

    /// Runs the task. `TaskEnd::Retry` with an error is a passing failure:
    /// the runner backs it off (`retry_delay`) or, once `max_attempts` runs
    /// have failed, ends it as failed.
    async fn run(&self, task: &T, run: &RunContext) -> Result<TaskEnd, LeaseLost>;

    /// Before the end is recorded (for what must be visible by the time the
    /// end is: counters a test or an operator reads after seeing the status).
    fn ending(&self, _task: &T, _end: &TaskEnd, _elapsed: Duration) {}

    /// After the end was recorded, with the task as it ended.
    async fn ended(&self, _task: &T, _end: &TaskEnd, _recorded: &T, _elapsed: Duration) {}

    /// The kind's backlog, as just sampled.
    fn backlog_sampled(&self, _backlog: &TaskBacklog, _now: DateTime<Utc>) {}
}

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Tasks run at once by this runner.
    pub workers: usize,
    /// How long a silent holder keeps a task (renewed every third of it).
    pub lease: Duration,
    /// How often an idle worker looks for tasks queued by another instance
    /// (tasks queued through this runner wake it at once).
    pub idle_poll: Duration,
    /// How often the backlog gauges are refreshed.
    pub backlog_sample: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            lease: Duration::from_secs(60),
            idle_poll: Duration::from_secs(1),
            backlog_sample: Duration::from_secs(5),
        }
    }
}

type Handlers<T> = BTreeMap<String, Arc<dyn TaskHandler<T>>>;

pub struct TaskRunner<Q: TaskQueue> {
    queue: Arc<Q>,
    settings: RunnerSettings,
    /// This runner's name on leases.
    owner: String,
    handlers: RwLock<Handlers<Q::Item>>,
    wake: Arc<Notify>,
    workers: TaskTracker,
    /// Fired when a shutdown's grace period is almost over: runs still going
    /// are put back in the queue.
    interrupt: CancellationToken,
    /// The spawned workers, for `kill`.
    spawned: Mutex<Vec<AbortHandle>>,
}

/// How the select over a run ended.
enum Ran {
    Done(Result<TaskEnd, LeaseLost>),
    TimedOut(Duration),
    Interrupted,
}

/// Aborts the heartbeat when the run is over, however it ends (a dropped
/// worker included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<Q: TaskQueue> TaskRunner<Q> {
    /// A runner named `owner` on leases (unique per instance: add a UUID).
    pub fn new(queue: Q, settings: RunnerSettings, owner: impl Into<String>) -> Arc<Self> {
        Self::with_wake(queue, settings, owner, Arc::new(Notify::new()))
    }

    /// As `new`, woken also by whoever else notifies `wake` (a component that
    /// queues tasks without going through the runner).
    pub fn with_wake(
        queue: Q,
        settings: RunnerSettings,
        owner: impl Into<String>,
        wake: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue: Arc::new(queue),
            settings,
            owner: owner.into(),
            handlers: RwLock::new(BTreeMap::new()),
            wake,
            workers: TaskTracker::new(),
            interrupt: CancellationToken::new(),
            spawned: Mutex::new(Vec::new()),
        })
    }

    /// Adds a kind (replacing a handler of the same kind); its tasks are
    /// claimed from the next claim on.
    pub fn register(&self, handler: Arc<dyn TaskHandler<Q::Item>>) {
        self.handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(handler.kind().to_owned(), handler);
        self.wake();
    }

    pub fn queue(&self) -> &Arc<Q> {
        &self.queue
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    /// The registered kinds, in name order.
    pub fn kinds(&self) -> Vec<String> {
        self.handlers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn handler(&self, kind: &str) -> Option<Arc<dyn TaskHandler<Q::Item>>> {
        self.handlers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .cloned()
    }

    /// Wakes an idle worker (a task was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the workers and the backlog sampler; they stop claiming when
    /// `stop` fires. `shutdown` then waits for runs in flight.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        let mut spawned = self.spawned.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..self.settings.workers.max(1) {
            let worker = self.workers.spawn(self.clone().worker(stop.clone()));
            spawned.push(worker.abort_handle());
        }
        let sampler = self.workers.spawn(self.clone().sample_backlog(stop));
        spawned.push(sampler.abort_handle());
    }

    /// Waits up to `grace` for runs in flight (after `stop` fired). Runs still
    /// going near its end are interrupted and put back in the queue, due at
    /// once; should even that not finish in time, their leases lapse and
    /// another runner resumes them.
    pub async fn shutdown(&self, grace: Duration) {
        self.workers.close();
        let put_back = (grace / 5).min(Duration::from_secs(2));
        if tokio::time::timeout(grace.saturating_sub(put_back), self.workers.wait())
            .await
            .is_ok()
        {
            return;
        }
        self.interrupt.cancel();
        if tokio::time::timeout(put_back, self.workers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                owner = %self.owner,
                "tasks still running at shutdown; their leases will lapse"
            );
        }
    }

    /// Stops every worker at once, as a crash would: nothing is recorded or
    /// put back, and the leases lapse (for tests of crash resumption).
    pub fn kill(&self) {
        self.workers.close();
        // Not `interrupt`: that would let a run put its task back.
        for worker in self
            .spawned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            worker.abort();
        }
    }

    fn stopping(&self, stop: &watch::Receiver<bool>) -> bool {
        *stop.borrow() || self.interrupt.is_cancelled()
    }

    async fn worker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if self.stopping(&stop) {
                return;
            }
            let kinds = self.kinds();
            let claimed = if kinds.is_empty() {
                Ok(None)
            } else {
                let now = Utc::now();
                self.queue
                    .claim(&kinds, &self.owner, now, now + self.settings.lease)
                    .await
            };
            let pause = match claimed {
                Ok(Some(task)) => {
                    self.run_claimed(task).await;
                    continue;
                }
                Ok(None) => true,
                Err(e) => {
                    tracing::error!(owner = %self.owner, error = %e, "cannot claim tasks; retrying");
                    false
                }
            };
            tokio::select! {
                _ = self.wake.notified(), if pause => {}
                _ = tokio::time::sleep(self.settings.idle_poll) => {}
                _ = self.interrupt.cancelled() => return,
                changed = stop.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn sample_backlog(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let kinds = self.kinds();
            let now = Utc::now();
            if !kinds.is_empty() {
                if let Ok(backlog) = self.queue.backlog(&kinds, now).await {
                    for (kind, b) in backlog {
                        let waited = b.oldest_due.map_or(0.0, |due| {
                            (now - due).num_milliseconds().max(0) as f64 / 1000.0
                        });
                        metrics::gauge!("task_backlog", "kind" => kind.clone()).set(b.due as f64);
                        metrics::gauge!("task_backlog_oldest_seconds", "kind" => kind.clone())
                            .set(waited);
                        if let Some(handler) = self.handler(&kind) {
                            handler.backlog_sampled(&b, now);
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.backlog_sample) => {}
                _ = stop.changed() => return,
                _ = self.interrupt.cancelled() => return,
            }
        }
    }

    /// Runs a claimed task to its end: renews the lease meanwhile, bounds the
    /// run by the kind's timeout, and records how it ended.
    async fn run_claimed(&self, task: Q::Item) {
        let started = Instant::now();
        let Some(handler) = self.handler(task.kind()) else {
            // Claimed for a kind that is no longer registered: back it goes.
            let end = TaskEnd::Retry {
                not_before: Utc::now() + self.settings.idle_poll,
                error: None,
            };
            if let Err(e) = self.queue.finish(&task, &self.owner, end, Utc::now()).await {
                tracing::warn!(task_id = %task.task_id(), error = %e, "cannot put back a task of an unknown kind");
            }
            return;
        };
        // The lease is renewed by a task of its own: awaiting a store call
        // here, beside the suspended run, could wait forever on a writer turn
        // that the run holds.
        let (lost_tx, lost) = tokio::sync::oneshot::channel();
        let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
            self.queue.clone(),
            task.clone(),
            self.owner.clone(),
            self.settings.lease,
            lost_tx,
        )));
        let context = RunContext {
            owner: self.owner.clone(),
            lease: self.settings.lease,
        };
        let timeout = handler.timeout();
        let limit = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let ran = tokio::select! {
            result = handler.run(&task, &context) => Ran::Done(result),
            _ = limit => Ran::TimedOut(timeout.unwrap_or_default()),
            Ok(()) = lost => Ran::Done(Err(LeaseLost)),
            _ = self.interrupt.cancelled() => Ran::Interrupted,
        };
        drop(heartbeat);
        let end = match ran {
            Ran::Done(Err(LeaseLost)) => {
                tracing::warn!(
                    kind = task.kind(),
                    task_id = %task.task_id(),
                    "task lease lost; another runner continues this task"
                );
                return;
            }
            Ran::Done(Ok(end)) => backed_off(handler.as_ref(), &task, end),
            Ran::TimedOut(after) => backed_off(
                handler.as_ref(),
                &task,
                TaskEnd::Retry {
                    not_before: Utc::now(),
                    error: Some(handler.timed_out(after)),
                },
            ),
            Ran::Interrupted => TaskEnd::Retry {
                not_before: Utc::now(),
                error: None,
            },
        };
        self.finish(handler.as_ref(), &task, end, started).await;
    }

    async fn finish(
        &self,
        handler: &dyn TaskHandler<Q::Item>,
        task: &Q::Item,
        end: TaskEnd,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        metrics::counter!(
            "task_runs_total",
            "kind" => task.kind().to_owned(),
            "outcome" => end.outcome()
        )
        .increment(1);
        handler.ending(task, &end, elapsed);
        match self
            .queue
            .finish(task, &self.owner, end.clone(), Utc::now())
            .await
        {
            Ok(Some(ended)) => handler.ended(task, &end, &ended, elapsed).await,
            Ok(None) => tracing::warn!(
                kind = task.kind(),
                task_id = %task.task_id(),
                "task lease lost before the end was recorded"
            ),
            // The lease lapses and the task is claimed again: nothing is lost.
            Err(e) => tracing::error!(
                kind = task.kind(),
                task_id = %task.task_id(),
                error = %e,
                "cannot record the end of a task"
            ),
        }
    }
}

impl TaskRunner<StoreQueue> {
    /// Queues a task in the general table and wakes a worker.
    pub async fn submit(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        let enqueued = self.queue.create(task).await?;
        if matches!(enqueued, Enqueued::New(_)) {
            self.wake();
        }
        Ok(enqueued)
    }
}

/// A passing failure backed off, or ended for good once the kind's attempts
/// are used up. Other ends (and a put-back without an error) pass unchanged.
fn backed_off<T: Claimed>(handler: &dyn TaskHandler<T>, task: &T, end: TaskEnd) -> TaskEnd {
    match end {
        TaskEnd::Retry {
            not_before,
            error: Some(error),
        } => {
            let attempts = task.attempts();
            if attempts >= handler.max_attempts() {
                TaskEnd::Failed {
                    error: format!("{error} (gave up after {attempts} attempts)"),
                }
            } else {
                TaskEnd::Retry {
                    not_before: not_before.max(Utc::now() + handler.retry_delay(attempts)),
                    error: Some(error),
                }
            }
        }
        other => other,
    }
}

/// Renews a running task's lease every third of its length; tells `lost` (and
/// stops) when another holder has it. Aborted when the run ends.
async fn heartbeat<Q: TaskQueue>(
    queue: Arc<Q>,
    task: Q::Item,
    owner: String,
    lease: Duration,
    lost: tokio::sync::oneshot::Sender<()>,
) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = Utc::now() + lease;
        match queue.renew(&task, &owner, until).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = lost.send(());
                return;
            }
            Err(e) => tracing::warn!(
                kind = task.kind(),
                task_id = %task.task_id(),
                error = %e,
                "cannot renew a task lease"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_fifteen_minutes() {
        let secs: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 900, 900, 900]);
    }
}

//! Where a runner claims, renews and finishes its tasks: a small port, so that
//! the general task table and the sync engine's job tables (whose claims
//! follow rules of their own, such as one sync per user) run under one runner.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd};
use crate::store::{StoreError, TaskStore};

/// What a runner needs to know of a claimed task, whatever stores it.
pub trait Claimed: Clone + Send + Sync + 'static {
    fn task_id(&self) -> uuid::Uuid;
    fn kind(&self) -> &str;
    /// Runs started so far, this one included.
    fn attempts(&self) -> u32;
}

impl Claimed for Task {
    fn task_id(&self) -> uuid::Uuid {
        self.id.0
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// A durable queue of leased tasks. Every method that changes a task does so
/// only for the `owner` holding its lease.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    type Item: Claimed;

    /// The most urgent due task of one of `kinds`, leased to `owner` until
    /// `until` (see `TaskStore::claim_task`).
    async fn claim(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Self::Item>, StoreError>;

    /// False: someone else holds the task now.
    async fn renew(
        &self,
        item: &Self::Item,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The task as it ended, or None when `owner` no longer held it.
    async fn finish(
        &self,
        item: &Self::Item,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Self::Item>, StoreError>;

    /// Due tasks per kind of `kinds`.
    async fn backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError>;
}

/// The general task table (`TaskStore`) as a queue.
#[derive(Clone)]
pub struct StoreQueue {
    store: Arc<dyn TaskStore>,
}

impl StoreQueue {
    pub fn new(store: Arc<dyn TaskStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    pub async fn create(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        self.store.create_task(task).await
    }
}

#[async_trait]
impl TaskQueue for StoreQueue {
    type Item = Task;

    async fn claim(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        self.store.claim_task(kinds, owner, now, until).await
    }

    async fn renew(
        &self,
        item: &Task,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.renew_task_lease(item.id, owner, until).await
    }

    async fn finish(
        &self,
        item: &Task,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        self.store.finish_task(item.id, owner, end, now).await
    }

    async fn backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError> {
        self.store.task_backlog(kinds, now).await
    }
}

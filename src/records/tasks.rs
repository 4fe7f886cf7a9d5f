//! General background tasks as stored: one row per unit of work of some kind
//! (daily aggregation, analysis, a notification delivery, ...), with the lease
//! that keeps it to one runner across instances and the history a status
//! report needs.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;

/// A task's id: a UUID, shown and parsed in its hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok().map(Self)
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The contract's task states (the same words as a sync job's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed)
    }
}

/// A task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: TaskId,
    /// The handler's name (`TaskHandler::kind`).
    pub kind: String,
    /// Whose data the task works on; None for system-wide work (only admins
    /// and services may read those over HTTP).
    pub user_id: Option<UserId>,
    /// What the handler needs; opaque to the store.
    pub payload: serde_json::Value,
    /// Lower runs first (as sync triggers do).
    pub priority: i16,
    /// Not claimed before this.
    pub not_before: DateTime<Utc>,
    /// The same (kind, key) returns the task created first instead of a new one.
    pub idempotency_key: Option<String>,
    /// At most one task per concurrency key runs at a time, across instances.
    pub concurrency_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl NewTask {
    /// A task of `kind`, due now, priority 0, with no keys.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value, now: DateTime<Utc>) -> Self {
        Self {
            id: TaskId::new(),
            kind: kind.into(),
            user_id: None,
            payload,
            priority: 0,
            not_before: now,
            idempotency_key: None,
            concurrency_key: None,
            created_at: now,
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub status: TaskStatus,
    /// Runs started so far (a claim counts one).
    pub attempts: u32,
    /// One message per failed or retried run, oldest first.
    pub errors: Vec<String>,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub not_before: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The runner holding the task while it runs; kept after a lapse until
    /// someone else claims it.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
}

impl Task {
    /// The last error recorded, if any (what the status report shows).
    pub fn last_error(&self) -> Option<&str> {
        self.errors.last().map(String::as_str)
    }
}

/// What `TaskStore::create_task` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Enqueued {
    New(Task),
    /// The idempotency key was used before: the task it created.
    Existing(Task),
}

impl Enqueued {
    pub fn task(&self) -> &Task {
        match self {
            Enqueued::New(t) | Enqueued::Existing(t) => t,
        }
    }

    pub fn into_task(self) -> Task {
        match self {
            Enqueued::New(t) | Enqueued::Existing(t) => t,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEnd {
    Succeeded,
    /// Final: no more runs.
    Failed {
        error: String,
    },
    /// Back in the queue until `not_before`; `error` (if any) is added to the
    /// task's errors (none when a shutdown put it back).
    Retry {
        not_before: DateTime<Utc>,
        error: Option<String>,
    },
}

impl TaskEnd {
    pub fn outcome(&self) -> &'static str {
        match self {
            TaskEnd::Succeeded => "succeeded",
            TaskEnd::Failed { .. } => "failed",
            TaskEnd::Retry { .. } => "retry",
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            TaskEnd::Succeeded => None,
            TaskEnd::Failed { error } => Some(error),
            TaskEnd::Retry { error, .. } => error.as_deref(),
        }
    }
}

/// Tasks of one kind waiting to run at some moment: queued and due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskBacklog {
    pub due: u64,
    /// Since when the longest-waiting of them is due; None when none is.
    pub oldest_due: Option<DateTime<Utc>>,
}

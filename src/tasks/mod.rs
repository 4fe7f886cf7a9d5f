//! The general durable task runner: background work of any kind (sync jobs
//! today; daily aggregation, analysis and notification delivery next) runs
//! with the same guarantees: one runner per task across instances (a lease),
//! resumption after a crash (a lapsed lease makes the task claimable again),
//! retries with backoff, and a status anyone allowed can read over HTTP.
//!
//! A kind is a `TaskHandler`; where its tasks are stored is a `TaskQueue`:
//! `StoreQueue` (the general `tasks` table of `TaskStore`) for new kinds, and
//! the sync engine's own queue over its proven job tables for sync jobs.

mod queue;
mod runner;

pub use queue::{Claimed, StoreQueue, TaskQueue};
pub use runner::{retry_delay, LeaseLost, RunContext, RunnerSettings, TaskHandler, TaskRunner};

pub use crate::records::tasks::{
    Enqueued, NewTask, Task, TaskBacklog, TaskEnd, TaskId, TaskStatus,
};

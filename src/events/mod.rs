//! Domain events, for consumers such as alerts, live streams and analytics.
//!
//! A store writes the events of a change into its outbox in the same transaction
//! as the change (readings, a job's end, a connection's new status); the relay
//! (`relay`) publishes them to the configured `EventBus` and deletes them once the
//! bus has them. So an event is published at least once for every committed
//! change, through broker outages and crashes; consumers deduplicate by `id`.

mod memory;
pub mod rabbitmq;
pub mod relay;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::connections::{ConnectionStatus, Provider};
use crate::domain::{Reading, UserId};
use crate::store::{Outcome, Upserted};
use crate::sync::jobs::{JobStatus, SyncJob};

pub use memory::MemoryBus;

/// Bumped whenever an event's JSON shape changes incompatibly.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    #[serde(rename = "reading.created")]
    ReadingCreated(ReadingChange),
    #[serde(rename = "reading.updated")]
    ReadingUpdated(ReadingChange),
    #[serde(rename = "sync.completed")]
    SyncCompleted(SyncChange),
    #[serde(rename = "sync.failed")]
    SyncFailed(SyncChange),
    /// A source connection changed state; the routing key names the new state
    /// (`connection.connected`, `connection.disconnected`, `connection.reauth_required`).
    #[serde(rename = "connection.changed")]
    ConnectionChanged(ConnectionChange),
}

impl EventKind {
    /// The routing key brokers use (`reading.created`, ...).
    pub fn routing_key(&self) -> &'static str {
        match self {
            EventKind::ReadingCreated(_) => "reading.created",
            EventKind::ReadingUpdated(_) => "reading.updated",
            EventKind::SyncCompleted(_) => "sync.completed",
            EventKind::SyncFailed(_) => "sync.failed",
            EventKind::ConnectionChanged(c) => match c.status {
                "connected" => "connection.connected",
                "reauth_required" => "connection.reauth_required",
                _ => "connection.disconnected",
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadingChange {
    pub user_id: String,
    pub timestamp: String,
    pub glucose_value: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    pub source: String,
    pub version: u32,
}

/// A sync job that ended (succeeded, or failed for good).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncChange {
    pub job_id: Uuid,
    pub user_id: String,
    pub provider: &'static str,
    pub trigger: &'static str,
    pub counts: crate::sync::jobs::JobCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionChange {
    pub user_id: String,
    pub provider: &'static str,
    /// `connected`, `disconnected` or `reauth_required`.
    pub status: &'static str,
}

impl Event {
    pub fn new(kind: EventKind) -> Self {
        Self {
            id: Uuid::new_v4(),
            schema_version: SCHEMA_VERSION,
            occurred_at: Utc::now(),
            kind,
        }
    }

    /// The event of an upsert: created or updated; none for a duplicate.
    pub fn reading_changed(reading: &Reading, upserted: &Upserted) -> Option<Self> {
        let change = || ReadingChange {
            user_id: reading.user_id.to_string(),
            timestamp: reading.timestamp.to_rfc3339(),
            glucose_value: reading.glucose.mg_dl().get(),
            status: reading.glucose.status().map(|s| s.as_str()),
            source: reading.source.to_string(),
            version: upserted.version,
        };
        match upserted.outcome {
            Outcome::Inserted => Some(Self::new(EventKind::ReadingCreated(change()))),
            Outcome::Updated => Some(Self::new(EventKind::ReadingUpdated(change()))),
            Outcome::Duplicate(_) => None,
        }
    }

    /// The event of a job that ended (succeeded, or failed for good); none for
    /// a job still queued or running.
    pub fn sync_ended(job: &SyncJob) -> Option<Self> {
        let duration_ms = match (job.started_at, job.finished_at) {
            (Some(start), Some(end)) => (end - start).num_milliseconds().max(0) as u64,
            _ => 0,
        };
        let change = SyncChange {
            job_id: job.id,
            user_id: job.user_id.to_string(),
            provider: job.provider.as_str(),
            trigger: job.trigger.as_str(),
            counts: job.counts,
            error: job.errors.last().cloned(),
            duration_ms,
        };
        match job.status {
            JobStatus::Succeeded => Some(Self::new(EventKind::SyncCompleted(SyncChange {
                error: None,
                ..change
            }))),
            JobStatus::Failed => Some(Self::new(EventKind::SyncFailed(change))),
            JobStatus::Queued | JobStatus::Running => None,
        }
    }

    /// A connection's status changed (connected, disconnected, reauth required).
    pub fn connection_changed(user: &UserId, provider: Provider, status: ConnectionStatus) -> Self {
        Self::new(EventKind::ConnectionChanged(ConnectionChange {
            user_id: user.to_string(),
            provider: provider.as_str(),
            status: status.as_str(),
        }))
    }

    /// The form the outbox keeps and the buses carry.
    pub fn to_message(&self) -> Message {
        Message {
            id: self.id,
            routing_key: self.kind.routing_key().to_owned(),
            // Serializing plain structs of strings and numbers cannot fail.
            payload: serde_json::to_string(self).expect("events serialize"),
            created_at: self.occurred_at,
        }
    }
}

/// An event as committed to the outbox: serialized once, published as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event id, which consumers deduplicate by.
    pub id: Uuid,
    pub routing_key: String,
    /// The event's JSON: `id`, `schema_version`, `occurred_at`, `type`, `data`.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// The payload parsed (for consumers in tests and in this process).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or did not confirm; the relay retries.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Where the relay publishes committed events.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Publishes the messages in order. Ok means the bus holds every one of
    /// them (a broker confirmed them), so the outbox may forget them.
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError>;

    /// Makes the bus ready to publish (connecting if needed). The relay asks
    /// before it claims messages, so an instance that cannot reach its broker
    /// holds no claims: after it crashes, another instance (or its own restart)
    /// publishes at once instead of waiting for the claims to lapse.
    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// For `/health`: Err with the reason when the bus cannot publish now.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

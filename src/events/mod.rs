//! Domain events published after a change is committed, for consumers such as
//! alerts, live streams and analytics. In-process by default; brokers plug in
//! behind the same `EventBus` trait.

mod memory;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

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
}

/// Publishes committed changes. Implementations must not block the caller.
pub trait EventBus: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn publish(&self, events: Vec<Event>);
}

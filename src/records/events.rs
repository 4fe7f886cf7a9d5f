//! The event schema: what a change announces, and the form the outbox keeps.
//!
//! Low in the layers because stores build events inside the transaction of the
//! change they announce (the outbox pattern: only the upsert knows whether a
//! reading was created, updated or a duplicate); the bus, relay and subscribers
//! that carry them live above the store in `crate::events`.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Reading, UserId};
use crate::records::alerts::Alert;
use crate::records::connections::{ConnectionStatus, Provider};
use crate::records::jobs::{JobCounts, JobStatus, SyncJob};
use crate::records::journal::{JournalChange, JournalEntry, JournalKind};
use crate::records::readings::{Outcome, Upserted};

/// Bumped whenever an event's JSON shape changes incompatibly.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    /// The user the change belongs to (also in `data`), at the top so that a
    /// consumer can route or filter by user without knowing each event type.
    pub user_id: String,
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
    #[serde(rename = "alert.raised")]
    AlertRaised(Alert),
    #[serde(rename = "alert.acknowledged")]
    AlertAcknowledged(Alert),
    #[serde(rename = "alert.resolved")]
    AlertResolved(Alert),
    /// Journal entries: `meal.*`, `sleep.*`, `activity.*` (created, updated,
    /// deleted), the item as the API shows it (a deleted one as it was).
    #[serde(rename = "meal.created")]
    MealCreated(JournalChange),
    #[serde(rename = "meal.updated")]
    MealUpdated(JournalChange),
    #[serde(rename = "meal.deleted")]
    MealDeleted(JournalChange),
    #[serde(rename = "sleep.created")]
    SleepCreated(JournalChange),
    #[serde(rename = "sleep.updated")]
    SleepUpdated(JournalChange),
    #[serde(rename = "sleep.deleted")]
    SleepDeleted(JournalChange),
    #[serde(rename = "activity.created")]
    ActivityCreated(JournalChange),
    #[serde(rename = "activity.updated")]
    ActivityUpdated(JournalChange),
    #[serde(rename = "activity.deleted")]
    ActivityDeleted(JournalChange),
}

impl EventKind {
    /// The user whose data changed.
    pub fn user_id(&self) -> &str {
        match self {
            EventKind::ReadingCreated(c) | EventKind::ReadingUpdated(c) => &c.user_id,
            EventKind::SyncCompleted(c) | EventKind::SyncFailed(c) => &c.user_id,
            EventKind::ConnectionChanged(c) => &c.user_id,
            EventKind::AlertRaised(a)
            | EventKind::AlertAcknowledged(a)
            | EventKind::AlertResolved(a) => &a.user_id,
            EventKind::MealCreated(c)
            | EventKind::MealUpdated(c)
            | EventKind::MealDeleted(c)
            | EventKind::SleepCreated(c)
            | EventKind::SleepUpdated(c)
            | EventKind::SleepDeleted(c)
            | EventKind::ActivityCreated(c)
            | EventKind::ActivityUpdated(c)
            | EventKind::ActivityDeleted(c) => &c.user_id,
        }
    }

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
            EventKind::AlertRaised(_) => "alert.raised",
            EventKind::AlertAcknowledged(_) => "alert.acknowledged",
            EventKind::AlertResolved(_) => "alert.resolved",
            EventKind::MealCreated(_) => "meal.created",
            EventKind::MealUpdated(_) => "meal.updated",
            EventKind::MealDeleted(_) => "meal.deleted",
            EventKind::SleepCreated(_) => "sleep.created",
            EventKind::SleepUpdated(_) => "sleep.updated",
            EventKind::SleepDeleted(_) => "sleep.deleted",
            EventKind::ActivityCreated(_) => "activity.created",
            EventKind::ActivityUpdated(_) => "activity.updated",
            EventKind::ActivityDeleted(_) => "activity.deleted",
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
    pub counts: JobCounts,
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
            user_id: kind.user_id().to_owned(),
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

    /// The event of an alert's new state: `alert.raised` for an active alert
    /// (new, or re-raised after its snooze), `alert.acknowledged`, `alert.resolved`.
    pub fn alert_changed(alert: &Alert) -> Self {
        use crate::records::alerts::AlertStatus;
        let alert = alert.clone();
        Self::new(match alert.status {
            AlertStatus::Active => EventKind::AlertRaised(alert),
            AlertStatus::Acknowledged => EventKind::AlertAcknowledged(alert),
            AlertStatus::Resolved => EventKind::AlertResolved(alert),
        })
    }

    /// The event of a journal change: `<kind>.created`, `.updated` or
    /// `.deleted`, carrying the entry as the API shows it.
    pub fn journal_changed(entry: &JournalEntry, change: JournalChangeKind) -> Self {
        let mut item = entry.item();
        item.remove("user_id");
        let c = JournalChange {
            user_id: entry.user_id.to_string(),
            item,
        };
        use JournalChangeKind as C;
        Self::new(match (entry.kind(), change) {
            (JournalKind::Meal, C::Created) => EventKind::MealCreated(c),
            (JournalKind::Meal, C::Updated) => EventKind::MealUpdated(c),
            (JournalKind::Meal, C::Deleted) => EventKind::MealDeleted(c),
            (JournalKind::Sleep, C::Created) => EventKind::SleepCreated(c),
            (JournalKind::Sleep, C::Updated) => EventKind::SleepUpdated(c),
            (JournalKind::Sleep, C::Deleted) => EventKind::SleepDeleted(c),
            (JournalKind::Activity, C::Created) => EventKind::ActivityCreated(c),
            (JournalKind::Activity, C::Updated) => EventKind::ActivityUpdated(c),
            (JournalKind::Activity, C::Deleted) => EventKind::ActivityDeleted(c),
        })
    }

    /// The form the outbox keeps and the buses carry.
    pub fn to_message(&self) -> Message {
        Message {
            id: self.id,
            routing_key: self.kind.routing_key().to_owned(),
            user: OnceLock::new(),
            // Serializing plain structs of strings and numbers cannot fail.
            payload: serde_json::to_string(self).expect("events serialize"),
            created_at: self.occurred_at,
        }
    }
}

/// Which journal change an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalChangeKind {
    Created,
    Updated,
    Deleted,
}

/// An event as committed to the outbox: serialized once, published as is.
#[derive(Debug, Clone)]
pub struct Message {
    /// The event id, which consumers deduplicate by.
    pub id: Uuid,
    pub routing_key: String,
    /// The user the event belongs to, read from the payload the first time a
    /// per-user consumer (live streams, alerts) asks: the relay and the buses
    /// carry messages without looking inside (reading every payload cost the
    /// bulk-ingest path about 5,000 instructions per reading).
    user: OnceLock<Option<UserId>>,
    /// The event's JSON: `id`, `schema_version`, `occurred_at`, `user_id`,
    /// `type`, `data`.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Equal when they are the same message; whether the user was read yet does
/// not matter.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        (self.id, &self.routing_key, &self.payload, self.created_at)
            == (
                other.id,
                &other.routing_key,
                &other.payload,
                other.created_at,
            )
    }
}

impl Eq for Message {}

impl Message {
    /// A message read back from where it was kept (an outbox row, a broker
    /// delivery).
    pub fn stored(
        id: Uuid,
        routing_key: String,
        payload: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            routing_key,
            user: OnceLock::new(),
            payload,
            created_at,
        }
    }

    /// The user the event belongs to; None only for a payload that names no
    /// valid user (not one this service wrote).
    pub fn user_id(&self) -> Option<&UserId> {
        self.user.get_or_init(|| user_of(&self.payload)).as_ref()
    }

    /// The payload parsed (for consumers in tests and in this process).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// The user a payload names: the top-level `user_id`, or for events written
/// before it was added, `data.user_id` (every event type has one there).
fn user_of(payload: &str) -> Option<UserId> {
    #[derive(Deserialize)]
    struct Head {
        user_id: Option<String>,
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        user_id: Option<String>,
    }
    let head: Head = serde_json::from_str(payload).ok()?;
    let raw = head.user_id.or(head.data.and_then(|d| d.user_id))?;
    UserId::parse(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection_event() -> Event {
        let user = UserId::parse("ev-user").expect("valid id");
        Event::connection_changed(&user, Provider::Dexcom, ConnectionStatus::Connected)
    }

    #[test]
    fn messages_carry_the_user_at_the_top_of_the_payload_and_beside_it() {
        let message = connection_event().to_message();
        assert_eq!(message.user_id().map(UserId::as_str), Some("ev-user"));
        let json = message.json();
        assert_eq!(json["user_id"], "ev-user");
        // Extended, not renamed: everything that was there still is.
        assert_eq!(json["data"]["user_id"], "ev-user");
        assert_eq!(json["type"], "connection.changed");
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(json["id"], message.id.to_string());
    }

    #[test]
    fn a_stored_message_gets_its_user_from_the_payload() {
        let written = connection_event().to_message();
        let read = Message::stored(
            written.id,
            written.routing_key.clone(),
            written.payload.clone(),
            written.created_at,
        );
        assert_eq!(read, written);
        assert_eq!(read.user_id().map(UserId::as_str), Some("ev-user"));
        assert_eq!(read, written, "equal whether or not the user was read");
        // An outbox row written before `user_id` was at the top.
        let old = r#"{"id":"x","type":"reading.created","data":{"user_id":"old-user"}}"#;
        let read = Message::stored(
            Uuid::nil(),
            "reading.created".into(),
            old.into(),
            Utc::now(),
        );
        assert_eq!(read.user_id().map(UserId::as_str), Some("old-user"));
        let foreign = Message::stored(Uuid::nil(), "x".into(), "not json".into(), Utc::now());
        assert_eq!(foreign.user_id(), None);
    }
}

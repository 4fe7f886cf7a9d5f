//! What storing a reading did: the outcome of an upsert per reading, which the
//! pipeline counts and the outbox turns into `reading.*` events.

use chrono::{DateTime, Utc};

/// What an upsert did with one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// New (user, timestamp): stored with version 1.
    Inserted,
    /// Replaced an existing reading under the conflict rule; version bumped.
    Updated,
    /// Nothing changed: the stored reading is identical, or outranks the incoming one.
    Duplicate(DuplicateKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKind {
    Identical,
    /// A stored sensor reading is not replaced by a manual one.
    SensorPrecedence,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::Updated => "updated",
            Outcome::Duplicate(_) => "duplicate",
        }
    }
}

/// The result of upserting one reading: the outcome and the version now stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub outcome: Outcome,
    pub version: u32,
    pub updated_at: DateTime<Utc>,
}

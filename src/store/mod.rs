//! Storage: one `Store` trait, used as `Arc<dyn Store>`, with one module per backend.
//!
//! A backend implements a handful of primitives (atomic batch upsert, latest, a
//! bounded keyset scan); paging and cursors are built on top once, in `query`, so
//! every backend pages identically. `tests/it/store_conformance.rs` runs the same
//! cases against every backend.

mod query;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Reading, StoredReading, UserId};

pub use query::{fetch_page, Order, Page, PageRequest, Scan, Seek};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or is overloaded; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored row no longer parses into a domain value.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for logs, metrics and `/health` (`sqlite`, `postgres`, ...).
    fn backend(&self) -> &'static str;

    /// Stores a batch atomically, applying the dedup key (user, timestamp) and the
    /// conflict rule (`Reading::resolve_against`) per record, in order. Returns one
    /// result per input, in input order. When this returns Ok, the batch is durable.
    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError>;

    /// The newest reading of a user.
    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError>;

    /// Up to `scan.limit` readings of one user in `[scan.from, scan.until)`, in the
    /// scan's order. Paging is built on this by `fetch_page`.
    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError>;

    /// A cheap round trip proving the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

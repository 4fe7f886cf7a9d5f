//! The port every source of readings plugs into, so that the sync engine,
//! scheduler and job API serve any provider: a source says what it holds and
//! fetches a window of it; the engine owns ranges, windows, checkpoints,
//! leases, retries and storing. A new source implements `SourceAdapter` in its
//! own module under `sources/` and is registered in `app`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{FieldError, Reading, UserId};
use crate::records::connections::Provider;

/// A half-open request window `[start, end)`, at most `max_window` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// One record of a fetched window: a reading, or why the source's record
/// could not be one (counted as rejected, never dropped).
pub type FetchedRecord = Result<Reading, Vec<FieldError>>;

/// What a failure means for the job and the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Passing (an outage, a rate limit, a busy token refresh): the job backs
    /// off and runs again, with its progress kept.
    Retry,
    /// Retrying will not help (malformed data, no connection, a key problem):
    /// the job fails.
    Final,
    /// The provider no longer accepts the user's authorization: the job fails
    /// and the connection becomes `reauth_required` until the user reconnects.
    Reauth,
}

/// A source's failure, with what to do about it. It reads as the source's own
/// error (that is what a job's `errors` show).
#[derive(Debug)]
pub struct SourceError {
    disposition: Disposition,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for SourceError {
    // Transparent: the wrapped error's own source, if any.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl SourceError {
    pub fn new(
        disposition: Disposition,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            disposition,
            error: error.into(),
        }
    }

    pub fn disposition(&self) -> Disposition {
        self.disposition
    }
}

/// A source of readings as the sync engine sees it.
#[async_trait::async_trait]
pub trait SourceAdapter: Send + Sync {
    fn provider(&self) -> Provider;

    /// The longest window one `fetch` serves (Dexcom: 30 days).
    fn max_window(&self) -> chrono::Duration;

    /// The times of the earliest and latest record the source holds for
    /// `user` (both inclusive); None when it holds none.
    async fn data_range(
        &self,
        user: &UserId,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, SourceError>;

    /// The records of `window`: every record the source sent, each a reading
    /// or its rejection (so `fetched` counts them all).
    async fn fetch(
        &self,
        user: &UserId,
        window: FetchWindow,
    ) -> Result<Vec<FetchedRecord>, SourceError>;
}

/// The sources the engine can sync, by provider.
#[derive(Clone, Default)]
pub struct Sources {
    adapters: HashMap<Provider, Arc<dyn SourceAdapter>>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the adapter of its provider.
    pub fn with(mut self, adapter: Arc<dyn SourceAdapter>) -> Self {
        self.adapters.insert(adapter.provider(), adapter);
        self
    }

    pub fn get(&self, provider: Provider) -> Option<&Arc<dyn SourceAdapter>> {
        self.adapters.get(&provider)
    }

    /// The registered providers, in `Provider::ALL` order.
    pub fn providers(&self) -> Vec<Provider> {
        Provider::ALL
            .into_iter()
            .filter(|p| self.adapters.contains_key(p))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }
}

/// Splits `[start, end)` into contiguous windows of at most `max` each, in
/// order, covering exactly the input; empty when `start >= end`. A
/// non-positive `max` cannot make progress and yields one window.
pub fn split_windows(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: chrono::Duration,
) -> Vec<FetchWindow> {
    let mut windows = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let next = if max > chrono::Duration::zero() {
            cursor.checked_add_signed(max).map_or(end, |n| n.min(end))
        } else {
            end
        };
        windows.push(FetchWindow {
            start: cursor,
            end: next,
        });
        cursor = next;
    }
    windows
}

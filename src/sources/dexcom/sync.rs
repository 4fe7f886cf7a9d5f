//! Fetching a time range of one user's Dexcom readings into the pipeline, in
//! windows of at most 30 days: one window at a time for sync jobs, or a whole
//! range at once.

use chrono::{DateTime, Utc};

use super::client::{DexcomClient, DexcomError};
use super::translate;
use super::windows::{split_windows, Window, MAX_WINDOW_DAYS};
use crate::domain::UserId;
use crate::pipeline::{Pipeline, RecordResult, Tally};
use crate::records::connections::Provider;
use crate::records::jobs::JobCounts;
use crate::store::{ConnectionStore, StoreError};

/// What one `fetch_range` did: the windows fetched, and per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub windows: usize,
    pub counts: JobCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Dexcom(#[from] DexcomError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches one window (at most 30 days) and stores it: what it did, and the
/// newest reading time it stored (the high-water mark candidate).
pub async fn fetch_window(
    client: &DexcomClient,
    pipeline: &Pipeline,
    user: &UserId,
    window: Window,
) -> Result<(JobCounts, Option<DateTime<Utc>>), SyncError> {
    let page = client.egvs(user, window).await?;
    let batch = translate::translate_for_pipeline(user, &page);
    let results = pipeline.ingest(batch).await?;
    let newest = results
        .iter()
        .filter_map(|r| match r {
            RecordResult::Stored(at, _) => Some(at.as_datetime()),
            RecordResult::Rejected(_) => None,
        })
        .max();
    let counts = Tally::of(&results).counts(page.len() as u64);
    Ok((counts, newest))
}

/// Fetches `[start, end)` window by window, oldest first, and stores each
/// window before fetching the next (so an interrupted backfill keeps what it got).
/// Sync jobs (`crate::sync::engine`) do the same with checkpoints, leases and
/// the sync metrics; this one-shot form (no lease, no checkpoint) serves tests
/// and benchmarks.
pub async fn fetch_range(
    client: &DexcomClient,
    pipeline: &Pipeline,
    connections: &dyn ConnectionStore,
    user: &UserId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<SyncReport, SyncError> {
    let started = std::time::Instant::now();
    let mut report = SyncReport::default();
    let result = async {
        for window in split_windows(start, end, chrono::Duration::days(MAX_WINDOW_DAYS)) {
            let (counts, _) = fetch_window(client, pipeline, user, window).await?;
            report.windows += 1;
            report.counts += counts;
        }
        Ok::<_, SyncError>(())
    }
    .await;
    let store = connections;
    let now = Utc::now();
    let outcome = match &result {
        Ok(()) => {
            store.record_sync(user, Provider::Dexcom, now, None).await?;
            "ok"
        }
        Err(e) => {
            store
                .record_sync(user, Provider::Dexcom, now, Some(e.to_string()))
                .await?;
            "error"
        }
    };
    tracing::info!(
        user_id = %user,
        outcome,
        windows = report.windows,
        fetched = report.counts.fetched,
        inserted = report.counts.inserted,
        updated = report.counts.updated,
        duplicates = report.counts.duplicates,
        rejected = report.counts.rejected,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Dexcom sync finished"
    );
    result.map(|()| report)
}

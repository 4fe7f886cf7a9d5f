//! Fetching a time range of one user's Dexcom readings into the pipeline, in
//! windows of at most 30 days. Used by the initial backfill (and, later, by the
//! scheduler and sync jobs).

use chrono::{DateTime, Utc};

use super::client::{DexcomClient, DexcomError};
use super::translate;
use super::windows::{split_windows, MAX_WINDOW_DAYS};
use crate::connections::Provider;
use crate::domain::UserId;
use crate::pipeline::{Pipeline, RecordResult};
use crate::store::{Outcome, StoreError};

/// What one sync did, per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub windows: usize,
    pub fetched: usize,
    pub inserted: usize,
    pub updated: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Dexcom(#[from] DexcomError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches `[start, end)` window by window, oldest first, and stores each
/// window before fetching the next (so an interrupted backfill keeps what it got).
pub async fn fetch_range(
    client: &DexcomClient,
    pipeline: &Pipeline,
    user: &UserId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<SyncReport, SyncError> {
    let started = std::time::Instant::now();
    let mut report = SyncReport::default();
    let result = async {
        for window in split_windows(start, end, chrono::Duration::days(MAX_WINDOW_DAYS)) {
            let page = client.egvs(user, window).await?;
            report.windows += 1;
            report.fetched += page.len();
            let batch = translate::translate_for_pipeline(user, &page);
            for result in pipeline.ingest(batch).await? {
                match result {
                    RecordResult::Stored(_, u) => match u.outcome {
                        Outcome::Inserted => report.inserted += 1,
                        Outcome::Updated => report.updated += 1,
                        Outcome::Duplicate(_) => report.duplicates += 1,
                    },
                    RecordResult::Rejected(_) => report.rejected += 1,
                }
            }
        }
        Ok::<_, SyncError>(())
    }
    .await;
    let store = pipeline.store();
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
    metrics::histogram!("dexcom_sync_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        user_id = %user,
        outcome,
        windows = report.windows,
        fetched = report.fetched,
        inserted = report.inserted,
        updated = report.updated,
        duplicates = report.duplicates,
        rejected = report.rejected,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Dexcom sync finished"
    );
    result.map(|()| report)
}

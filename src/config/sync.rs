//! The sync section (POLL_INTERVAL_SECONDS, SYNC_*, DEXCOM_BACKFILL_DAYS): how the
//! sync engine and scheduler pace themselves.

use std::time::Duration;

use super::{ConfigError, Vars};

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// POLL_INTERVAL_SECONDS: scheduled sync period per user.
    pub interval: Duration,
    /// SYNC_OVERLAP_SECONDS: each incremental sync re-reads this much before the
    /// high-water mark, because Dexcom data arrives late.
    pub overlap: Duration,
    /// DEXCOM_BACKFILL_DAYS: what a first sync (no high-water mark) fetches.
    pub backfill_days: u32,
    /// SYNC_CONCURRENCY: jobs run at once by this instance.
    pub concurrency: usize,
    /// SYNC_TIMEOUT_SECONDS: one run of one job; a longer one is put back in the
    /// queue with its progress kept.
    pub timeout: Duration,
    /// SYNC_LEASE_SECONDS: how long a silent holder keeps a user's lease (renewed
    /// every third of it while the job runs).
    pub lease: Duration,
    /// Runs of one job before it fails for good.
    pub max_attempts: u32,
    /// SYNC_MAX_QUEUED_JOBS_PER_USER: queued jobs one user may have before
    /// requests for more are refused.
    pub max_queued_per_user: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(900),
            overlap: Duration::from_secs(3 * 3600),
            backfill_days: 30,
            concurrency: 4,
            timeout: Duration::from_secs(600),
            lease: Duration::from_secs(60),
            max_attempts: 5,
            max_queued_per_user: 20,
        }
    }
}

pub(super) fn parse(v: &Vars<'_>) -> Result<SyncSettings, ConfigError> {
    Ok(SyncSettings {
        interval: Duration::from_secs(v.number("POLL_INTERVAL_SECONDS", 1, 86_400)?),
        overlap: Duration::from_secs(v.number("SYNC_OVERLAP_SECONDS", 0, 30 * 86_400)?),
        backfill_days: v.number("DEXCOM_BACKFILL_DAYS", 0, 3650)?,
        concurrency: v.number("SYNC_CONCURRENCY", 1, 256)?,
        timeout: Duration::from_secs(v.number("SYNC_TIMEOUT_SECONDS", 1, 86_400)?),
        lease: Duration::from_secs(v.number("SYNC_LEASE_SECONDS", 1, 3600)?),
        max_queued_per_user: v.number("SYNC_MAX_QUEUED_JOBS_PER_USER", 1, 10_000)?,
        ..SyncSettings::default()
    })
}

//! Each user's newest reading time, the index the stale-alert timer walks: kept
//! by the reading upsert, so finding the users gone quiet is one range read
//! instead of the newest row of every user's readings.

use chrono::{DateTime, Utc};

use crate::domain::UserId;

/// A user and the timestamp of their newest stored reading (the maximum
/// reading timestamp, whatever order the readings arrived in: a backfill of
/// older readings never moves it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewestReading {
    pub user_id: UserId,
    /// Whole seconds, as readings are keyed.
    pub at: DateTime<Utc>,
}

//! SQLite side of the users' newest reading times: raised by the reading upsert
//! (`readings.rs`) in its transaction, read by time for the stale timer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Transaction;

use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::stale::NewestReading;
use crate::store::{StaleStore, StoreError};

/// Raises each (user, unix seconds) of `newest` to at least that time, in the
/// upsert's transaction (one statement per user the batch wrote).
pub(super) fn raise_newest<'a>(
    tx: &Transaction<'_>,
    newest: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), StoreError> {
    let mut raise = tx
        .prepare_cached(
            "INSERT INTO newest_readings (user_id, ts) VALUES (?1, ?2) \
             ON CONFLICT (user_id) DO UPDATE SET ts = excluded.ts WHERE excluded.ts > ts",
        )
        .map_err(internal)?;
    for (user, ts) in newest {
        raise.execute((user, ts)).map_err(internal)?;
    }
    Ok(())
}

#[async_trait]
impl StaleStore for SqliteStore {
    async fn quiet_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<NewestReading>,
        limit: usize,
    ) -> Result<Vec<NewestReading>, StoreError> {
        let (after_ts, after_user) = match &after {
            Some(a) => (a.at.timestamp(), a.user_id.as_str().to_owned()),
            None => (i64::MIN, String::new()),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT user_id, ts FROM newest_readings \
                     WHERE ts >= ?1 AND ts < ?2 AND (ts, user_id) > (?3, ?4) \
                     ORDER BY ts, user_id LIMIT ?5",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    (
                        from.timestamp(),
                        until.timestamp(),
                        after_ts,
                        after_user,
                        limit,
                    ),
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                )
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                let (user, ts) = row.map_err(internal)?;
                out.push(newest(&user, ts)?);
            }
            Ok(out)
        })
        .await
    }
}

fn newest(user: &str, ts: i64) -> Result<NewestReading, StoreError> {
    Ok(NewestReading {
        user_id: UserId::parse(user)
            .map_err(|e| StoreError::Corrupt(format!("newest_readings user {user:?}: {e}")))?,
        at: DateTime::from_timestamp(ts, 0)
            .ok_or_else(|| StoreError::Corrupt(format!("newest_readings ts {ts}")))?,
    })
}

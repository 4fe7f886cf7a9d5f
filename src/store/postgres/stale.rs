//! PostgreSQL side of the users' newest reading times: `latest_readings`,
//! raised by the reading upsert in its transaction (`readings.rs`), read by
//! time through `latest_readings_by_ts` for the stale timer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{col, db_error, PostgresStore};
use crate::domain::UserId;
use crate::records::stale::NewestReading;
use crate::store::{StaleStore, StoreError};

#[async_trait]
impl StaleStore for PostgresStore {
    async fn quiet_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<NewestReading>,
        limit: usize,
    ) -> Result<Vec<NewestReading>, StoreError> {
        let (after_ts, after_user) = match &after {
            Some(a) => (Some(a.at), a.user_id.as_str().to_owned()),
            None => (None, String::new()),
        };
        let rows = sqlx::query(
            "SELECT user_id, ts FROM latest_readings \
             WHERE ts >= $1 AND ts < $2 \
               AND ($3::timestamptz IS NULL OR (ts, user_id) > ($3, $4::text COLLATE \"C\")) \
             ORDER BY ts, user_id LIMIT $5",
        )
        .bind(from)
        .bind(until)
        .bind(after_ts)
        .bind(after_user)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let user: String = col(row, 0)?;
                let at: DateTime<Utc> = col(row, 1)?;
                Ok(NewestReading {
                    user_id: UserId::parse(&user).map_err(|e| {
                        StoreError::Corrupt(format!("latest_readings user {user:?}: {e}"))
                    })?,
                    at,
                })
            })
            .collect()
    }
}

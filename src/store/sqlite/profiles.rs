//! SQLite side of profiles: one row of `profiles` per user.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{internal, SqliteStore};
use crate::domain::{Profile, UserId};
use crate::store::{ProfileStore, StoreError};

#[async_trait]
impl ProfileStore for SqliteStore {
    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT timezone, target_low, target_high, display_unit, diabetes_type \
                     FROM profiles WHERE user_id = ?1",
                )
                .map_err(internal)?
                .query_row([user.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .optional()
                .map_err(internal)?;
            row.map(|(tz, low, high, unit, kind)| {
                Profile::from_parts(&tz, low, high, &unit, kind.as_deref())
                    .map_err(|e| StoreError::Corrupt(format!("profile of {user}: {e}")))
            })
            .transpose()
        })
        .await
    }

    async fn put_profile(&self, user: &UserId, profile: &Profile) -> Result<(), StoreError> {
        let (user, p) = (user.clone(), *profile);
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO profiles (user_id, timezone, target_low, target_high, display_unit, \
                 diabetes_type, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (user_id) DO UPDATE SET timezone = excluded.timezone, \
                 target_low = excluded.target_low, target_high = excluded.target_high, \
                 display_unit = excluded.display_unit, diabetes_type = excluded.diabetes_type, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .map_err(internal)?
            .execute(params![
                user.as_str(),
                p.timezone.name(),
                p.target.low(),
                p.target.high(),
                p.display_unit.as_str(),
                p.diabetes_type.map(|t| t.as_str()),
                chrono::Utc::now().timestamp_millis(),
            ])
            .map_err(internal)?;
            Ok(())
        })
        .await
    }
}

//! PostgreSQL side of profiles: one row of `profiles` per user.

use async_trait::async_trait;

use super::{db_error, PostgresStore};
use crate::domain::{Profile, UserId};
use crate::store::{ProfileStore, StoreError};

#[async_trait]
impl ProfileStore for PostgresStore {
    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>, StoreError> {
        let row: Option<(String, i16, i16, String, Option<String>)> = sqlx::query_as(
            "SELECT timezone, target_low, target_high, display_unit, diabetes_type \
             FROM profiles WHERE user_id = $1",
        )
        .bind(user.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?;
        row.map(|(tz, low, high, unit, kind)| {
            Profile::from_parts(&tz, low.into(), high.into(), &unit, kind.as_deref())
                .map_err(|e| StoreError::Corrupt(format!("profile of {user}: {e}")))
        })
        .transpose()
    }

    async fn put_profile(&self, user: &UserId, profile: &Profile) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO profiles (user_id, timezone, target_low, target_high, display_unit, \
             diabetes_type, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now()) \
             ON CONFLICT (user_id) DO UPDATE SET timezone = excluded.timezone, \
             target_low = excluded.target_low, target_high = excluded.target_high, \
             display_unit = excluded.display_unit, diabetes_type = excluded.diabetes_type, \
             updated_at = excluded.updated_at",
        )
        .bind(user.as_str())
        .bind(profile.timezone.name())
        .bind(profile.target.low() as i16)
        .bind(profile.target.high() as i16)
        .bind(profile.display_unit.as_str())
        .bind(profile.diabetes_type.map(|t| t.as_str()))
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

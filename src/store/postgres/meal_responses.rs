//! PostgreSQL side of the stored meal responses: `meal_responses`, one row
//! per (user, meal), whose foreign key to `journal_entries` deletes it with
//! its meal (also when the write of a response races the delete: the key
//! check waits for the delete, then fails, and the write is dropped).

use async_trait::async_trait;
use sqlx::postgres::PgBindIterExt;
use uuid::Uuid;

use super::{col, db_error, PostgresStore};
use crate::domain::UserId;
use crate::records::meal_response::{response_from_json, response_to_json, StoredMealResponse};
use crate::store::{MealResponseStore, StoreError};

#[async_trait]
impl MealResponseStore for PostgresStore {
    async fn get_meal_responses(
        &self,
        user: &UserId,
        meal_ids: &[Uuid],
    ) -> Result<Vec<StoredMealResponse>, StoreError> {
        if meal_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT meal_id, validity_key, response, computed_at FROM meal_responses \
             WHERE user_id = $1 AND meal_id = ANY($2::uuid[])",
        )
        .bind(user.as_str())
        .bind(meal_ids)
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let response: &str = col(row, 2)?;
                Ok(StoredMealResponse {
                    user_id: user.clone(),
                    meal_id: col(row, 0)?,
                    key: col(row, 1)?,
                    response: response_from_json(response)
                        .map_err(|e| StoreError::Corrupt(format!("meal response: {e}")))?,
                    computed_at: col(row, 3)?,
                })
            })
            .collect()
    }

    async fn put_meal_responses(
        &self,
        user: &UserId,
        responses: Vec<StoredMealResponse>,
    ) -> Result<(), StoreError> {
        let mut rows: Vec<&StoredMealResponse> =
            responses.iter().filter(|r| r.user_id == *user).collect();
        if rows.is_empty() {
            return Ok(());
        }
        // One row per meal (the last wins), in one order: concurrent writers
        // lock rows alike.
        rows.reverse();
        rows.sort_by_key(|r| r.meal_id);
        rows.dedup_by_key(|r| r.meal_id);
        let json = rows
            .iter()
            .map(|r| response_to_json(&r.response))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| StoreError::Internal(format!("meal response: {e}")))?;
        sqlx::query(
            "INSERT INTO meal_responses (user_id, meal_id, validity_key, response, computed_at) \
             SELECT $1, r.meal_id, r.validity_key, r.response, r.computed_at \
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::timestamptz[]) \
             AS r(meal_id, validity_key, response, computed_at) \
             WHERE EXISTS (SELECT 1 FROM journal_entries j \
                           WHERE j.id = r.meal_id AND j.user_id = $1 AND j.kind = 'meal') \
             ORDER BY r.meal_id \
             ON CONFLICT (user_id, meal_id) DO UPDATE SET \
             validity_key = excluded.validity_key, response = excluded.response, \
             computed_at = excluded.computed_at",
        )
        .bind(user.as_str())
        .bind(rows.iter().map(|r| r.meal_id).bind_iter())
        .bind(rows.iter().map(|r| r.key.as_str()).bind_iter())
        .bind(json.iter().map(String::as_str).bind_iter())
        .bind(rows.iter().map(|r| super::ms(r.computed_at)).bind_iter())
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}

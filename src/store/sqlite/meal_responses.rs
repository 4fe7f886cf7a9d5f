//! SQLite side of the stored meal responses: `meal_responses`, one row per
//! (user, meal). A row is written only while its meal is stored (the insert
//! checks, under the single writer), and `journal.rs` deletes it with its meal.

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use rusqlite::{params, TransactionBehavior};
use uuid::Uuid;

use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::meal_response::{response_from_json, response_to_json, StoredMealResponse};
use crate::store::{MealResponseStore, StoreError};

/// Deletes the stored response of a meal, in the transaction deleting it.
pub(super) fn delete_of_meal(tx: &rusqlite::Transaction<'_>, meal: Uuid) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM meal_responses WHERE meal_id = ?1")
        .map_err(internal)?
        .execute([meal.to_string()])
        .map_err(internal)?;
    Ok(())
}

#[async_trait]
impl MealResponseStore for SqliteStore {
    async fn get_meal_responses(
        &self,
        user: &UserId,
        meal_ids: &[Uuid],
    ) -> Result<Vec<StoredMealResponse>, StoreError> {
        if meal_ids.is_empty() {
            return Ok(Vec::new());
        }
        let user = user.clone();
        // The ids as one JSON array parameter, however many there are.
        let ids = serde_json::to_string(&meal_ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
            .map_err(|e| StoreError::Internal(format!("meal ids: {e}")))?;
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT meal_id, validity_key, response, computed_at_ms FROM meal_responses \
                     WHERE user_id = ?1 AND meal_id IN (SELECT value FROM json_each(?2))",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![user.as_str(), ids], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                let (meal_id, key, response, computed) = row.map_err(internal)?;
                let corrupt = |what: String| StoreError::Corrupt(format!("meal response: {what}"));
                out.push(StoredMealResponse {
                    user_id: user.clone(),
                    meal_id: Uuid::parse_str(&meal_id).map_err(|e| corrupt(e.to_string()))?,
                    response: response_from_json(&response).map_err(|e| corrupt(e.to_string()))?,
                    key,
                    computed_at: Utc
                        .timestamp_millis_opt(computed)
                        .single()
                        .ok_or_else(|| corrupt(format!("time {computed}")))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn put_meal_responses(
        &self,
        user: &UserId,
        responses: Vec<StoredMealResponse>,
    ) -> Result<(), StoreError> {
        let rows = responses
            .iter()
            .filter(|r| r.user_id == *user)
            .map(|r| {
                Ok((
                    r.meal_id.to_string(),
                    r.key.clone(),
                    response_to_json(&r.response)
                        .map_err(|e| StoreError::Internal(format!("meal response: {e}")))?,
                    r.computed_at.timestamp_millis(),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        let user = user.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            {
                let mut put = tx
                    .prepare_cached(
                        "INSERT INTO meal_responses (user_id, meal_id, validity_key, response, \
                         computed_at_ms) SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM \
                         journal_entries WHERE id = ?2 AND user_id = ?1 AND kind = 'meal') \
                         ON CONFLICT (user_id, meal_id) DO UPDATE SET \
                         validity_key = excluded.validity_key, response = excluded.response, \
                         computed_at_ms = excluded.computed_at_ms",
                    )
                    .map_err(internal)?;
                for (meal_id, key, response, computed) in &rows {
                    put.execute(params![user.as_str(), meal_id, key, response, computed])
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }
}

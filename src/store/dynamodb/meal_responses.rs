//! Stored meal responses in the aux table, in the meal's own journal
//! partition: pk `JOURNAL#<user>#meal`, sk `R#<meal id>` (`journal.rs` lays
//! out the partition and deletes this item with its meal). Read with
//! `BatchGetItem`s of 100 keys; written with `TransactWriteItems` that pair
//! each put with a `ConditionCheck` that the meal (`I#<id>`) is stored, so a
//! write racing the meal's delete never leaves a response behind.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, KeysAndAttributes, Put, TransactWriteItem};
use uuid::Uuid;

use super::item::{ms, s, sdk_error, Fields, Item};
use super::journal::{id_key, response_key};
use super::{backoff, lost_race, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::journal::JournalKind;
use crate::records::meal_response::{response_from_json, response_to_json, StoredMealResponse};
use crate::store::{MealResponseStore, StoreError};

/// Keys per `BatchGetItem` (DynamoDB's limit).
const GET_BATCH: usize = 100;
/// Responses per transaction: two items each, of DynamoDB's 100.
const PUT_BATCH: usize = 50;

fn to_item(r: &StoredMealResponse) -> Result<Item, StoreError> {
    let mut item = response_key(r.user_id.as_str(), r.meal_id);
    item.insert("meal_id".into(), s(r.meal_id.to_string()));
    item.insert("validity_key".into(), s(&r.key));
    let json = response_to_json(&r.response)
        .map_err(|e| StoreError::Internal(format!("meal response: {e}")))?;
    item.insert("response".into(), s(json));
    item.insert("computed_at_ms".into(), ms(r.computed_at));
    Ok(item)
}

fn from_item(user: &UserId, item: &Item) -> Result<StoredMealResponse, StoreError> {
    let f = Fields::new(item, "meal response");
    Ok(StoredMealResponse {
        user_id: user.clone(),
        meal_id: f.uuid("meal_id")?,
        key: f.s("validity_key")?.to_owned(),
        response: response_from_json(f.s("response")?).map_err(|e| f.corrupt("response", e))?,
        computed_at: f.time("computed_at_ms")?,
    })
}

/// The put of `r` and the check that its meal is stored.
fn put_items(table: &str, r: &StoredMealResponse) -> Result<[TransactWriteItem; 2], StoreError> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(id_key(
            r.user_id.as_str(),
            JournalKind::Meal,
            r.meal_id,
        )))
        .condition_expression("attribute_exists(pk)")
        .build()
        .map_err(|e| StoreError::Internal(format!("meal response check: {e}")))?;
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(to_item(r)?))
        .build()
        .map_err(|e| StoreError::Internal(format!("meal response put: {e}")))?;
    Ok([
        TransactWriteItem::builder().condition_check(check).build(),
        TransactWriteItem::builder().put(put).build(),
    ])
}

impl DynamoStore {
    /// Puts one response unless its meal is gone: a cancelled transaction is
    /// tried again while the meal is stored (another writer conflicted).
    async fn put_meal_response(&self, r: &StoredMealResponse) -> Result<(), StoreError> {
        let table = self.tables().aux.clone();
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let items = put_items(&table, r)?.to_vec();
            if self
                .transact("TransactWriteItems meal response", items)
                .await?
            {
                return Ok(());
            }
            let key = id_key(r.user_id.as_str(), JournalKind::Meal, r.meal_id);
            if self.get(&table, key).await?.is_none() {
                return Ok(());
            }
        }
        Err(lost_race("storing a meal response"))
    }
}

#[async_trait]
impl MealResponseStore for DynamoStore {
    async fn get_meal_responses(
        &self,
        user: &UserId,
        meal_ids: &[Uuid],
    ) -> Result<Vec<StoredMealResponse>, StoreError> {
        let mut ids = meal_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let table = self.tables().aux.clone();
        let mut out = Vec::new();
        for chunk in ids.chunks(GET_BATCH) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(
                        chunk
                            .iter()
                            .map(|id| response_key(user.as_str(), *id))
                            .collect(),
                    ))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Internal(format!("batch get keys: {e}")))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let got = self
                    .client()
                    .batch_get_item()
                    .request_items(&table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem meal responses", e))?;
                for item in got
                    .responses()
                    .and_then(|r| r.get(&table))
                    .into_iter()
                    .flatten()
                {
                    out.push(from_item(user, item)?);
                }
                pending = got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    if attempt >= RACE_ATTEMPTS {
                        return Err(StoreError::Unavailable(
                            "dynamodb kept returning unprocessed keys".into(),
                        ));
                    }
                    backoff(attempt).await;
                    attempt += 1;
                }
            }
        }
        Ok(out)
    }

    async fn put_meal_responses(
        &self,
        user: &UserId,
        responses: Vec<StoredMealResponse>,
    ) -> Result<(), StoreError> {
        // One per meal (the last wins): a transaction touches an item once.
        let mut by_meal: HashMap<Uuid, StoredMealResponse> = HashMap::new();
        for r in responses.into_iter().filter(|r| r.user_id == *user) {
            by_meal.insert(r.meal_id, r);
        }
        let rows: Vec<StoredMealResponse> = by_meal.into_values().collect();
        let table = self.tables().aux.clone();
        for chunk in rows.chunks(PUT_BATCH) {
            let mut items = Vec::with_capacity(chunk.len() * 2);
            for r in chunk {
                items.extend(put_items(&table, r)?);
            }
            if self
                .transact("TransactWriteItems meal responses", items)
                .await?
            {
                continue;
            }
            // Cancelled: a meal is gone or a writer conflicted; one by one.
            for r in chunk {
                self.put_meal_response(r).await?;
            }
        }
        Ok(())
    }
}

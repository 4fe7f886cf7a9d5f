//! The DynamoDB outbox: event items in the aux table, put in the same
//! `TransactWriteItems` as the change they describe, read oldest first through
//! the `gsi1` index (one fixed partition, `OUTBOX`, ordered by a time-ordered
//! key), claimed by conditional updates and deleted once published.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::{Put, Select, TransactWriteItem};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::item::{is_condition_failed, ms, s, sdk_error, Fields, Item};
use super::schema::GSI1;
use super::DynamoStore;
use crate::records::events::{Event, Message};
use crate::store::OutboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

const PARTITION: &str = "OUTBOX";

/// Orders events appended by this process within one millisecond (in append
/// order, so a batch's events keep the batch's order).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn key(id: Uuid) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("OUTBOX#{id}"))),
        ("sk".to_owned(), s("-")),
    ])
}

/// The transaction item that appends `event` to the outbox table `table`.
pub(super) fn append(table: &str, event: &Event) -> Result<TransactWriteItem, StoreError> {
    let m = event.to_message();
    let order = format!(
        "{:015}#{:012}#{}",
        Utc::now().timestamp_millis().max(0),
        SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000_000_000,
        m.id
    );
    let mut item = key(m.id);
    item.insert("event_id".into(), s(m.id.to_string()));
    item.insert("routing_key".into(), s(m.routing_key));
    item.insert("payload".into(), s(m.payload));
    item.insert("created_at_ms".into(), ms(m.created_at));
    item.insert("gsi1pk".into(), s(PARTITION));
    item.insert("gsi1sk".into(), s(order));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::Internal(format!("outbox put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn message(item: &Item) -> Result<Message, StoreError> {
    let f = Fields::new(item, "outbox event");
    Ok(Message::stored(
        f.uuid("event_id")?,
        f.s("routing_key")?.to_owned(),
        f.s("payload")?.to_owned(),
        f.time("created_at_ms")?,
    ))
}

impl DynamoStore {
    /// Counts the items of one partition of an aux index, page by page.
    pub(super) async fn count_index(
        &self,
        index: &str,
        attribute: &str,
        partition: &str,
    ) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .index_name(index)
                .key_condition_expression("#k = :p")
                .expression_attribute_names("#k", attribute)
                .expression_attribute_values(":p", s(partition))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query count", e))?;
            total += u64::try_from(page.count()).unwrap_or(0);
            match page.last_evaluated_key() {
                Some(last) => start = Some(last.clone()),
                None => return Ok(total),
            }
        }
    }
}

#[async_trait]
impl OutboxStore for DynamoStore {
    fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.inner.outbox_written
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let claimable = "attribute_not_exists(claimed_until_ms) OR claimed_until_ms < :now \
                         OR claimed_by = :owner";
        let mut claimed = Vec::new();
        let mut start: Option<Item> = None;
        while claimed.len() < limit {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .filter_expression(claimable)
                .expression_attribute_values(":p", s(PARTITION))
                .expression_attribute_values(":now", ms(now))
                .expression_attribute_values(":owner", s(owner))
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(limit.max(25)).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| sdk_error("Query outbox", e))?;
            for candidate in page.items() {
                if claimed.len() >= limit {
                    break;
                }
                let m = message(candidate)?;
                // The index is eventually consistent: the claim re-checks on the item.
                let update = self
                    .client()
                    .update_item()
                    .table_name(&self.tables().aux)
                    .set_key(Some(key(m.id)))
                    .update_expression("SET claimed_by = :owner, claimed_until_ms = :until")
                    .condition_expression(format!("attribute_exists(pk) AND ({claimable})"))
                    .expression_attribute_values(":now", ms(now))
                    .expression_attribute_values(":owner", s(owner))
                    .expression_attribute_values(":until", ms(until))
                    .send()
                    .await;
                match update {
                    Ok(_) => claimed.push(m),
                    Err(e) if is_condition_failed(&e) => {}
                    Err(e) => return Err(sdk_error("UpdateItem outbox claim", e)),
                }
            }
            match page.last_evaluated_key() {
                Some(last) => start = Some(last.clone()),
                None => break,
            }
        }
        Ok(claimed)
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for id in ids {
            let out = self
                .client()
                .delete_item()
                .table_name(&self.tables().aux)
                .set_key(Some(key(id)))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| sdk_error("DeleteItem outbox", e))?;
            if out.attributes().is_some_and(|a| !a.is_empty()) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.count_index(GSI1, "gsi1pk", PARTITION).await
    }
}

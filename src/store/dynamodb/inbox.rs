//! The webhook inbox in the aux table: one item per delivery (`INBOX#<id>`)
//! plus one per signature hash (`INBOXSIG#<hash>`) that makes replays find the
//! first delivery; unfinished deliveries sit in the `gsi1` partition `INBOX`
//! in arrival order (sparse: a delivery leaves it when it ends) and are
//! claimed by conditional updates.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::item::{b, ms, n, s, sdk_error, transact_update, Changes, Condition, Fields, Item};
use super::schema::GSI1;
use super::{backoff, lost_race, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::inbox::{Accepted, Delivery, DeliveryEnd, DeliveryStatus, NewDelivery};
use crate::store::InboxStore;
use crate::store::StoreError;
use async_trait::async_trait;

const PARTITION: &str = "INBOX";

/// Ends recorded per transaction (the limit is 100 items).
const ENDS_PER_TRANSACTION: usize = 100;

fn key(id: Uuid) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("INBOX#{id}"))),
        ("sk".to_owned(), s("-")),
    ])
}

fn signature_key(hash: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("INBOXSIG#{hash}"))),
        ("sk".to_owned(), s("-")),
    ])
}

fn from_item(item: &Item) -> Result<Delivery, StoreError> {
    let f = Fields::new(item, "webhook delivery");
    let status = f.s("status")?;
    Ok(Delivery {
        id: f.uuid("id")?,
        user_id: UserId::parse(f.s("user_id")?).map_err(|e| f.corrupt("user_id", e))?,
        kind: f.s("kind")?.to_owned(),
        body: f.opt_bytes("body")?,
        status: DeliveryStatus::parse(status).ok_or_else(|| f.corrupt("status", status))?,
        attempts: u32::try_from(f.i64("attempts")?).map_err(|e| f.corrupt("attempts", e))?,
        last_error: f.opt_s("last_error")?.map(str::to_owned),
        outcome: f.opt_s("outcome")?.map(str::to_owned),
        received_at: f.time("received_at_ms")?,
        processed_at: f.opt_time("processed_at_ms")?,
    })
}

fn claimable(now: DateTime<Utc>) -> Condition {
    Condition::new(
        "#cs IN (:queued, :processing) AND next_attempt_at_ms <= :cnow \
         AND (attribute_not_exists(claimed_until_ms) OR claimed_until_ms <= :cnow)",
    )
    .name("#cs", "status")
    .value(":queued", s(DeliveryStatus::Queued.as_str()))
    .value(":processing", s(DeliveryStatus::Processing.as_str()))
    .value(":cnow", ms(now))
}

impl DynamoStore {
    /// Records the ends of one chunk in one transaction, for the deliveries
    /// `owner` still holds (read first; the writes are conditional on it).
    async fn finish_chunk(
        &self,
        owner: &str,
        ends: &[(Uuid, DeliveryEnd)],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let table = &self.tables().aux;
        for attempt in 0..RACE_ATTEMPTS {
            let mut items = Vec::new();
            // One transaction cannot touch an item twice; a repeated id's first
            // end is the one that can still hold the claim.
            let mut seen = std::collections::HashSet::new();
            for (id, end) in ends {
                if !seen.insert(*id) {
                    continue;
                }
                let Some(item) = self.get(table, key(*id)).await? else {
                    continue;
                };
                let f = Fields::new(&item, "webhook delivery");
                if f.opt_s("claimed_by")? != Some(owner)
                    || f.s("status")? != DeliveryStatus::Processing.as_str()
                {
                    continue;
                }
                let held = Condition::new("claimed_by = :cowner AND #cs = :cproc")
                    .name("#cs", "status")
                    .value(":cowner", s(owner))
                    .value(":cproc", s(DeliveryStatus::Processing.as_str()));
                items.push(transact_update(table, key(*id), changes(end, now), held)?);
            }
            let count = items.len();
            if count == 0
                || self
                    .transact("TransactWriteItems finish deliveries", items)
                    .await?
            {
                return Ok(count);
            }
            backoff(attempt).await;
        }
        Err(lost_race("finish_deliveries"))
    }
}

#[async_trait]
impl InboxStore for DynamoStore {
    async fn put_delivery(&self, d: NewDelivery) -> Result<Accepted, StoreError> {
        let table = &self.tables().aux;
        for attempt in 0..RACE_ATTEMPTS {
            let mut item = key(d.id);
            item.insert("id".into(), s(d.id.to_string()));
            item.insert("user_id".into(), s(d.user_id.as_str()));
            item.insert("signature_hash".into(), s(d.signature_hash.clone()));
            item.insert("kind".into(), s(d.kind.clone()));
            item.insert("body".into(), b(d.body.clone()));
            item.insert("status".into(), s(DeliveryStatus::Queued.as_str()));
            item.insert("attempts".into(), n(0));
            item.insert("next_attempt_at_ms".into(), ms(d.received_at));
            item.insert("received_at_ms".into(), ms(d.received_at));
            item.insert("gsi1pk".into(), s(PARTITION));
            item.insert(
                "gsi1sk".into(),
                s(format!(
                    "{:015}#{}",
                    d.received_at.timestamp_millis().max(0),
                    d.id
                )),
            );
            let mut signature = signature_key(&d.signature_hash);
            signature.insert("delivery_id".into(), s(d.id.to_string()));
            let puts = [
                (signature, "attribute_not_exists(pk)"),
                (item, "attribute_not_exists(pk)"),
            ];
            let mut items = Vec::with_capacity(2);
            for (item, condition) in puts {
                let put = Put::builder()
                    .table_name(table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .build()
                    .map_err(|e| StoreError::Internal(format!("delivery put: {e}")))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            if self.transact("TransactWriteItems delivery", items).await? {
                return Ok(Accepted::New(d.id));
            }
            if let Some(first) = self.get(table, signature_key(&d.signature_hash)).await? {
                let id = Fields::new(&first, "webhook signature").uuid("delivery_id")?;
                return Ok(Accepted::Replay(id));
            }
            backoff(attempt).await;
        }
        Err(lost_race("put_delivery"))
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut claimed = Vec::new();
        let mut start: Option<Item> = None;
        while claimed.len() < limit {
            let due = claimable(now);
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .filter_expression(due.text)
                .set_expression_attribute_names(Some(due.names))
                .set_expression_attribute_values(Some(due.values))
                .expression_attribute_values(":p", s(PARTITION))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query inbox", e))?;
            for candidate in page.items() {
                if claimed.len() >= limit {
                    break;
                }
                let f = Fields::new(candidate, "webhook delivery");
                let id = f.uuid("id")?;
                let attempts = f.i64("attempts")?;
                let taken = self
                    .update_if(
                        &self.tables().aux,
                        key(id),
                        Changes::default()
                            .set("status", s(DeliveryStatus::Processing.as_str()))
                            .set("claimed_by", s(owner))
                            .set("claimed_until_ms", ms(until))
                            .set("attempts", n(attempts + 1)),
                        {
                            let c = claimable(now);
                            Condition {
                                text: format!("({}) AND attempts = :catt", c.text),
                                ..c
                            }
                            .value(":catt", n(attempts))
                        },
                    )
                    .await?;
                if let Some(item) = taken {
                    claimed.push(from_item(&item)?);
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok(claimed)
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut recorded = 0;
        for chunk in ends.chunks(ENDS_PER_TRANSACTION) {
            recorded += self.finish_chunk(owner, chunk, now).await?;
        }
        Ok(recorded)
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.get(&self.tables().aux, key(delivery))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        self.count_index(GSI1, "gsi1pk", PARTITION).await
    }
}

/// What one end writes; ended deliveries leave the `gsi1` partition.
fn changes(end: &DeliveryEnd, now: DateTime<Utc>) -> Changes {
    let unclaim = |c: Changes| c.remove("claimed_by").remove("claimed_until_ms");
    let finished = |c: Changes, status: DeliveryStatus| {
        unclaim(c)
            .set("status", s(status.as_str()))
            .set("processed_at_ms", ms(now))
            .remove("gsi1pk")
            .remove("gsi1sk")
    };
    match end {
        DeliveryEnd::Done { outcome } => finished(Changes::default(), DeliveryStatus::Done)
            .remove("body")
            .set("outcome", s(outcome.clone()))
            .remove("last_error"),
        DeliveryEnd::Ignored { reason } => finished(Changes::default(), DeliveryStatus::Ignored)
            .remove("body")
            .set("outcome", s(reason.clone())),
        DeliveryEnd::Retry { not_before, error } => unclaim(Changes::default())
            .set("status", s(DeliveryStatus::Queued.as_str()))
            .set("next_attempt_at_ms", ms(*not_before))
            .set("last_error", s(error.clone())),
        DeliveryEnd::Failed { error } => {
            finished(Changes::default(), DeliveryStatus::Failed).set("last_error", s(error.clone()))
        }
    }
}

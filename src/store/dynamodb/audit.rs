//! The audit trail in the aux table: each appended batch is one or a few items
//! in the partition `AUDIT`, keyed by a block number taken from a counter item
//! (`AUDITSEQ`), holding up to `PER_ITEM` entries; an entry's position is
//! `block << 16 | index`. A batch of up to `PER_ITEM * 100` entries is one
//! transaction, so an append is atomic.

use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::item::{n, s, sdk_error, Fields, Item};
use super::DynamoStore;
use crate::domain::UserId;
use crate::records::audit::Action;
use crate::records::audit::{AuditBatch, AuditEntry, AuditQuery, AuditRecord};
use crate::records::roles::Role;
use crate::store::AuditStore;
use crate::store::StoreError;
use async_trait::async_trait;

const PARTITION: &str = "AUDIT";
/// Entries per item: well under DynamoDB's 400 KB item limit.
const PER_ITEM: usize = 500;
const INDEX_BITS: u32 = 16;
/// Items per transaction.
const ITEMS_PER_TRANSACTION: usize = 100;

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    at_ms: i64,
    actor: String,
    roles: Vec<String>,
    action: String,
    target: String,
    allowed: bool,
    status: u16,
    request_id: String,
}

fn block_key(block: i64) -> Item {
    Item::from([
        ("pk".to_owned(), s(PARTITION)),
        ("sk".to_owned(), s(format!("{block:019}"))),
    ])
}

fn action_name(raw: &str) -> Result<&'static str, StoreError> {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .find(|a| *a == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {raw:?}")))
}

fn to_stored(e: &AuditEntry) -> StoredEntry {
    StoredEntry {
        at_ms: e.at.timestamp_millis(),
        actor: e.actor.as_str().to_owned(),
        roles: e
            .actor_roles
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        action: e.action.to_owned(),
        target: e.target_user.as_str().to_owned(),
        allowed: e.decision == "allowed",
        status: e.status,
        request_id: e.request_id.clone(),
    }
}

fn from_stored(e: StoredEntry) -> Result<AuditEntry, StoreError> {
    let user = |raw: &str| {
        UserId::parse(raw).map_err(|err| StoreError::Corrupt(format!("audit user id: {err}")))
    };
    Ok(AuditEntry {
        at: Utc
            .timestamp_millis_opt(e.at_ms)
            .single()
            .ok_or_else(|| StoreError::Corrupt("audit time".into()))?,
        actor: user(&e.actor)?,
        actor_roles: e.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        action: action_name(&e.action)?,
        target_user: user(&e.target)?,
        decision: if e.allowed { "allowed" } else { "denied" },
        status: e.status,
        request_id: e.request_id,
    })
}

impl DynamoStore {
    /// Reserves `count` consecutive block numbers; returns the first.
    async fn reserve_blocks(&self, count: usize) -> Result<i64, StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(&self.tables().aux)
            .key("pk", s("AUDITSEQ"))
            .key("sk", s("-"))
            .update_expression("ADD next_block :k")
            .expression_attribute_values(":k", n(count))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem audit counter", e))?;
        let empty = Item::new();
        let attributes = out.attributes().unwrap_or(&empty);
        let next = Fields::new(attributes, "audit counter").i64("next_block")?;
        Ok(next - i64::try_from(count).unwrap_or(0) + 1)
    }
}

#[async_trait]
impl AuditStore for DynamoStore {
    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let chunks: Vec<&[AuditEntry]> = entries.chunks(PER_ITEM).collect();
        let first = self.reserve_blocks(chunks.len()).await?;
        let mut items = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let stored: Vec<StoredEntry> = chunk.iter().map(to_stored).collect();
            let json = serde_json::to_string(&stored)
                .map_err(|e| StoreError::Internal(format!("encoding audit entries: {e}")))?;
            let mut item = block_key(first + i as i64);
            item.insert("entries".into(), s(json));
            let put = Put::builder()
                .table_name(&self.tables().aux)
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::Internal(format!("audit put: {e}")))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for group in items.chunks(ITEMS_PER_TRANSACTION) {
            // Block numbers are fresh, so nothing can conflict but a transient error.
            if !self
                .transact("TransactWriteItems audit", group.to_vec())
                .await?
            {
                return Err(StoreError::Unavailable(
                    "dynamodb cancelled an audit append".into(),
                ));
            }
        }
        Ok(())
    }

    async fn query_audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let after = q.after_seq.unwrap_or(-1);
        let from = q.from.map_or(i64::MIN, |t| t.timestamp_millis());
        let until = q.until.map_or(i64::MAX, |t| t.timestamp_millis());
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < q.limit {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .key_condition_expression("pk = :p AND sk >= :first")
                .expression_attribute_values(":p", s(PARTITION))
                .expression_attribute_values(
                    ":first",
                    s(format!("{:019}", after.max(0) >> INDEX_BITS)),
                )
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query audit", e))?;
            for item in page.items() {
                let f = Fields::new(item, "audit block");
                let block: i64 = f.s("sk")?.parse().map_err(|e| f.corrupt("sk", e))?;
                let entries: Vec<StoredEntry> =
                    serde_json::from_str(f.s("entries")?).map_err(|e| f.corrupt("entries", e))?;
                for (i, stored) in entries.into_iter().enumerate() {
                    if out.len() >= q.limit {
                        break;
                    }
                    let seq = (block << INDEX_BITS) | i as i64;
                    if seq <= after || !(from..until).contains(&stored.at_ms) {
                        continue;
                    }
                    if q.target_user
                        .as_ref()
                        .is_some_and(|u| u.as_str() != stored.target)
                    {
                        continue;
                    }
                    out.push(AuditRecord {
                        seq,
                        entry: from_stored(stored)?,
                    });
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}

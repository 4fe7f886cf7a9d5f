//! The journal in the aux table, one partition per (user, kind), pk
//! `JOURNAL#<user>#<kind>`, holding for each entry:
//! - sk `I#<id>`: the entry, for reads by id (with `rev`, bumped by each update);
//! - sk `T#<at ms, 15 digits>#<id>`: the same entry, for listing by time (a
//!   Query over a key range, consistent, newest or oldest first);
//! - sk `X#<source>#<external_id>` (entries with an external id): the marker
//!   that makes uploads idempotent, naming the entry's id;
//! - sk `R#<id>` (meals): the meal's stored response (`meal_responses.rs`),
//!   deleted in the transaction that deletes the meal.
//!
//! Every write is one `TransactWriteItems` of these items and its outbox
//! event, conditional on what was read (`attribute_not_exists` for new items,
//! `rev` for replacements), so concurrent writers never leave the copies
//! apart. A batch is one transaction per `JOURNAL_BATCH_ATOMIC` entries.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::item::{ms, n, put_opt, s, sdk_error, Fields, Item};
use super::{backoff, lost_race, outbox, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::events::{Event, JournalChangeKind};
use crate::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use crate::store::{JournalStore, StoreError, JOURNAL_BATCH_ATOMIC};

fn pk(user: &str, kind: JournalKind) -> String {
    format!("JOURNAL#{user}#{}", kind.as_str())
}

fn time_sk(at: DateTime<Utc>, id: Uuid) -> String {
    format!("T#{:015}#{id}", at.timestamp_millis().max(0))
}

fn time_bound(at: DateTime<Utc>) -> String {
    format!("T#{:015}", at.timestamp_millis().max(0))
}

fn key(pk: String, sk: String) -> Item {
    Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn id_key(user: &str, kind: JournalKind, id: Uuid) -> Item {
    key(pk(user, kind), format!("I#{id}"))
}

/// The key of a meal's stored response (`meal_responses.rs`), beside the meal.
pub(super) fn response_key(user: &str, meal: Uuid) -> Item {
    key(pk(user, JournalKind::Meal), format!("R#{meal}"))
}

fn marker_key(entry: &JournalEntry, external_id: &str) -> Item {
    key(
        pk(entry.user_id.as_str(), entry.kind()),
        format!("X#{}#{external_id}", entry.source),
    )
}

fn to_item(entry: &JournalEntry, sk: String, rev: u64) -> Result<Item, StoreError> {
    let body = serde_json::to_string(&entry.body.to_json())
        .map_err(|e| StoreError::Internal(format!("journal body: {e}")))?;
    let mut item = key(pk(entry.user_id.as_str(), entry.kind()), sk);
    item.insert("id".into(), s(entry.id.to_string()));
    item.insert("user_id".into(), s(entry.user_id.as_str()));
    item.insert("kind".into(), s(entry.kind().as_str()));
    item.insert("at_ms".into(), ms(entry.at()));
    item.insert("source".into(), s(&entry.source));
    put_opt(
        &mut item,
        "external_id",
        entry.external_id.as_deref().map(s),
    );
    item.insert("created_at_ms".into(), ms(entry.created_at));
    item.insert("updated_at_ms".into(), ms(entry.updated_at));
    item.insert("body".into(), s(body));
    item.insert("rev".into(), n(rev));
    Ok(item)
}

fn from_item(item: &Item) -> Result<(JournalEntry, u64), StoreError> {
    let f = Fields::new(item, "journal entry");
    let kind = f.s("kind")?;
    let kind = JournalKind::parse(kind).ok_or_else(|| f.corrupt("kind", kind))?;
    let user = f.s("user_id")?;
    let entry = JournalEntry {
        id: f.uuid("id")?,
        user_id: UserId::parse(user).map_err(|e| f.corrupt("user_id", e))?,
        source: f.s("source")?.to_owned(),
        external_id: f.opt_s("external_id")?.map(str::to_owned),
        created_at: f.time("created_at_ms")?,
        updated_at: f.time("updated_at_ms")?,
        body: JournalBody::from_json(kind, f.s("body")?).map_err(|e| f.corrupt("body", e))?,
    };
    Ok((entry, f.u64("rev")?))
}

fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .build()
        .map_err(|e| StoreError::Internal(format!("journal put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn delete(table: &str, key: Item) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(|e| StoreError::Internal(format!("journal delete: {e}")))?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// The transaction items that create `entry`: new id, new marker.
fn create_items(table: &str, entry: &JournalEntry) -> Result<Vec<TransactWriteItem>, StoreError> {
    let new = Some("attribute_not_exists(pk)");
    let mut items = vec![
        put(table, to_item(entry, format!("I#{}", entry.id), 0)?, new)?,
        put(
            table,
            to_item(entry, time_sk(entry.at(), entry.id), 0)?,
            new,
        )?,
    ];
    if let Some(external_id) = &entry.external_id {
        let mut marker = marker_key(entry, external_id);
        marker.insert("entry_id".into(), s(entry.id.to_string()));
        items.push(put(table, marker, new)?);
    }
    items.push(outbox::append(
        table,
        &Event::journal_changed(entry, JournalChangeKind::Created),
    )?);
    Ok(items)
}

impl DynamoStore {
    /// The entry an external-id marker of `entry`'s key names, if any.
    async fn journal_by_marker(
        &self,
        entry: &JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let Some(external_id) = &entry.external_id else {
            return Ok(None);
        };
        let table = &self.tables().aux;
        let Some(marker) = self.get(table, marker_key(entry, external_id)).await? else {
            return Ok(None);
        };
        let id = Fields::new(&marker, "journal marker").uuid("entry_id")?;
        self.get_journal_entry(&entry.user_id, entry.kind(), id)
            .await
    }

    async fn journal_with_rev(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<Option<(JournalEntry, u64)>, StoreError> {
        self.get(&self.tables().aux, id_key(user.as_str(), kind, id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    /// Stores one chunk (at most `JOURNAL_BATCH_ATOMIC` entries, no two with
    /// one key) in one transaction: the result of each, in order. Entries
    /// whose marker another writer put meanwhile become `Existing` and the
    /// rest is tried again.
    async fn create_journal_chunk(
        &self,
        chunk: Vec<JournalEntry>,
    ) -> Result<Vec<JournalCreated>, StoreError> {
        let table = self.tables().aux.clone();
        let mut results: Vec<Option<JournalCreated>> = vec![None; chunk.len()];
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // Which keys are stored already.
            for (i, entry) in chunk.iter().enumerate() {
                if results[i].is_none() {
                    if let Some(existing) = self.journal_by_marker(entry).await? {
                        results[i] = Some(JournalCreated::Existing(existing));
                    }
                }
            }
            let mut items = Vec::new();
            for (i, entry) in chunk.iter().enumerate() {
                if results[i].is_none() {
                    items.extend(create_items(&table, entry)?);
                }
            }
            if items.is_empty()
                || self
                    .transact("TransactWriteItems journal create", items)
                    .await?
            {
                self.wrote_outbox();
                return Ok(chunk
                    .into_iter()
                    .zip(results)
                    .map(|(entry, r)| r.unwrap_or(JournalCreated::Created(entry)))
                    .collect());
            }
            // Cancelled: a marker appeared (the next round sees it), an id is
            // taken (an error), or another transaction conflicted (retry).
            for (i, entry) in chunk.iter().enumerate() {
                if results[i].is_none()
                    && self.journal_by_marker(entry).await?.is_none()
                    && self
                        .journal_with_rev(&entry.user_id, entry.kind(), entry.id)
                        .await?
                        .is_some()
                {
                    return Err(StoreError::Internal(format!(
                        "journal entry id {} is stored already",
                        entry.id
                    )));
                }
            }
        }
        Err(lost_race("creating journal entries"))
    }
}

#[async_trait]
impl JournalStore for DynamoStore {
    async fn create_journal_entry(
        &self,
        entry: JournalEntry,
    ) -> Result<JournalCreated, StoreError> {
        let mut created = self.create_journal_entries(vec![entry]).await?;
        created
            .pop()
            .ok_or_else(|| StoreError::Internal("journal create returned nothing".into()))
    }

    async fn create_journal_entries(
        &self,
        entries: Vec<JournalEntry>,
    ) -> Result<Vec<JournalCreated>, StoreError> {
        // A key an earlier entry of the batch has: that entry (as stored, or
        // as it will be).
        let mut first_of_key = std::collections::HashMap::new();
        let mut repeats = Vec::new();
        let mut fresh = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let key = entry
                .external_id
                .clone()
                .map(|x| (entry.kind(), entry.source.clone(), x));
            match key.as_ref().and_then(|k| first_of_key.get(k)) {
                Some(&first) => repeats.push((i, first)),
                None => {
                    if let Some(k) = key {
                        first_of_key.insert(k, i);
                    }
                    fresh.push((i, entry));
                }
            }
        }
        let total = fresh.len() + repeats.len();
        let mut out: Vec<Option<JournalCreated>> = vec![None; total];
        let mut fresh = fresh.into_iter().peekable();
        while fresh.peek().is_some() {
            let chunk: Vec<(usize, JournalEntry)> =
                fresh.by_ref().take(JOURNAL_BATCH_ATOMIC).collect();
            let (indexes, chunk): (Vec<usize>, Vec<JournalEntry>) = chunk.into_iter().unzip();
            for (i, created) in indexes
                .into_iter()
                .zip(self.create_journal_chunk(chunk).await?)
            {
                out[i] = Some(created);
            }
        }
        for (i, first) in repeats {
            let entry = out[first]
                .as_ref()
                .map(|c| c.entry().clone())
                .ok_or_else(|| StoreError::Internal("journal batch lost an entry".into()))?;
            out[i] = Some(JournalCreated::Existing(entry));
        }
        out.into_iter()
            .map(|c| c.ok_or_else(|| StoreError::Internal("journal batch lost an entry".into())))
            .collect()
    }

    async fn get_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<Option<JournalEntry>, StoreError> {
        Ok(self.journal_with_rev(user, kind, id).await?.map(|(e, _)| e))
    }

    async fn list_journal_entries(
        &self,
        query: JournalQuery,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let mut lo = query.from.map_or_else(|| "T#".to_owned(), time_bound);
        let mut hi = query.until.map_or_else(|| "T$".to_owned(), time_bound);
        // The cursor's own item is inside the (inclusive) range: skipped below.
        let after = query.after.map(|(at, id)| time_sk(at, id));
        if let Some(after) = &after {
            if query.descending {
                hi = hi.min(after.clone());
            } else {
                lo = lo.max(after.clone());
            }
        }
        let mut out = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .key_condition_expression("pk = :p AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":p", s(pk(query.user_id.as_str(), query.kind)))
                .expression_attribute_values(":lo", s(lo.clone()))
                .expression_attribute_values(":hi", s(hi.clone()))
                .scan_index_forward(!query.descending)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(query.limit.clamp(1, 1000) + 1).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| sdk_error("Query journal", e))?;
            for item in page.items() {
                let sk = Fields::new(item, "journal entry").s("sk")?;
                if after.as_deref() == Some(sk) {
                    continue;
                }
                out.push(from_item(item)?.0);
                if out.len() >= query.limit {
                    return Ok(out);
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn update_journal_entry(
        &self,
        next: JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let table = self.tables().aux.clone();
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((stored, rev)) = self
                .journal_with_rev(&next.user_id, next.kind(), next.id)
                .await?
            else {
                return Ok(None);
            };
            let entry = stored.replaced(next.body.clone(), next.updated_at);
            let replace = Put::builder()
                .table_name(&table)
                .set_item(Some(to_item(&entry, format!("I#{}", entry.id), rev + 1)?))
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", "rev")
                .expression_attribute_values(":rev", n(rev))
                .build()
                .map_err(|e| StoreError::Internal(format!("journal put: {e}")))?;
            let mut items = vec![TransactWriteItem::builder().put(replace).build()];
            let old_sk = time_sk(stored.at(), stored.id);
            let new_sk = time_sk(entry.at(), entry.id);
            if old_sk != new_sk {
                items.push(delete(
                    &table,
                    key(pk(entry.user_id.as_str(), entry.kind()), old_sk),
                )?);
            }
            items.push(put(&table, to_item(&entry, new_sk, rev + 1)?, None)?);
            items.push(outbox::append(
                &table,
                &Event::journal_changed(&entry, JournalChangeKind::Updated),
            )?);
            if self
                .transact("TransactWriteItems journal update", items)
                .await?
            {
                self.wrote_outbox();
                return Ok(Some(entry));
            }
        }
        Err(lost_race("updating a journal entry"))
    }

    async fn delete_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let table = self.tables().aux.clone();
        for attempt in 0..RACE_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((stored, rev)) = self.journal_with_rev(user, kind, id).await? else {
                return Ok(false);
            };
            let remove = Delete::builder()
                .table_name(&table)
                .set_key(Some(id_key(user.as_str(), kind, id)))
                .condition_expression("#rev = :rev")
                .expression_attribute_names("#rev", "rev")
                .expression_attribute_values(":rev", n(rev))
                .build()
                .map_err(|e| StoreError::Internal(format!("journal delete: {e}")))?;
            let mut items = vec![
                TransactWriteItem::builder().delete(remove).build(),
                delete(
                    &table,
                    key(pk(user.as_str(), kind), time_sk(stored.at(), stored.id)),
                )?,
            ];
            if let Some(external_id) = &stored.external_id {
                items.push(delete(&table, marker_key(&stored, external_id))?);
            }
            if kind == JournalKind::Meal {
                items.push(delete(&table, response_key(user.as_str(), id))?);
            }
            items.push(outbox::append(
                &table,
                &Event::journal_changed(&stored, JournalChangeKind::Deleted),
            )?);
            if self
                .transact("TransactWriteItems journal delete", items)
                .await?
            {
                self.wrote_outbox();
                return Ok(true);
            }
        }
        Err(lost_race("deleting a journal entry"))
    }
}

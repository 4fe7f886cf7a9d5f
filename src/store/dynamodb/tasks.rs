//! The general task queue in the aux table: one item per task (`TASK#<id>`),
//! one per idempotency key (`TASKIDEM#<kind>` / key) that makes a second create
//! find the first task, and one lease per concurrency key (`TASKKEY#<key>`)
//! naming the task that runs under it until when. Open tasks sit in the `gsi1`
//! partition `TASKS#<kind>` in claim order (sparse: a task leaves it when it
//! ends). Every change is conditional on the item's `rev` or on the lease
//! owner, and a claim of a keyed task takes the key's lease and the task in one
//! transaction, so two claimers never both win. See docs/dynamodb.md.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::item::{
    ms, n, put_opt, s, sdk_error, transact_update, Changes, Condition, Fields, Item,
};
use super::schema::GSI1;
use super::{backoff, lost_race, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd, TaskId, TaskStatus};
use crate::store::{StoreError, TaskStore};

/// Due tasks of one kind looked at per claim (the index is read in claim
/// order, so these are the most urgent ones).
const CLAIM_CANDIDATES: usize = 100;

fn key(id: TaskId) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("TASK#{id}"))),
        ("sk".to_owned(), s("-")),
    ])
}

fn idempotency_key(kind: &str, key: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("TASKIDEM#{kind}"))),
        ("sk".to_owned(), s(key)),
    ])
}

fn concurrency_lease(key: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("TASKKEY#{key}"))),
        ("sk".to_owned(), s("-")),
    ])
}

fn partition(kind: &str) -> String {
    format!("TASKS#{kind}")
}

/// Claim order: priority (shifted so that negative ones sort first), then
/// age, then id.
fn sort_key(priority: i16, created_at: DateTime<Utc>, id: TaskId) -> String {
    format!(
        "{:05}#{:015}#{id}",
        i32::from(priority) + 32768,
        created_at.timestamp_millis().max(0)
    )
}

fn errors_json(errors: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(errors).map_err(|e| StoreError::Internal(format!("task errors: {e}")))
}

/// A task as read, with the revision its next change is conditional on.
struct Stored {
    task: Task,
    rev: i64,
}

fn from_item(item: &Item) -> Result<Stored, StoreError> {
    let f = Fields::new(item, "task");
    let status = f.s("status")?;
    let task = Task {
        id: TaskId(f.uuid("id")?),
        kind: f.s("kind")?.to_owned(),
        user_id: f
            .opt_s("user_id")?
            .map(|u| UserId::parse(u).map_err(|e| f.corrupt("user_id", e)))
            .transpose()?,
        payload: serde_json::from_str(f.s("payload")?).map_err(|e| f.corrupt("payload", e))?,
        priority: i16::try_from(f.i64("priority")?).map_err(|e| f.corrupt("priority", e))?,
        status: TaskStatus::parse(status).ok_or_else(|| f.corrupt("status", status))?,
        attempts: u32::try_from(f.i64("attempts")?).map_err(|e| f.corrupt("attempts", e))?,
        errors: serde_json::from_str(f.s("errors")?).map_err(|e| f.corrupt("errors", e))?,
        idempotency_key: f.opt_s("idempotency_key")?.map(str::to_owned),
        concurrency_key: f.opt_s("concurrency_key")?.map(str::to_owned),
        not_before: f.time("not_before_ms")?,
        created_at: f.time("created_at_ms")?,
        started_at: f.opt_time("started_at_ms")?,
        finished_at: f.opt_time("finished_at_ms")?,
        updated_at: f.time("updated_at_ms")?,
        lease_owner: f.opt_s("lease_owner")?.map(str::to_owned),
        lease_until: f.opt_time("lease_until_ms")?,
    };
    Ok(Stored {
        task,
        rev: f.i64("rev")?,
    })
}

fn new_item(t: &NewTask) -> Result<Item, StoreError> {
    let mut item = key(t.id);
    item.insert("id".into(), s(t.id.to_string()));
    item.insert("kind".into(), s(t.kind.clone()));
    put_opt(
        &mut item,
        "user_id",
        t.user_id.as_ref().map(|u| s(u.as_str())),
    );
    let payload = serde_json::to_string(&t.payload)
        .map_err(|e| StoreError::Internal(format!("task payload: {e}")))?;
    item.insert("payload".into(), s(payload));
    item.insert("priority".into(), n(t.priority));
    item.insert("status".into(), s(TaskStatus::Queued.as_str()));
    item.insert("attempts".into(), n(0));
    item.insert("errors".into(), s("[]"));
    put_opt(
        &mut item,
        "idempotency_key",
        t.idempotency_key.clone().map(s),
    );
    put_opt(
        &mut item,
        "concurrency_key",
        t.concurrency_key.clone().map(s),
    );
    item.insert("not_before_ms".into(), ms(t.not_before));
    item.insert("created_at_ms".into(), ms(t.created_at));
    item.insert("updated_at_ms".into(), ms(t.created_at));
    item.insert("rev".into(), n(0));
    item.insert("gsi1pk".into(), s(partition(&t.kind)));
    item.insert("gsi1sk".into(), s(sort_key(t.priority, t.created_at, t.id)));
    Ok(item)
}

fn put(table: &str, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .build()
        .map_err(|e| StoreError::Internal(format!("task put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Whether `task` may be claimed at `now` (queued and due, or its lease lapsed).
fn claimable(task: &Task, now: DateTime<Utc>) -> bool {
    match task.status {
        TaskStatus::Queued => task.not_before <= now,
        TaskStatus::Running => task.lease_until.is_none_or(|until| until <= now),
        TaskStatus::Succeeded | TaskStatus::Failed => false,
    }
}

fn held_by(owner: &str) -> Condition {
    Condition::new("lease_owner = :cowner AND #cst = :crunning")
        .name("#cst", "status")
        .value(":cowner", s(owner))
        .value(":crunning", s(TaskStatus::Running.as_str()))
}

impl DynamoStore {
    async fn stored_task(&self, id: TaskId) -> Result<Option<Stored>, StoreError> {
        self.get(&self.tables().aux, key(id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    /// Open tasks of `kind` due at `now`, most urgent first (at most `limit`),
    /// as (sort key, id) from the eventually consistent index.
    async fn due_tasks(
        &self,
        kind: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, TaskId)>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().aux)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :p")
                .filter_expression("not_before_ms <= :now")
                .expression_attribute_values(":p", s(partition(kind)))
                .expression_attribute_values(":now", ms(now))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query tasks", e))?;
            for item in page.items() {
                let f = Fields::new(item, "task");
                found.push((f.s("gsi1sk")?.to_owned(), TaskId(f.uuid("id")?)));
                if found.len() >= limit {
                    return Ok(found);
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(found),
            }
        }
    }

    /// Claims one task if it is still claimable and its concurrency key free.
    async fn try_claim_task(
        &self,
        id: TaskId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let table = &self.tables().aux;
        // The index is eventually consistent: decide on the item itself.
        let Some(stored) = self.stored_task(id).await? else {
            return Ok(None);
        };
        let task = &stored.task;
        if !claimable(task, now) {
            return Ok(None);
        }
        let changes = Changes::default()
            .set("status", s(TaskStatus::Running.as_str()))
            .set("attempts", n(task.attempts + 1))
            .set("started_at_ms", ms(task.started_at.unwrap_or(now)))
            .set("updated_at_ms", ms(now))
            .set("lease_owner", s(owner))
            .set("lease_until_ms", ms(until))
            .set("rev", n(stored.rev + 1));
        let unchanged = Condition::new("rev = :crev").value(":crev", n(stored.rev));
        let claimed = match &task.concurrency_key {
            None => self
                .update_if(table, key(id), changes, unchanged)
                .await?
                .is_some(),
            Some(ckey) => {
                let mut lease = concurrency_lease(ckey);
                lease.insert("task_id".into(), s(id.to_string()));
                lease.insert("owner".into(), s(owner));
                lease.insert("until_ms".into(), ms(until));
                let put_lease = Put::builder()
                    .table_name(table)
                    .set_item(Some(lease))
                    .condition_expression(
                        "attribute_not_exists(pk) OR until_ms <= :now OR task_id = :id",
                    )
                    .expression_attribute_values(":now", ms(now))
                    .expression_attribute_values(":id", s(id.to_string()))
                    .build()
                    .map_err(|e| StoreError::Internal(format!("task lease put: {e}")))?;
                let items = vec![
                    TransactWriteItem::builder().put(put_lease).build(),
                    transact_update(table, key(id), changes, unchanged)?,
                ];
                self.transact("TransactWriteItems claim task", items)
                    .await?
            }
        };
        if !claimed {
            // Someone else claimed it, or another task of its key runs.
            return Ok(None);
        }
        Ok(self.stored_task(id).await?.map(|s| s.task))
    }
}

#[async_trait]
impl TaskStore for DynamoStore {
    async fn create_task(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        let table = &self.tables().aux;
        for attempt in 0..RACE_ATTEMPTS {
            let mut items = vec![put(table, new_item(&task)?, "attribute_not_exists(pk)")?];
            if let Some(k) = &task.idempotency_key {
                let mut marker = idempotency_key(&task.kind, k);
                marker.insert("task_id".into(), s(task.id.to_string()));
                items.push(put(table, marker, "attribute_not_exists(pk)")?);
            }
            if self.transact("TransactWriteItems task", items).await? {
                let created = self
                    .stored_task(task.id)
                    .await?
                    .ok_or_else(|| StoreError::Internal("created task not found".into()))?;
                return Ok(Enqueued::New(created.task));
            }
            if let Some(k) = &task.idempotency_key {
                if let Some(marker) = self.get(table, idempotency_key(&task.kind, k)).await? {
                    let first =
                        TaskId(Fields::new(&marker, "task idempotency key").uuid("task_id")?);
                    if let Some(existing) = self.stored_task(first).await? {
                        return Ok(Enqueued::Existing(existing.task));
                    }
                }
            }
            backoff(attempt).await;
        }
        Err(lost_race("create_task"))
    }

    async fn claim_task(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let mut candidates = Vec::new();
        for kind in kinds {
            candidates.extend(self.due_tasks(kind, now, CLAIM_CANDIDATES).await?);
        }
        candidates.sort();
        for (_, id) in candidates {
            if let Some(task) = self.try_claim_task(id, owner, now, until).await? {
                return Ok(Some(task));
            }
        }
        Ok(None)
    }

    async fn renew_task_lease(
        &self,
        id: TaskId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let table = &self.tables().aux;
        let Some(stored) = self.stored_task(id).await? else {
            return Ok(false);
        };
        let renew = Changes::default().set("lease_until_ms", ms(until));
        match &stored.task.concurrency_key {
            None => Ok(self
                .update_if(table, key(id), renew, held_by(owner))
                .await?
                .is_some()),
            Some(ckey) => {
                let items = vec![
                    transact_update(table, key(id), renew, held_by(owner))?,
                    transact_update(
                        table,
                        concurrency_lease(ckey),
                        Changes::default().set("until_ms", ms(until)),
                        Condition::new("task_id = :cid AND #co = :cowner")
                            .name("#co", "owner")
                            .value(":cid", s(id.to_string()))
                            .value(":cowner", s(owner)),
                    )?,
                ];
                self.transact("TransactWriteItems renew task", items).await
            }
        }
    }

    async fn finish_task(
        &self,
        id: TaskId,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        let table = &self.tables().aux;
        let Some(stored) = self.stored_task(id).await? else {
            return Ok(None);
        };
        let task = stored.task;
        if task.lease_owner.as_deref() != Some(owner) || task.status != TaskStatus::Running {
            return Ok(None);
        }
        let mut errors = task.errors.clone();
        let base = Changes::default()
            .set("updated_at_ms", ms(now))
            .set("rev", n(stored.rev + 1))
            .remove("lease_owner")
            .remove("lease_until_ms");
        let changes = match &end {
            TaskEnd::Succeeded => base
                .set("status", s(TaskStatus::Succeeded.as_str()))
                .set("finished_at_ms", ms(now))
                .remove("gsi1pk")
                .remove("gsi1sk"),
            TaskEnd::Failed { error } => {
                errors.push(error.clone());
                base.set("status", s(TaskStatus::Failed.as_str()))
                    .set("finished_at_ms", ms(now))
                    .set("errors", s(errors_json(&errors)?))
                    .remove("gsi1pk")
                    .remove("gsi1sk")
            }
            TaskEnd::Retry { not_before, error } => {
                errors.extend(error.iter().cloned());
                base.set("status", s(TaskStatus::Queued.as_str()))
                    .set("not_before_ms", ms(*not_before))
                    .set("errors", s(errors_json(&errors)?))
            }
        };
        let Some(ended) = self
            .update_if(table, key(id), changes, held_by(owner))
            .await?
        else {
            return Ok(None);
        };
        if let Some(ckey) = &task.concurrency_key {
            // Only this task's lease; one another task took after ours lapsed
            // stays. (Should this fail, the lease lapses at its time.)
            let released = self
                .client()
                .delete_item()
                .table_name(table)
                .set_key(Some(concurrency_lease(ckey)))
                .condition_expression("task_id = :id")
                .expression_attribute_values(":id", s(id.to_string()))
                .send()
                .await;
            if let Err(e) = released {
                if !super::item::is_condition_failed(&e) {
                    return Err(sdk_error("DeleteItem task lease", e));
                }
            }
        }
        Ok(Some(from_item(&ended)?.task))
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.stored_task(id).await?.map(|s| s.task))
    }

    async fn task_backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError> {
        let mut backlog = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let mut due = TaskBacklog::default();
            let mut start: Option<Item> = None;
            loop {
                let page = self
                    .client()
                    .query()
                    .table_name(&self.tables().aux)
                    .index_name(GSI1)
                    .key_condition_expression("gsi1pk = :p")
                    .filter_expression("#st = :queued AND not_before_ms <= :now")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":p", s(partition(kind)))
                    .expression_attribute_values(":queued", s(TaskStatus::Queued.as_str()))
                    .expression_attribute_values(":now", ms(now))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query task backlog", e))?;
                for item in page.items() {
                    let at = Fields::new(item, "task").time("not_before_ms")?;
                    due.due += 1;
                    due.oldest_due = Some(due.oldest_due.map_or(at, |o| o.min(at)));
                }
                match page.last_evaluated_key() {
                    Some(last) if !last.is_empty() => start = Some(last.clone()),
                    _ => break,
                }
            }
            backlog.push((kind.clone(), due));
        }
        Ok(backlog)
    }
}

//! Sync jobs in `sync_jobs` (pk `id`), with the indexes `by_user` (a user's jobs
//! by creation) and `open` (queued and running jobs in claim order; sparse: a
//! job leaves it when it ends). The per-user sync lease, idempotency keys and
//! the connection's high-water mark are conditional writes next to them; a
//! claim takes the lease and marks the job running in one transaction.

use aws_sdk_dynamodb::types::{Put, Select, TransactWriteItem};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::connections;
use super::item::{
    ms, n, put_opt, s, sdk_error, transact_update, Changes, Condition, Fields, Item,
};
use super::schema::{BY_USER, OPEN};
use super::{backoff, lost_race, outbox, DynamoStore, RACE_ATTEMPTS};
use crate::domain::UserId;
use crate::records::connections::Provider;
use crate::records::events::Event;
use crate::records::jobs::SCHEDULED_JOBS_KEPT;
use crate::records::jobs::{
    Checkpoint, Created, JobBacklog, JobCounts, JobEnd, JobStatus, NewJob, SyncJob, TimeRange,
    Trigger,
};
use crate::store::JobStore;
use crate::store::{Admission, StoreError};
use async_trait::async_trait;

/// The single partition of the `open` index.
const OPEN_PARTITION: &str = "open";

fn job_key(id: Uuid) -> Item {
    Item::from([("id".to_owned(), s(id.to_string()))])
}

fn lease_key(user: &str, provider: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("SYNCLEASE#{user}#{provider}"))),
        ("sk".to_owned(), s("-")),
    ])
}

fn idempotency_key(user: &UserId, key: &str) -> Item {
    Item::from([
        ("pk".to_owned(), s(format!("IDEM#{}", user.as_str()))),
        ("sk".to_owned(), s(key)),
    ])
}

/// A range as stored (to the millisecond), for comparing requests.
fn millis(range: Option<TimeRange>) -> Option<(i64, i64)> {
    range.map(|r| (r.start.timestamp_millis(), r.end.timestamp_millis()))
}

/// The marker of a user's newest requested job of one provider and trigger.
fn requested_key(job: &NewJob) -> Item {
    Item::from([
        (
            "pk".to_owned(),
            s(format!("REQJOB#{}", job.user_id.as_str())),
        ),
        (
            "sk".to_owned(),
            s(format!(
                "{}#{}",
                job.provider.as_str(),
                job.trigger.as_str()
            )),
        ),
    ])
}

/// Claim order: priority, then age, then id.
fn open_sort_key(trigger: Trigger, created_at: DateTime<Utc>, id: Uuid) -> String {
    format!(
        "{:04}#{:015}#{id}",
        trigger.priority().clamp(0, 9999),
        created_at.timestamp_millis().max(0)
    )
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("sync job {what}: {e}"))
}

fn range(f: &Fields<'_>, start: &str, end: &str) -> Result<Option<TimeRange>, StoreError> {
    match (f.opt_time(start)?, f.opt_time(end)?) {
        (Some(start), Some(end)) => Ok(Some(TimeRange { start, end })),
        (None, None) => Ok(None),
        _ => Err(corrupt("range", "only one edge stored")),
    }
}

/// A stored job, its revision (every write bumps it) and its request hash.
struct Stored {
    job: SyncJob,
    rev: i64,
    request_hash: Option<String>,
}

fn from_item(item: &Item) -> Result<Stored, StoreError> {
    let f = Fields::new(item, "sync job");
    let provider = f.s("provider")?;
    let trigger = f.s("trigger")?;
    let status = f.s("status")?;
    let job = SyncJob {
        id: f.uuid("id")?,
        user_id: UserId::parse(f.s("user_id")?).map_err(|e| corrupt("user id", e))?,
        provider: Provider::parse(provider).ok_or_else(|| corrupt("provider", provider))?,
        trigger: Trigger::parse(trigger).ok_or_else(|| corrupt("trigger", trigger))?,
        status: JobStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
        requested: range(&f, "requested_start_ms", "requested_end_ms")?,
        resolved: range(&f, "range_start_ms", "range_end_ms")?,
        resume_from: f.opt_time("resume_from_ms")?,
        counts: JobCounts {
            fetched: f.u64("fetched")?,
            inserted: f.u64("inserted")?,
            updated: f.u64("updated")?,
            duplicates: f.u64("duplicates")?,
            rejected: f.u64("rejected")?,
        },
        attempts: u32::try_from(f.i64("attempts")?).map_err(|e| corrupt("attempts", e))?,
        errors: serde_json::from_str(f.s("errors")?).map_err(|e| corrupt("errors", e))?,
        created_at: f.time("created_at_ms")?,
        started_at: f.opt_time("started_at_ms")?,
        finished_at: f.opt_time("finished_at_ms")?,
        updated_at: f.time("updated_at_ms")?,
    };
    Ok(Stored {
        job,
        rev: f.i64("rev")?,
        request_hash: f.opt_s("request_hash")?.map(str::to_owned),
    })
}

fn new_item(job: &NewJob) -> Item {
    let created = job.created_at;
    let mut item = job_key(job.id);
    item.insert("user_id".into(), s(job.user_id.as_str()));
    item.insert("provider".into(), s(job.provider.as_str()));
    item.insert("trigger".into(), s(job.trigger.as_str()));
    item.insert("status".into(), s(JobStatus::Queued.as_str()));
    put_opt(
        &mut item,
        "requested_start_ms",
        job.requested.map(|r| ms(r.start)),
    );
    put_opt(
        &mut item,
        "requested_end_ms",
        job.requested.map(|r| ms(r.end)),
    );
    for count in [
        "fetched",
        "inserted",
        "updated",
        "duplicates",
        "rejected",
        "attempts",
    ] {
        item.insert(count.into(), n(0));
    }
    item.insert("errors".into(), s("[]"));
    if let Some(key) = &job.idempotency {
        item.insert("idempotency_key".into(), s(key.key.clone()));
        item.insert("request_hash".into(), s(key.request_hash.clone()));
    }
    item.insert("not_before_ms".into(), ms(created));
    item.insert("created_at_ms".into(), ms(created));
    item.insert("updated_at_ms".into(), ms(created));
    item.insert("rev".into(), n(0));
    item.insert("open_pk".into(), s(OPEN_PARTITION));
    item.insert(
        "open_sk".into(),
        s(open_sort_key(job.trigger, created, job.id)),
    );
    item
}

fn errors_json(errors: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(errors).map_err(|e| StoreError::Internal(format!("job errors: {e}")))
}

fn count(v: u64) -> aws_sdk_dynamodb::types::AttributeValue {
    n(v)
}

impl DynamoStore {
    async fn stored_job(&self, id: Uuid) -> Result<Option<Stored>, StoreError> {
        self.get(&self.tables().sync_jobs, job_key(id))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    /// The newest requested job of the user with this provider and trigger, as
    /// its marker names it: a request is coalesced with that job while it waits.
    /// (One marker per user, provider and trigger, so they do not pile up.)
    async fn requested_marker(&self, job: &NewJob) -> Result<Option<SyncJob>, StoreError> {
        let Some(item) = self.get(&self.tables().aux, requested_key(job)).await? else {
            return Ok(None);
        };
        let id = Fields::new(&item, "requested job marker").uuid("job_id")?;
        Ok(self.stored_job(id).await?.map(|stored| stored.job))
    }

    /// Points the marker at `job`, only if it still names `replaces` (or, for
    /// None, does not exist): of concurrent identical requests one wins, and the
    /// others find its job when they look again.
    fn marker_put(
        &self,
        job: &NewJob,
        replaces: Option<String>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut marker = requested_key(job);
        marker.insert("job_id".into(), s(job.id.to_string()));
        let put = Put::builder()
            .table_name(&self.tables().aux)
            .set_item(Some(marker));
        let put = match replaces {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(old) => put
                .condition_expression("job_id = :old")
                .expression_attribute_values(":old", s(old)),
        };
        let put = put
            .build()
            .map_err(|e| StoreError::Internal(format!("requested job marker put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// How many queued jobs the user has (any provider and trigger).
    async fn queued_jobs(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut start: Option<Item> = None;
        let mut total = 0u64;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().sync_jobs)
                .index_name(BY_USER)
                .key_condition_expression("user_id = :u")
                .filter_expression("#st = :queued")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":u", s(user.as_str()))
                .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query queued jobs", e))?;
            total += u64::try_from(page.count()).unwrap_or(0);
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(total),
            }
        }
    }

    async fn job_by_idempotency(
        &self,
        user: &UserId,
        key: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let Some(item) = self
            .get(&self.tables().aux, idempotency_key(user, key))
            .await?
        else {
            return Ok(None);
        };
        let id = Fields::new(&item, "idempotency key").uuid("job_id")?;
        self.stored_job(id).await
    }

    /// Whether the user has a job of this provider queued or running, or one of
    /// the same trigger created within `within` before this one.
    async fn has_recent_or_open(
        &self,
        job: &NewJob,
        within: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let since = job.created_at.timestamp_millis() - within.num_milliseconds();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().sync_jobs)
                .index_name(BY_USER)
                .key_condition_expression("user_id = :u")
                .filter_expression(
                    "provider = :p AND (#st IN (:queued, :running) \
                     OR (#tr = :t AND created_at_ms > :since))",
                )
                .expression_attribute_names("#st", "status")
                .expression_attribute_names("#tr", "trigger")
                .expression_attribute_values(":u", s(job.user_id.as_str()))
                .expression_attribute_values(":p", s(job.provider.as_str()))
                .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
                .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
                .expression_attribute_values(":t", s(job.trigger.as_str()))
                .expression_attribute_values(":since", n(since))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query jobs to coalesce", e))?;
            if page.count() > 0 {
                return Ok(true);
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(false),
            }
        }
    }

    /// Whether someone holds the lease at `key` at `now` (absent or lapsed: no).
    async fn lease_held(&self, key: &Item, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(match self.get(&self.tables().aux, key.clone()).await? {
            Some(held) => {
                Fields::new(&held, "sync lease").i64("until_ms")? > now.timestamp_millis()
            }
            None => false,
        })
    }

    /// Claims one job if it is still runnable and its user's lease is free (a
    /// lease taken meanwhile fails the lease put's condition).
    async fn try_claim(
        &self,
        id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        // The index is eventually consistent: decide on the item itself.
        let Some(stored) = self.stored_job(id).await? else {
            return Ok(None);
        };
        let job = &stored.job;
        if !matches!(job.status, JobStatus::Queued | JobStatus::Running) {
            return Ok(None);
        }
        let mut lease_item = lease_key(job.user_id.as_str(), job.provider.as_str());
        lease_item.insert("owner".into(), s(owner));
        lease_item.insert("job_id".into(), s(id.to_string()));
        lease_item.insert("user_id".into(), s(job.user_id.as_str()));
        lease_item.insert("provider".into(), s(job.provider.as_str()));
        lease_item.insert("until_ms".into(), ms(until));
        let put_lease = Put::builder()
            .table_name(&self.tables().aux)
            .set_item(Some(lease_item))
            .condition_expression("attribute_not_exists(pk) OR until_ms <= :now")
            .expression_attribute_values(":now", ms(now))
            .build()
            .map_err(|e| StoreError::Internal(format!("lease put: {e}")))?;
        let changes = Changes::default()
            .set("status", s(JobStatus::Running.as_str()))
            .set("attempts", n(job.attempts + 1))
            .set("started_at_ms", ms(job.started_at.unwrap_or(now)))
            .set("updated_at_ms", ms(now))
            .set("rev", n(stored.rev + 1));
        let items = vec![
            TransactWriteItem::builder().put(put_lease).build(),
            transact_update(
                &self.tables().sync_jobs,
                job_key(id),
                changes,
                Condition::new("rev = :crev").value(":crev", n(stored.rev)),
            )?,
        ];
        if !self.transact("TransactWriteItems claim job", items).await? {
            // Someone else claimed it (or its user) first.
            return Ok(None);
        }
        Ok(self.stored_job(id).await?.map(|s| s.job))
    }

    /// The lease of `job` if `owner` holds it: the job as read, or None.
    async fn held(&self, job: Uuid, owner: &str) -> Result<Option<(Stored, Item)>, StoreError> {
        let Some(stored) = self.stored_job(job).await? else {
            return Ok(None);
        };
        let lease = lease_key(stored.job.user_id.as_str(), stored.job.provider.as_str());
        let Some(item) = self.get(&self.tables().aux, lease.clone()).await? else {
            return Ok(None);
        };
        let f = Fields::new(&item, "sync lease");
        if f.s("owner")? != owner || f.s("job_id")? != job.to_string() {
            return Ok(None);
        }
        Ok(Some((stored, lease)))
    }

    fn lease_condition(job: Uuid, owner: &str) -> Condition {
        Condition::new("#co = :cowner AND job_id = :cjob")
            .name("#co", "owner")
            .value(":cowner", s(owner))
            .value(":cjob", s(job.to_string()))
    }

    fn delete_lease_item(
        &self,
        lease: Item,
        job: Uuid,
        owner: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let condition = Self::lease_condition(job, owner);
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.tables().aux)
            .set_key(Some(lease))
            .condition_expression(condition.text)
            .set_expression_attribute_names(Some(condition.names))
            .set_expression_attribute_values(Some(condition.values))
            .build()
            .map_err(|e| StoreError::Internal(format!("lease delete: {e}")))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Deletes a user's finished scheduled jobs beyond the newest
    /// `SCHEDULED_JOBS_KEPT` scheduled ones.
    async fn prune_scheduled(&self, user: &UserId) -> Result<(), StoreError> {
        let scheduled: Vec<SyncJob> = self
            .jobs_of(user, usize::MAX)
            .await?
            .into_iter()
            .filter(|j| j.trigger == Trigger::Scheduled)
            .collect();
        for old in scheduled.iter().skip(SCHEDULED_JOBS_KEPT) {
            if old.status.is_finished() {
                self.client()
                    .delete_item()
                    .table_name(&self.tables().sync_jobs)
                    .set_key(Some(job_key(old.id)))
                    .send()
                    .await
                    .map_err(|e| sdk_error("DeleteItem job", e))?;
            }
        }
        Ok(())
    }

    /// A user's newest `limit` jobs, newest first (ties by id).
    async fn jobs_of(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        while jobs.len() < limit {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().sync_jobs)
                .index_name(BY_USER)
                .key_condition_expression("user_id = :u")
                .expression_attribute_values(":u", s(user.as_str()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query user's jobs", e))?;
            for item in page.items() {
                jobs.push(from_item(item)?.job);
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        jobs.truncate(limit);
        Ok(jobs)
    }
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn admit_job(&self, job: NewJob, admission: Admission) -> Result<Created, StoreError> {
        for attempt in 0..RACE_ATTEMPTS {
            if let Some(key) = &job.idempotency {
                if let Some(found) = self.job_by_idempotency(&job.user_id, &key.key).await? {
                    return Ok(
                        if found.request_hash.as_deref() == Some(&key.request_hash) {
                            Created::Existing(found.job)
                        } else {
                            Created::KeyReused(found.job)
                        },
                    );
                }
            }
            // For a request without a key: the job its marker named, which the
            // new job's marker may replace (None: there was no marker).
            let mut replaces: Option<Option<String>> = None;
            match admission {
                Admission::Always => {}
                Admission::Poll(within) => {
                    if self.has_recent_or_open(&job, within).await? {
                        return Ok(Created::Coalesced);
                    }
                }
                Admission::Request { max_queued } => {
                    if job.idempotency.is_none() {
                        let marked = self.requested_marker(&job).await?;
                        if let Some(waiting) = &marked {
                            if waiting.status == JobStatus::Queued
                                && waiting.started_at.is_none()
                                && millis(waiting.requested) == millis(job.requested)
                            {
                                return Ok(Created::Queued(waiting.clone()));
                            }
                        }
                        replaces = Some(marked.map(|j| j.id.to_string()));
                    }
                    if self.queued_jobs(&job.user_id).await? >= u64::from(max_queued) {
                        return Ok(Created::QueueFull { max_queued });
                    }
                }
            }
            let put = Put::builder()
                .table_name(&self.tables().sync_jobs)
                .set_item(Some(new_item(&job)))
                .condition_expression("attribute_not_exists(id)")
                .build()
                .map_err(|e| StoreError::Internal(format!("job put: {e}")))?;
            let mut items = vec![TransactWriteItem::builder().put(put).build()];
            if let Some(key) = &job.idempotency {
                let mut idem = idempotency_key(&job.user_id, &key.key);
                idem.insert("job_id".into(), s(job.id.to_string()));
                let put = Put::builder()
                    .table_name(&self.tables().aux)
                    .set_item(Some(idem))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| StoreError::Internal(format!("idempotency put: {e}")))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            if let Some(replaces) = replaces {
                items.push(self.marker_put(&job, replaces)?);
            }
            if self
                .transact("TransactWriteItems create job", items)
                .await?
            {
                let created = self
                    .stored_job(job.id)
                    .await?
                    .ok_or_else(|| StoreError::Internal("created job not found".into()))?;
                return Ok(Created::New(created.job));
            }
            // Most likely the same key or the same request was used
            // concurrently: look again.
            backoff(attempt).await;
        }
        Err(lost_race("create_job"))
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let mut start: Option<Item> = None;
        let mut leased: Vec<Item> = Vec::new();
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().sync_jobs)
                .index_name(OPEN)
                .key_condition_expression("open_pk = :o")
                .filter_expression("not_before_ms <= :now")
                .expression_attribute_values(":o", s(OPEN_PARTITION))
                .expression_attribute_values(":now", ms(now))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query open jobs", e))?;
            for candidate in page.items() {
                let f = Fields::new(candidate, "sync job");
                let id = f.uuid("id")?;
                // A user being synced may have many jobs queued (up to the cap):
                // their lease is read once per claim, not once per job.
                let lease = lease_key(f.s("user_id")?, f.s("provider")?);
                if leased.contains(&lease) {
                    continue;
                }
                if self.lease_held(&lease, now).await? {
                    leased.push(lease);
                    continue;
                }
                if let Some(job) = self.try_claim(id, owner, now, until).await? {
                    return Ok(Some(job));
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(None),
            }
        }
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        for attempt in 0..RACE_ATTEMPTS {
            let Some((stored, lease)) = self.held(job, owner).await? else {
                return Ok(false);
            };
            let c = checkpoint.counts;
            let changes = Changes::default()
                .set("range_start_ms", ms(checkpoint.resolved.start))
                .set("range_end_ms", ms(checkpoint.resolved.end))
                .set("resume_from_ms", ms(checkpoint.resume_from))
                .set("fetched", count(c.fetched))
                .set("inserted", count(c.inserted))
                .set("updated", count(c.updated))
                .set("duplicates", count(c.duplicates))
                .set("rejected", count(c.rejected))
                .set("updated_at_ms", ms(Utc::now()))
                .set("rev", n(stored.rev + 1));
            let items = vec![
                transact_update(
                    &self.tables().aux,
                    lease,
                    Changes::default().set("until_ms", ms(until)),
                    Self::lease_condition(job, owner),
                )?,
                transact_update(
                    &self.tables().sync_jobs,
                    job_key(job),
                    changes,
                    Condition::new("rev = :crev").value(":crev", n(stored.rev)),
                )?,
            ];
            if !self
                .transact("TransactWriteItems checkpoint", items)
                .await?
            {
                backoff(attempt).await;
                continue;
            }
            if let Some(newest) = checkpoint.newest {
                // A high-water mark only rises; a missing connection stays missing.
                self.update_if(
                    &self.tables().user_tokens,
                    connections::key(stored.job.user_id.as_str(), stored.job.provider),
                    Changes::default().set("sync_cursor_ms", ms(newest)),
                    Condition::new(
                        "attribute_exists(user_id) AND \
                         (attribute_not_exists(sync_cursor_ms) OR sync_cursor_ms < :cn)",
                    )
                    .value(":cn", ms(newest)),
                )
                .await?;
            }
            return Ok(true);
        }
        Err(lost_race("checkpoint_job"))
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some((_, lease)) = self.held(job, owner).await? else {
            return Ok(false);
        };
        let renewed = self
            .update_if(
                &self.tables().aux,
                lease,
                Changes::default().set("until_ms", ms(until)),
                Self::lease_condition(job, owner),
            )
            .await?;
        Ok(renewed.is_some())
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        for attempt in 0..RACE_ATTEMPTS {
            let Some((stored, lease)) = self.held(job, owner).await? else {
                return Ok(None);
            };
            let current = &stored.job;
            let mut ended = current.clone();
            ended.updated_at = now;
            let mut changes = Changes::default()
                .set("updated_at_ms", ms(now))
                .set("rev", n(stored.rev + 1));
            match &end {
                JobEnd::Succeeded => {
                    ended.status = JobStatus::Succeeded;
                    ended.finished_at = Some(now);
                }
                JobEnd::Failed { error } => {
                    ended.status = JobStatus::Failed;
                    ended.finished_at = Some(now);
                    ended.errors.push(error.clone());
                }
                JobEnd::Retry { not_before, error } => {
                    ended.status = JobStatus::Queued;
                    ended.errors.extend(error.iter().cloned());
                    changes = changes.set("not_before_ms", ms(*not_before));
                }
            }
            changes = changes
                .set("status", s(ended.status.as_str()))
                .set("errors", s(errors_json(&ended.errors)?));
            if let Some(finished) = ended.finished_at {
                // Leaves the sparse `open` index.
                changes = changes
                    .set("finished_at_ms", ms(finished))
                    .remove("open_pk")
                    .remove("open_sk");
            }
            let mut items = vec![
                self.delete_lease_item(lease, job, owner)?,
                transact_update(
                    &self.tables().sync_jobs,
                    job_key(job),
                    changes,
                    Condition::new("rev = :crev").value(":crev", n(stored.rev)),
                )?,
            ];
            if let Some(note) = end.connection_note(now) {
                let noted = connections::sync_changes(note);
                let key = connections::key(current.user_id.as_str(), current.provider);
                // Only an existing connection is noted (the update must not create one).
                if self
                    .get(&self.tables().user_tokens, key.clone())
                    .await?
                    .is_some()
                {
                    items.push(transact_update(
                        &self.tables().user_tokens,
                        key,
                        noted,
                        Condition::new("attribute_exists(user_id)"),
                    )?);
                }
            }
            let event = Event::sync_ended(&ended);
            if let Some(event) = &event {
                items.push(outbox::append(&self.tables().aux, event)?);
            }
            if !self
                .transact("TransactWriteItems finish job", items)
                .await?
            {
                backoff(attempt).await;
                continue;
            }
            if event.is_some() {
                self.wrote_outbox();
            }
            if end.prunes_scheduled(current.trigger) {
                self.prune_scheduled(&current.user_id).await?;
            }
            return Ok(self.stored_job(job).await?.map(|s| s.job));
        }
        Err(lost_race("finish_job"))
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        Ok(self.stored_job(job).await?.map(|s| s.job))
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        self.jobs_of(user, limit).await
    }

    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError> {
        let mut due = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&self.tables().sync_jobs)
                .index_name(OPEN)
                .key_condition_expression("open_pk = :o")
                .filter_expression("#st = :queued AND not_before_ms <= :now")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":o", s(OPEN_PARTITION))
                .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
                .expression_attribute_values(":now", ms(now))
                .projection_expression("not_before_ms, user_id, provider")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query job backlog", e))?;
            for item in page.items() {
                let f = Fields::new(item, "sync job");
                let key = lease_key(f.s("user_id")?, f.s("provider")?);
                due.push((f.time("not_before_ms")?, key));
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => break,
            }
        }
        // The oldest job whose user's lease is free: one lease read per job, oldest
        // first, at most LEASE_READS of them (beyond that the next one is reported,
        // which can only overstate the wait).
        const LEASE_READS: usize = 25;
        due.sort_by_key(|(at, _)| *at);
        let mut oldest_due = None;
        for (i, (at, lease)) in due.iter().enumerate() {
            if i == LEASE_READS {
                oldest_due = Some(*at);
                break;
            }
            if !self.lease_held(lease, now).await? {
                oldest_due = Some(*at);
                break;
            }
        }
        Ok(JobBacklog {
            due: due.len() as u64,
            oldest_due,
        })
    }
}

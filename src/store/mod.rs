//! Storage: one trait per storage concern (`ReadingStore`, `OutboxStore`,
//! `AuditStore`, `ShareStore`, `ConnectionStore`, `JobStore`, `InboxStore`,
//! `TaskStore`, `ProfileStore`, `DailyStore`, `AlertStore`, `StaleStore`,
//! `NotificationStore`, `AccountStore`, `InvitationStore`, `JournalStore`,
//! `HealthUploadStore`, `MealResponseStore`),
//! `Store` as their supertrait (used as `Arc<dyn Store>`, upcast to the narrow
//! trait a consumer needs), and one module per backend, whose concern files
//! implement those traits.
//!
//! A backend implements a handful of primitives (atomic batch upsert, latest, a
//! bounded keyset scan); paging and cursors are built on top once, in `query`, so
//! every backend pages identically. `tests/it/store_conformance/` runs the same
//! cases against every backend.

pub mod daily;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod meal_responses;
pub mod postgres;
pub mod query;
pub mod samples;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{AlertSettings, Email, Profile, Reading, StoredReading, UserId};
use crate::records::account_tokens::AccountToken;
use crate::records::accounts::{Account, AccountCreated, NewRefreshToken, Rotation};
use crate::records::alerts::{Alert, AlertQuery, AlertStatus};
use crate::records::audit::{AuditBatch, AuditQuery, AuditRecord};
use crate::records::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome,
};
use crate::records::daily::DailyRow;
use crate::records::events::Message;
use crate::records::inbox::{Accepted, Delivery, DeliveryEnd, NewDelivery};
use crate::records::invitations::Invitation;
use crate::records::jobs::{Checkpoint, Created, JobBacklog, JobEnd, NewJob, SyncJob};
use crate::records::journal::{JournalCreated, JournalEntry, JournalKind, JournalQuery};
use crate::records::meal_response::StoredMealResponse;
use crate::records::notifications::{EndpointId, EndpointWrite, NotificationEndpoint};
use crate::records::readings::Upserted;
use crate::records::shares::{Share, SharePage, ShareWrite};
use crate::records::stale::NewestReading;
use crate::records::tasks::{Enqueued, NewTask, Task, TaskBacklog, TaskEnd, TaskId};

pub use query::{fetch_page, Order, Page, PageRequest, Scan, Seek};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or is overloaded; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored row no longer parses into a domain value.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

/// How a backend's one job-creating routine (`JobStore::admit_job`, behind both
/// `create_job` and `create_requested_job`) treats the
/// user's other jobs: unconditional, or coalescing a scheduled poll (`create_job`);
/// coalescing identical requests and capping the queue (`create_requested_job`).
#[derive(Debug, Clone, Copy)]
pub enum Admission {
    Always,
    /// No job when the user has one queued or running, or had one of the same
    /// trigger created within this long.
    Poll(chrono::Duration),
    /// The same request still waiting: that job; `max_queued` queued: none.
    Request {
        max_queued: u32,
    },
}

impl Admission {
    pub fn of_poll(coalesce_within: Option<chrono::Duration>) -> Self {
        coalesce_within.map_or(Admission::Always, Admission::Poll)
    }
}

/// General background tasks (`crate::tasks` runs them): a durable queue with
/// leases, so that each task runs on one runner at a time across instances and
/// a task whose runner died is resumed by another.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Queues a task. With an idempotency key, the task created before under
    /// the same (kind, key) is returned instead (`Existing`); concurrent
    /// creates with one key get one task.
    async fn create_task(&self, task: NewTask) -> Result<Enqueued, StoreError>;

    /// Claims the most urgent due task of one of `kinds` for `owner` until
    /// `until`: queued with `not_before <= now`, or running under a lease that
    /// lapsed at `now` (its runner died: crash resume). A task whose
    /// concurrency key another task holds a live lease on is skipped. Lower
    /// priority first, then older. Marks it running and counts an attempt.
    async fn claim_task(
        &self,
        kinds: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError>;

    /// Extends the lease, only if `owner` still holds the running task (false
    /// otherwise: stop, someone else has it now).
    async fn renew_task_lease(
        &self,
        id: TaskId,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records how a run ended and releases the lease, only if `owner` holds
    /// the running task: the task as it ended, or None (nothing written).
    async fn finish_task(
        &self,
        id: TaskId,
        owner: &str,
        end: TaskEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError>;

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// Per kind of `kinds` (each one present, in that order): tasks queued and
    /// due at `now`, and since when the oldest waits.
    async fn task_backlog(
        &self,
        kinds: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TaskBacklog)>, StoreError>;
}

/// Readings: the atomic batch upsert (with its outbox events), the latest
/// reading and the bounded keyset scan that `fetch_page` pages with.
#[async_trait]
pub trait ReadingStore: Send + Sync {
    /// Stores a batch atomically, applying the dedup key (user, timestamp) and the
    /// conflict rule (`Reading::resolve_against`) per record, in order. Returns one
    /// result per input, in input order. When this returns Ok, the batch is durable.
    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError>;

    /// The newest reading of a user.
    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError>;

    /// Up to `scan.limit` readings of one user in `[scan.from, scan.until)`, in the
    /// scan's order. Paging is built on this by `fetch_page`.
    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError>;

    /// The same scan with each reading encoded by `encode` onto the end of
    /// `prefix` (see `query::EncodedScan`), for `query::fetch_page_encoded`. This
    /// default encodes what `scan_readings` returns; a backend whose rows can be
    /// encoded as they are read (SQLite) overrides it to skip the `StoredReading`s.
    async fn scan_encoded(
        &self,
        scan: Scan,
        encode: query::EncodeReading,
        prefix: Vec<u8>,
    ) -> Result<query::EncodedScan, StoreError> {
        let readings = self.scan_readings(scan).await?;
        let mut out = query::EncodedScan {
            bytes: prefix,
            items: Vec::with_capacity(readings.len()),
        };
        for reading in &readings {
            out.push(encode, &query::ReadingRef::from(reading));
        }
        Ok(out)
    }
}

/// The event outbox. Writes that change something consumers care about put
/// their events into the outbox in the same transaction: `upsert_readings`
/// (reading.created / updated), `finish_job` with a final end (sync.completed /
/// failed), and any write that changes a connection's status (connection.*).
/// Every backend builds them with the same `Event` constructors.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Woken after a commit that wrote to the outbox, so the relay publishes
    /// at once instead of at its next poll.
    fn outbox_signal(&self) -> &tokio::sync::Notify;

    /// Claims up to `limit` unpublished messages for `owner` until `until`,
    /// oldest first: unclaimed ones, ones `owner` claimed before (a publish it
    /// retries), or ones whose claim lapsed at `now` (their relay died before
    /// deleting them).
    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;

    /// Deletes published messages; returns how many were still there.
    async fn ack_outbox(&self, ids: Vec<uuid::Uuid>) -> Result<usize, StoreError>;

    /// Messages not yet published.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
}

/// The audit trail (append-only: there is no method to change an entry).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends entries, in order, atomically. Shared rather than borrowed so that
    /// a backend can hand them to another thread, and the caller can retry with
    /// them and then reuse the buffer.
    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError>;

    /// Entries matching the query, oldest first.
    async fn query_audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Sharing grants.
#[async_trait]
pub trait ShareStore: Send + Sync {
    /// Creates or replaces the grant of (patient, grantee). A new grantee is
    /// refused (`LimitReached`, nothing written) when the patient already holds
    /// `max_per_patient` grants, expired ones included; the check and the write
    /// are atomic, so concurrent grants cannot pass the limit together.
    async fn put_share(
        &self,
        share: Share,
        max_per_patient: usize,
    ) -> Result<ShareWrite, StoreError>;

    /// A page of a patient's grants, expired ones included, ordered by grantee.
    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError>;

    /// The grant of `patient` to `grantee`, expired or not (callers check).
    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError>;

    /// Revokes a grant; false if there was none.
    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError>;
}

/// Source connections: OAuth state and sealed tokens.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores an authorization in progress, then keeps only the user's
    /// `keep_per_user` newest (by expiry; this one always kept), so a user who
    /// starts authorizations in a loop cannot grow the store.
    async fn put_pending_authorization(
        &self,
        pending: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError>;

    /// Deletes every pending authorization expired at `now`; returns how many.
    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Removes and returns the pending authorization with this state hash if it
    /// has not expired at `now`. Single use: a second call returns None. Expired
    /// entries are removed along the way.
    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError>;

    /// Creates or replaces a connection. The store assigns `token_version` (one
    /// more than the stored row's) and clears any refresh lease, so a refresh that
    /// was in flight cannot overwrite what this wrote.
    async fn put_connection(&self, connection: Connection) -> Result<(), StoreError>;

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError>;

    /// A user's connections, ordered by provider.
    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError>;

    /// Every connection of a provider in one status, ordered by user.
    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError>;

    /// Notes a finished sync: `last_sync_at` on success, `last_error` either way
    /// (None clears it). A no-op for an unknown connection.
    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError>;

    /// Takes the connection's refresh lease for `owner` until `until`, if it is
    /// connected and nobody else holds an unexpired lease. Returns the row as it
    /// is now (with the tokens to refresh), or None when the lease is taken or the
    /// connection is not connected. This is what keeps one refresh at a time per
    /// user across instances sharing a store.
    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError>;

    /// Applies the outcome of a refresh and releases the lease, only if `owner`
    /// still holds it. Returns false (and writes nothing) otherwise.
    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Sync jobs and the per-user sync lease.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// The one job-creating routine each backend writes: the job, admitted as
    /// `admission` says (see `create_job` and `create_requested_job`, which are
    /// what callers use).
    async fn admit_job(&self, job: NewJob, admission: Admission) -> Result<Created, StoreError>;

    /// Creates a queued job. With an idempotency key, a job created before under
    /// the same (user, key) is returned instead (`Existing`, or `KeyReused` when
    /// its request hash differs). With `coalesce_within` (scheduled polls), no job
    /// is added when the user already has one queued or running, or had one of
    /// the same trigger created within that long before `created_at`.
    async fn create_job(
        &self,
        job: NewJob,
        coalesce_within: Option<chrono::Duration>,
    ) -> Result<Created, StoreError> {
        self.admit_job(job, Admission::of_poll(coalesce_within))
            .await
    }

    /// Creates a queued job that someone asked for (a manual sync, a webhook's
    /// window, a backfill), within the user's share of the queue. With an
    /// idempotency key, as `create_job`. Without one, a job of the same user,
    /// provider, trigger and requested range that is still queued and has never
    /// started is returned instead (`Queued`). Otherwise, when the user already
    /// has `max_queued` queued jobs (of any provider and trigger), none is added
    /// (`QueueFull`). Atomic: concurrent identical requests get one job.
    async fn create_requested_job(
        &self,
        job: NewJob,
        max_queued: u32,
    ) -> Result<Created, StoreError> {
        self.admit_job(job, Admission::Request { max_queued }).await
    }

    /// Claims the next runnable job for `owner`: queued and due, or running under
    /// a lease that has lapsed (its holder died), for a user nobody else holds a
    /// sync lease on. Takes that user's lease until `until` and marks the job
    /// running. Webhook and manual jobs first, then scheduled, then backfills.
    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError>;

    /// Notes progress and renews the lease, only if `owner` still holds it for
    /// this job (false otherwise: stop, someone else has it now). Raises the
    /// connection's high-water mark to `checkpoint.newest`.
    async fn checkpoint_job(
        &self,
        job: uuid::Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Renews the lease without progress (a long window in flight).
    async fn renew_job_lease(
        &self,
        job: uuid::Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends a run and releases the lease, only if `owner` holds it: the job as
    /// it ended, or None (nothing written) when someone else holds it. Success
    /// and final failure are noted on the connection (`last_sync_at`,
    /// `last_error`).
    async fn finish_job(
        &self,
        job: uuid::Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError>;

    async fn get_job(&self, job: uuid::Uuid) -> Result<Option<SyncJob>, StoreError>;

    /// A user's most recent jobs, newest first.
    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError>;

    /// Jobs waiting to run (queued and due) at `now`, and since when the oldest waits.
    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError>;
}

/// The webhook inbox.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores a verified delivery (durably, before the 202). A delivery with the
    /// same signature hash is a replay: the first one's id.
    async fn put_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError>;

    /// Claims up to `limit` deliveries due at `now` (queued, or claimed by a
    /// holder whose claim lapsed), oldest first, for `owner` until `until`.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Records how processing ended, in one transaction, for the deliveries
    /// `owner` still holds the claim of; returns how many those were.
    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(uuid::Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;

    async fn get_delivery(&self, delivery: uuid::Uuid) -> Result<Option<Delivery>, StoreError>;

    /// Deliveries not yet processed.
    async fn inbox_backlog(&self) -> Result<u64, StoreError>;
}

/// User profiles (`GET/PUT /api/users/{userId}/profile`).
#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// The stored profile; None when the user never stored one (callers use
    /// `profile_or_default`).
    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>, StoreError>;

    /// Creates or replaces the user's profile.
    async fn put_profile(&self, user: &UserId, profile: &Profile) -> Result<(), StoreError>;
}

/// The user's profile, or the default one (UTC, 70-180 mg/dL, mg/dL) when none
/// is stored.
pub async fn profile_or_default(
    store: &(impl ProfileStore + ?Sized),
    user: &UserId,
) -> Result<Profile, StoreError> {
    Ok(store.get_profile(user).await?.unwrap_or_default())
}

/// Daily aggregates and the day marks that tell when one is stale. Marks are
/// written by `ReadingStore::upsert_readings` in its transaction: every batch
/// that inserts or changes a reading adds one to the revision of each (user,
/// UTC date) it touched. `daily::daily_aggregates` is the one reader.
#[async_trait]
pub trait DailyStore: Send + Sync {
    /// The revisions of the user's UTC dates in `[from, until)` that have one
    /// (a date never written to has none: revision 0).
    async fn day_marks(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<(NaiveDate, i64)>, StoreError>;

    /// The user's stored rows of the local dates in `[from, until)`, by date.
    async fn daily_rows(
        &self,
        user: &UserId,
        from: NaiveDate,
        until: NaiveDate,
    ) -> Result<Vec<DailyRow>, StoreError>;

    /// Creates or replaces rows' date, basis, marks revision and glucose
    /// figures; the journal figures of a stored row are kept as they are.
    async fn put_daily_rows(&self, user: &UserId, rows: Vec<DailyRow>) -> Result<(), StoreError>;
}

/// Notification endpoints: where users want alert events POSTed, their
/// signing secret sealed. A user holds at most `max_per_user` of them; the
/// check and the write are atomic.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores a new endpoint, unless the user holds `max_per_user` already
    /// (`LimitReached`, nothing written).
    async fn put_notification_endpoint(
        &self,
        endpoint: NotificationEndpoint,
        max_per_user: usize,
    ) -> Result<EndpointWrite, StoreError>;

    /// A user's endpoints, oldest first (at most the cap, so no paging).
    async fn list_notification_endpoints(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationEndpoint>, StoreError>;

    async fn get_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<Option<NotificationEndpoint>, StoreError>;

    /// Removes an endpoint; false if the user had none of that id.
    async fn delete_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<bool, StoreError>;
}

/// Alerts and each user's alert settings. At most one open (active or
/// acknowledged) alert per (user, type), enforced by the store under
/// concurrency; every change of an alert commits its `alert.*` event to the
/// outbox in the same transaction.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// The user's settings; None: never set (the defaults apply).
    async fn get_alert_settings(&self, user: &UserId) -> Result<Option<AlertSettings>, StoreError>;

    /// Creates or replaces the user's settings.
    async fn put_alert_settings(
        &self,
        user: &UserId,
        settings: AlertSettings,
    ) -> Result<(), StoreError>;

    /// Stores a new active alert with its `alert.raised` event: true. False,
    /// and nothing written, when the user already has an open alert of its type.
    async fn raise_alert(&self, alert: Alert) -> Result<bool, StoreError>;

    /// Replaces the stored alert `next.id` of `next.user_id` by `next` (ack,
    /// resolve, re-raise) with the event of its new status, only if its stored
    /// status is still `from` (an open status): true. False, nothing written,
    /// otherwise (someone else changed it first, or there is no such alert).
    async fn transition_alert(&self, from: AlertStatus, next: Alert) -> Result<bool, StoreError>;

    async fn get_alert(&self, user: &UserId, id: uuid::Uuid) -> Result<Option<Alert>, StoreError>;

    /// The user's open alerts (at most one per type), in any order.
    async fn open_alerts(&self, user: &UserId) -> Result<Vec<Alert>, StoreError>;

    /// Up to `query.limit` alerts, newest first (see `AlertQuery`).
    async fn list_alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError>;
}

/// The health journal: each user's meals, sleep sessions and activities.
/// (user, kind, source, external_id) is unique among entries with an external
/// id, under concurrency; every change commits its `meal.*`, `sleep.*` or
/// `activity.*` event to the outbox in the same transaction.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// Stores a new entry with its `<kind>.created` event: `Created`. When one
    /// with its (user, kind, source, external_id) exists: `Existing` (that
    /// one), nothing written.
    async fn create_journal_entry(&self, entry: JournalEntry)
        -> Result<JournalCreated, StoreError>;

    /// Stores a batch (an import) as `create_journal_entry` would, one result
    /// per entry in order; an entry whose key an earlier one of the batch
    /// has is `Existing` (that one). All or none: an error (an id stored
    /// before, the backend failing) stores nothing of the batch. DynamoDB
    /// holds this per transaction of `JOURNAL_BATCH_ATOMIC` entries; a
    /// longer batch is several (docs/journal.md).
    async fn create_journal_entries(
        &self,
        entries: Vec<JournalEntry>,
    ) -> Result<Vec<JournalCreated>, StoreError>;

    async fn get_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: uuid::Uuid,
    ) -> Result<Option<JournalEntry>, StoreError>;

    /// Up to `query.limit` entries (see `JournalQuery`).
    async fn list_journal_entries(
        &self,
        query: JournalQuery,
    ) -> Result<Vec<JournalEntry>, StoreError>;

    /// Replaces the fields (`body`, and so `at`) and `updated_at` of the
    /// stored entry `next.id` of `next.user_id` and `next.kind()`, with its
    /// `<kind>.updated` event: the entry as stored now. None, nothing written,
    /// when there is no such entry. Id, source, external id and `created_at`
    /// are the stored ones.
    async fn update_journal_entry(
        &self,
        next: JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError>;

    /// Removes an entry with its `<kind>.deleted` event; false if there was none.
    async fn delete_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: uuid::Uuid,
    ) -> Result<bool, StoreError>;
}

/// An Apple Health upload (`POST /api/v1/integrations/apple-health`): its
/// readings and its journal entries stored as one unit (docs/journal.md,
/// "Apple Health upload").
#[async_trait]
pub trait HealthUploadStore: Send + Sync {
    /// Stores `readings` as `ReadingStore::upsert_readings` does (conflict
    /// rule, day marks, newest times, outbox events) and `entries` as
    /// `JournalStore::create_journal_entries` does (an entry whose key is
    /// stored is `Existing`), and returns both results in input order.
    /// SQLite and PostgreSQL: one transaction, all or none; an error stores
    /// nothing of either. DynamoDB: the journal batch (per
    /// `JOURNAL_BATCH_ATOMIC` entries), then the readings upsert; an error
    /// may leave a part stored, which the same call again completes without
    /// duplicates (every item has a deterministic key).
    async fn store_health_upload(
        &self,
        readings: Vec<Reading>,
        entries: Vec<JournalEntry>,
    ) -> Result<(Vec<Upserted>, Vec<JournalCreated>), StoreError>;
}

/// Finished meal glucose responses (`records::meal_response`), kept so that
/// a list of meals with their responses need not read the trace again.
/// `meal_responses::read_stored` decides whether a stored one is still the
/// answer (its validity key); this concern only keeps them. A response lives
/// no longer than its meal: deleting the meal (`delete_journal_entry`)
/// deletes it in the same transaction, and a response of a meal that is not
/// stored (any more) is not stored.
#[async_trait]
pub trait MealResponseStore: Send + Sync {
    /// The stored responses of those of `meal_ids` that are `user`'s and have
    /// one, in any order: one query (DynamoDB: `BatchGetItem`s of 100 keys).
    async fn get_meal_responses(
        &self,
        user: &UserId,
        meal_ids: &[uuid::Uuid],
    ) -> Result<Vec<StoredMealResponse>, StoreError>;

    /// Creates or replaces the response of each of `responses`' meals (all
    /// of `user`; another user's are ignored); the response of a meal that
    /// is not stored as `user`'s meal is skipped.
    async fn put_meal_responses(
        &self,
        user: &UserId,
        responses: Vec<StoredMealResponse>,
    ) -> Result<(), StoreError>;
}

/// How many entries one DynamoDB transaction of `create_journal_entries`
/// holds (four items each: the entry by id and by time, its external-id
/// marker, its event;
/// a transaction holds at most 100 items).
pub const JOURNAL_BATCH_ATOMIC: usize = 25;

/// Each user's newest reading time, written by `ReadingStore::upsert_readings`
/// (the maximum timestamp it wrote: a backfill never moves it back), read by
/// the stale-alert timer (`pipeline::stale`) to find the users gone quiet.
#[async_trait]
pub trait StaleStore: Send + Sync {
    /// Up to `limit` users whose newest reading time is in `[from, until)`, in
    /// (time, user) order, starting after `after` (the last of the previous
    /// page). Whole seconds, as readings are keyed.
    async fn quiet_users(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<NewestReading>,
        limit: usize,
    ) -> Result<Vec<NewestReading>, StoreError>;
}

/// Built-in accounts (`/api/v1/auth/*`) and their refresh tokens. Tokens are
/// stored by fingerprint only and grouped in families: a login starts one, each
/// refresh uses one token and adds the next, and a family is revoked as a whole
/// (logout, or a used token presented again).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a new account unless another has its email (compared by
    /// `Email::key`) or its id: `Taken`, nothing written. Atomic under
    /// concurrency: of two sign-ups with one email, one gets `Taken`.
    async fn create_account(&self, account: Account) -> Result<AccountCreated, StoreError>;

    async fn get_account(&self, id: &UserId) -> Result<Option<Account>, StoreError>;

    /// The account whose email has this `Email::key`.
    async fn account_by_email(&self, email: &Email) -> Result<Option<Account>, StoreError>;

    /// Starts a new family with its first token (sign-up, login); its id.
    async fn start_refresh_family(&self, first: NewRefreshToken) -> Result<uuid::Uuid, StoreError>;

    /// Uses the token with fingerprint `presented` and stores `next` in its
    /// family, atomically (see `Rotation`): a live token becomes used and `next`
    /// is stored (`Rotated`); a used one revokes its family (`Reused`, `next`
    /// not stored); a token of a revoked family, an expired one (at
    /// `next.issued_at`) or an unknown one changes nothing. Of two concurrent
    /// rotations of one token, one rotates and the other is `Reused`. `next`'s
    /// account is ignored: the family's is kept.
    async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: NewRefreshToken,
    ) -> Result<Rotation, StoreError>;

    /// Revokes the family of the token with fingerprint `presented` (used or
    /// not, expired or not); false if there is no such token.
    async fn revoke_refresh_family(&self, presented: &str) -> Result<bool, StoreError>;

    /// Disables the account (kept, never deleted; the first `at` stays) and
    /// revokes every refresh family it has (DynamoDB: its families die by the
    /// account check of every refresh instead, see docs/accounts.md); false
    /// when there is no such account.
    async fn disable_account(&self, id: &UserId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Whether an account with this id exists and is disabled (false for an
    /// unknown id: a token of another issuer is never refused by this).
    async fn account_disabled(&self, id: &UserId) -> Result<bool, StoreError>;

    /// Enables a disabled account again (`cgm-hub users enable`); its revoked
    /// sessions stay revoked. False when there is no such account.
    async fn enable_account(&self, id: &UserId) -> Result<bool, StoreError>;

    /// Replaces the account's password hash (a password reset) and revokes
    /// every refresh family it has, on every backend (DynamoDB: found by a
    /// filtered scan of the aux table; resets are rare). False when there is
    /// no such account.
    async fn set_password(&self, id: &UserId, password_hash: &str) -> Result<bool, StoreError>;

    /// Marks the account's email verified; false when there is no such account.
    async fn set_email_verified(&self, id: &UserId) -> Result<bool, StoreError>;
}

/// Single-use account tokens (password reset, email verification), keyed by
/// the SHA-256 of the token.
#[async_trait]
pub trait AccountTokenStore: Send + Sync {
    /// Stores a new token (a token hash already stored is an error).
    async fn put_account_token(&self, token: AccountToken) -> Result<(), StoreError>;

    /// The token with this hash, used or expired or not (callers check).
    async fn get_account_token(&self, token_hash: &str)
        -> Result<Option<AccountToken>, StoreError>;

    /// Marks the token used; false when there is none or it was used already
    /// (atomic: of two concurrent calls, one gets true).
    async fn use_account_token(&self, token_hash: &str) -> Result<bool, StoreError>;
}

/// Invitations to sign up (`/api/v1/auth/invitations`, shares by email),
/// keyed by the SHA-256 of their token.
#[async_trait]
pub trait InvitationStore: Send + Sync {
    /// Stores a new invitation (a token hash already stored is an error).
    async fn put_invitation(&self, invitation: Invitation) -> Result<(), StoreError>;

    /// The invitation with this token hash, used or expired or not (callers check).
    async fn get_invitation(&self, token_hash: &str) -> Result<Option<Invitation>, StoreError>;

    /// Marks the invitation used; false when there is none or it was used
    /// already (atomic: of two concurrent calls, one gets true).
    async fn use_invitation(&self, token_hash: &str) -> Result<bool, StoreError>;
}

/// Every storage concern of one backend, and what is the backend's as a whole.
/// Writes that span concerns (an upsert and its outbox events, a finished job
/// with its connection and events, a connection and its events) stay one
/// transaction inside the backend.
#[async_trait]
pub trait Store:
    ReadingStore
    + OutboxStore
    + AuditStore
    + ShareStore
    + ConnectionStore
    + JobStore
    + InboxStore
    + TaskStore
    + ProfileStore
    + DailyStore
    + AlertStore
    + StaleStore
    + NotificationStore
    + AccountStore
    + InvitationStore
    + JournalStore
    + HealthUploadStore
    + MealResponseStore
    + AccountTokenStore
    + Send
    + Sync
    + 'static
{
    /// Short name for logs, metrics and `/health` (`sqlite`, `postgres`, ...).
    fn backend(&self) -> &'static str;

    /// A cheap round trip proving the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

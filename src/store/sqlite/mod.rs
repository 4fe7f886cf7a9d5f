//! The embedded default backend: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so all writes go through a single writer
//! connection (which also makes each batch's dedup + conflict rule atomic), while
//! reads use a small fixed set of reader connections that WAL lets run alongside
//! the writer. rusqlite is synchronous: every call runs on tokio's blocking pool,
//! never on an async worker. Callers first wait their turn on async semaphores (one
//! permit for the writer, one per reader), so a burst of requests queues as cheap
//! futures instead of parking blocking-pool threads on mutexes. The pool is a few
//! lines here rather than r2d2/deadpool, whose SQLite adapters pin rusqlite
//! versions other than the 0.39 that can sit beside sqlx (PostgreSQL, later).

mod audit;
mod connections;
mod inbox;
mod jobs;
mod latest_cache;
mod migrations;
mod outbox;
mod rows;
mod shares;
mod tasks;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use latest_cache::LatestCache;

use super::{
    DuplicateKind, Order, Outcome, Scan, SharePage, ShareWrite, Store, StoreError, Upserted,
};
use crate::auth::audit::{AuditBatch, AuditQuery, AuditRecord};
use crate::auth::shares::Share;
use crate::connections::{
    Connection as SourceConnection, ConnectionStatus, PendingAuthorization, Provider,
    RefreshOutcome,
};
use crate::domain::{Reading, Resolution, StoredReading, UserId};
use crate::sources::webhook::inbox::{Accepted, Delivery, DeliveryEnd, NewDelivery};
use crate::sync::jobs::{Checkpoint, Created, JobBacklog, JobEnd, NewJob, SyncJob};
use uuid::Uuid;

const READERS: usize = 4;
/// Users whose latest reading is kept in memory (a few hundred bytes each).
const LATEST_CACHE_USERS: usize = 100_000;

pub use crate::config::Durability;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Held open for the store's lifetime: an exclusive lock on `<db>.lock`, so a
    /// second process cannot write the same file behind this one's cache. None only
    /// for an operator command beside a running server (`open_beside_server`).
    _lock: Option<std::fs::File>,
    latest: LatestCache,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// One permit: writers queue here, asynchronously, before taking a blocking thread.
    write_turn: tokio::sync::Semaphore,
    /// One permit per reader connection.
    read_turn: tokio::sync::Semaphore,
    /// Woken after commits that wrote to the outbox.
    outbox_written: tokio::sync::Notify,
}

pub(crate) fn internal(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `path` and
    /// applies pending migrations.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // Health data: the file (and the -wal/-shm files SQLite derives from it)
        // is readable by this user only.
        private_file(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        let lock = lock_file(path)?;
        Self::open_with(path, durability, Some(lock), Schema::Migrate)
    }

    /// For the operator CLI (`cgm-hub users list`, `sync`, `jobs`): opens an existing
    /// database even while a `cgm-hub serve` holds its lock. SQLite itself serializes
    /// the two processes' transactions; the lock only protects the server's cache of
    /// each user's newest reading, which these commands never write (they read, and
    /// queue jobs that the server's workers claim). Not for anything that ingests.
    /// Migrations are not applied: the schema must be this build's (a newer CLI must
    /// not migrate a database under an older running server).
    pub fn open_beside_server(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!(
                "no database at {} (check SQLITE_PATH)",
                path.display()
            )));
        }
        // No lock taken either: a server (re)starting meanwhile must not be refused.
        Self::open_with(path, durability, None, Schema::MustBeCurrent)
    }

    fn open_with(
        path: &Path,
        durability: Durability,
        lock: Option<std::fs::File>,
        schema: Schema,
    ) -> Result<Self, StoreError> {
        let mut writer = Connection::open(path).map_err(internal)?;
        configure(&writer, durability)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(internal)?;
        match schema {
            Schema::Migrate => migrations::apply(&mut writer)?,
            Schema::MustBeCurrent => migrations::require_current(&writer)?,
        }
        let readers = (0..READERS)
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(internal)?;
                configure(&conn, durability)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                _lock: lock,
                latest: LatestCache::new(LATEST_CACHE_USERS),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                write_turn: tokio::sync::Semaphore::new(1),
                read_turn: tokio::sync::Semaphore::new(READERS),
                outbox_written: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let _turn = self.inner.write_turn.acquire().await.map_err(closed)?;
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer)))
            .await
            .map_err(|e| StoreError::Internal(format!("sqlite writer task failed: {e}")))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let _turn = self.inner.read_turn.acquire().await.map_err(closed)?;
        tokio::task::spawn_blocking(move || f(&inner.reader()))
            .await
            .map_err(|e| StoreError::Internal(format!("sqlite reader task failed: {e}")))?
    }
}

impl Inner {
    /// A free reader if there is one, else wait for the next in round-robin order.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return guard;
            }
        }
        lock(&self.readers[start % self.readers.len()])
    }
}

fn closed(_: tokio::sync::AcquireError) -> StoreError {
    StoreError::Unavailable("the sqlite store is shutting down".into())
}

/// A poisoned lock only means another thread panicked mid-call; SQLite rolled its
/// transaction back, so the connection is still usable.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates missing folders readable by this user only; existing ones are left as
/// they are (an operator's /var/lib layout is theirs).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file with mode 0600 if it does not exist yet.
fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// What opening does about the schema.
#[derive(Debug, Clone, Copy)]
enum Schema {
    Migrate,
    MustBeCurrent,
}

fn lock_file(db: &Path) -> Result<std::fs::File, StoreError> {
    // Name the lock after the real file, so two spellings of one path share it.
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another cgm-hub process; one SQLite file serves one process \
             (use PostgreSQL to run several instances)",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(internal)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(internal)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let latest = &inner.latest;
            let now = Utc::now();
            let now_ms = now.timestamp_millis();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let mut results = Vec::with_capacity(readings.len());
            let mut newest = NewestWrites::default();
            {
                let mut insert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO readings ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                         ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT (user_id, ts) DO NOTHING",
                        rows::COLUMNS
                    ))
                    .map_err(internal)?;
                let mut existing = tx
                    .prepare_cached(&format!(
                        "SELECT {} FROM readings WHERE user_id = ?1 AND ts = ?2",
                        rows::COLUMNS
                    ))
                    .map_err(internal)?;
                let mut replace = tx
                    .prepare_cached(
                        "UPDATE readings SET glucose_mg_dl = ?3, status = ?4, trend = ?5, \
                         trend_rate = ?6, reading_type = ?7, source = ?8, device_id = ?9, \
                         serial_number = ?10, transmitter_id = ?11, source_record_id = ?12, \
                         display_offset_minutes = ?13, version = ?14, updated_at_ms = ?16 \
                         WHERE user_id = ?1 AND ts = ?2",
                    )
                    .map_err(internal)?;
                for (i, reading) in readings.iter().enumerate() {
                    if rows::execute(&mut insert, reading, 1, now_ms, now_ms).map_err(internal)?
                        == 1
                    {
                        results.push(Upserted {
                            outcome: Outcome::Inserted,
                            version: 1,
                            updated_at: now,
                        });
                        newest.note(&readings, i, now);
                        continue;
                    }
                    let stored = existing
                        .query_row(
                            (reading.user_id.as_str(), reading.timestamp.unix_seconds()),
                            rows::read_row,
                        )
                        .map_err(internal)??;
                    let result = match reading.resolve_against(&stored.reading) {
                        Resolution::Identical => duplicate(&stored, DuplicateKind::Identical),
                        Resolution::KeepExisting => {
                            duplicate(&stored, DuplicateKind::SensorPrecedence)
                        }
                        Resolution::Replace => {
                            rows::execute(
                                &mut replace,
                                reading,
                                stored.version + 1,
                                stored.created_at.timestamp_millis(),
                                now_ms,
                            )
                            .map_err(internal)?;
                            newest.note(&readings, i, stored.created_at);
                            Upserted {
                                outcome: Outcome::Updated,
                                version: stored.version + 1,
                                updated_at: now,
                            }
                        }
                    };
                    results.push(result);
                }
            }
            let events = outbox::append(
                &tx,
                readings
                    .iter()
                    .zip(&results)
                    .filter_map(|(r, u)| crate::events::Event::reading_changed(r, u)),
            )?;
            let pending = latest.begin_write(newest.users());
            tx.commit().map_err(internal)?;
            pending.committed(&newest.into_stored(&readings, &results));
            if events > 0 {
                inner.outbox_written.notify_one();
            }
            Ok(results)
        })
        .await
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        if let Some(hit) = self.inner.latest.get(user.as_str()) {
            return Ok(Some(StoredReading::clone(&hit)));
        }
        let generation = self.inner.latest.generation(user.as_str());
        let user = user.clone();
        let found = self
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {} FROM readings WHERE user_id = ?1 ORDER BY ts DESC LIMIT 1",
                    rows::COLUMNS
                ))
                .map_err(internal)?
                .query_row([user.as_str()], rows::read_row)
                .optional()
                .map_err(internal)?
                .transpose()
            })
            .await?;
        if let Some(reading) = &found {
            self.inner.latest.fill(generation, reading);
        }
        Ok(found)
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        self.read(move |conn| {
            let direction = match scan.order {
                Order::Asc => "ASC",
                Order::Desc => "DESC",
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {} FROM readings WHERE user_id = ?1 AND ts >= ?2 AND ts < ?3 \
                     ORDER BY ts {direction} LIMIT ?4",
                    rows::COLUMNS
                ))
                .map_err(internal)?;
            let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(
                    (scan.user_id.as_str(), scan.from, scan.until, limit),
                    |row| rows::read_row_of(row, Some(&scan.user_id)),
                )
                .map_err(internal)?;
            let mut out = Vec::with_capacity(scan.limit.min(1024));
            for row in rows {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await
    }

    fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.inner.outbox_written
    }

    async fn claim_outbox(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::events::Message>, StoreError> {
        self.claim_outbox_impl(owner.to_owned(), now, until, limit)
            .await
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        self.ack_outbox_impl(ids).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.outbox_backlog_impl().await
    }

    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        self.append_audit_impl(entries).await
    }

    async fn query_audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.query_audit_impl(query).await
    }

    async fn put_share(&self, share: Share, max: usize) -> Result<ShareWrite, StoreError> {
        self.put_share_impl(share, max).await
    }

    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError> {
        self.list_shares_impl(patient.clone(), page).await
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        self.get_share_impl(patient.clone(), grantee.clone()).await
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        self.delete_share_impl(patient.clone(), grantee.clone())
            .await
    }

    async fn put_pending_authorization(
        &self,
        p: PendingAuthorization,
        keep_per_user: usize,
    ) -> Result<(), StoreError> {
        self.put_pending_authorization_impl(p, keep_per_user).await
    }

    async fn prune_pending_authorizations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.prune_pending_authorizations_impl(now).await
    }

    async fn take_pending_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.take_pending_authorization_impl(state_hash.to_owned(), now)
            .await
    }

    async fn put_connection(&self, connection: SourceConnection) -> Result<(), StoreError> {
        self.put_connection_impl(connection).await?;
        self.inner.outbox_written.notify_one();
        Ok(())
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<SourceConnection>, StoreError> {
        self.get_connection_impl(user.clone(), provider).await
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<SourceConnection>, StoreError> {
        self.list_connections_impl(user.clone()).await
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<SourceConnection>, StoreError> {
        self.connections_with_status_impl(provider, status).await
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.record_sync_impl(user.clone(), provider, at, error)
            .await
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SourceConnection>, StoreError> {
        self.try_refresh_lease_impl(user.clone(), provider, owner.to_owned(), now, until)
            .await
    }

    async fn finish_refresh(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        outcome: RefreshOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let finished = self
            .finish_refresh_impl(user.clone(), provider, owner.to_owned(), outcome, now)
            .await?;
        self.inner.outbox_written.notify_one();
        Ok(finished)
    }

    async fn create_job(
        &self,
        job: NewJob,
        coalesce_within: Option<chrono::Duration>,
    ) -> Result<Created, StoreError> {
        self.create_job_impl(job, crate::store::Admission::of_poll(coalesce_within))
            .await
    }

    async fn create_requested_job(
        &self,
        job: NewJob,
        max_queued: u32,
    ) -> Result<Created, StoreError> {
        self.create_job_impl(job, crate::store::Admission::Request { max_queued })
            .await
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        self.claim_job_impl(owner.to_owned(), now, until).await
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.checkpoint_job_impl(job, owner.to_owned(), checkpoint, until)
            .await
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.renew_job_lease_impl(job, owner.to_owned(), until)
            .await
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        let ended = self
            .finish_job_impl(job, owner.to_owned(), end, now)
            .await?;
        self.inner.outbox_written.notify_one();
        Ok(ended)
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        self.get_job_impl(job).await
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        self.list_jobs_impl(user.clone(), limit).await
    }

    async fn job_backlog(&self, now: DateTime<Utc>) -> Result<JobBacklog, StoreError> {
        self.job_backlog_impl(now).await
    }

    async fn put_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError> {
        self.put_delivery_impl(delivery).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.claim_deliveries_impl(owner.to_owned(), now, until, limit)
            .await
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.finish_deliveries_impl(owner.to_owned(), ends, now)
            .await
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.get_delivery_impl(delivery).await
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        self.inbox_backlog_impl().await
    }
}

/// The newest reading each user got in a batch (by position in the batch and the
/// created_at its row keeps): only these can become a user's latest, so only these
/// are copied for the cache.
#[derive(Default)]
struct NewestWrites<'a>(HashMap<&'a str, (usize, DateTime<Utc>)>);

impl<'a> NewestWrites<'a> {
    /// Notes that `readings[i]` was inserted or replaced. Of two writes to one
    /// instant the later one wins.
    fn note(&mut self, readings: &'a [Reading], i: usize, created_at: DateTime<Utc>) {
        match self.0.entry(readings[i].user_id.as_str()) {
            Entry::Occupied(mut best) => {
                if readings[i].timestamp >= readings[best.get().0].timestamp {
                    best.insert((i, created_at));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert((i, created_at));
            }
        }
    }

    fn users(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.0.keys().copied()
    }

    /// The noted readings as stored, with the version and updated_at of `results`
    /// (which is in batch order).
    fn into_stored(self, readings: &[Reading], results: &[Upserted]) -> Vec<StoredReading> {
        self.0
            .into_values()
            .map(|(i, created_at)| StoredReading {
                reading: readings[i].clone(),
                version: results[i].version,
                created_at,
                updated_at: results[i].updated_at,
            })
            .collect()
    }
}

fn duplicate(stored: &StoredReading, kind: DuplicateKind) -> Upserted {
    Upserted {
        outcome: Outcome::Duplicate(kind),
        version: stored.version,
        updated_at: stored.updated_at,
    }
}

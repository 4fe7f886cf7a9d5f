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

mod account_tokens;
mod accounts;
mod alerts;
mod audit;
mod connections;
mod daily;
mod health_upload;
mod inbox;
mod invitations;
mod jobs;
mod journal;
mod latest_cache;
mod meal_responses;
mod migrations;
mod notifications;
mod outbox;
mod profiles;
mod readings;
mod rows;
mod shares;
mod stale;
mod tasks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use latest_cache::LatestCache;

use super::{Store, StoreError};

const READERS: usize = 4;
/// Users whose latest reading is kept in memory (a few hundred bytes each).
const LATEST_CACHE_USERS: usize = 100_000;

use crate::config::Durability;

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

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await
    }
}

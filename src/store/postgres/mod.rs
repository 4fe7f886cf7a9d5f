//! The PostgreSQL backend (STORAGE_BACKEND=postgres), for running several
//! instances on one database.
//!
//! Every method is one transaction on a bounded sqlx pool. What SQLite gets from
//! its single writer, this backend gets from the database: row locks and
//! conditional updates for leases and claims, `FOR UPDATE SKIP LOCKED` for
//! queues, and transaction-scoped advisory locks where a decision spans rows that
//! may not exist yet (migrations, partition creation, job coalescing, the audit
//! trail's order). Readings live in a table partitioned by month (`partitions`);
//! a batch is resolved in Rust with `Reading::resolve_against` and written with
//! array parameters, a few statements per batch whatever its size (`readings`).
//!
//! Times are kept to the millisecond, like the SQLite backend, so both hand back
//! the same values; reading times are whole seconds.

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
mod meal_responses;
mod migrations;
mod notifications;
mod outbox;
mod partitions;
mod profiles;
mod readings;
mod shares;
mod stale;
mod tasks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection as _, PgPool, Postgres, Row};

use super::{Store, StoreError};
use crate::domain::UserId;

use partitions::Partitions;

/// How long a caller waits for a pooled connection before the store reports
/// itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    partitions: Partitions,
    /// Woken after commits that wrote to the outbox.
    outbox_written: tokio::sync::Notify,
}

impl PostgresStore {
    /// Connects (at most `max_connections` at a time), applies pending
    /// migrations and creates the months' reading partitions.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::open(parse_url(url)?, max_connections).await
    }

    /// The same, with every table in `schema` (created if missing) instead of
    /// the connection's default: each test gets a schema of its own this way.
    /// `schema` is lowercase letters, digits and `_`.
    pub async fn connect_in_schema(
        url: &str,
        max_connections: u32,
        schema: &str,
    ) -> Result<Self, StoreError> {
        let valid = (1..=63).contains(&schema.len())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::Internal(format!(
                "schema name {schema:?} must be 1-63 lowercase letters, digits or '_'"
            )));
        }
        let options = parse_url(url)?;
        let mut conn = options
            .connect()
            .await
            .map_err(|e| unreachable(&options, e))?;
        // IF NOT EXISTS alone still races between instances starting together.
        let mut tx = conn.begin().await.map_err(db_error)?;
        advisory_lock(&mut tx, "cgm-hub schema creation", schema).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
        )))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        conn.close().await.map_err(db_error)?;
        // Set at connection start-up, so every pooled connection sees only this schema.
        Self::open(options.options([("search_path", schema)]), max_connections).await
    }

    async fn open(options: PgConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("cgm-hub"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| unreachable(&options, e))?;
        let prepared = async {
            migrations::apply(&pool).await?;
            Partitions::load(&pool, Utc::now()).await
        };
        let partitions = match prepared.await {
            Ok(partitions) => partitions,
            Err(e) => {
                // Ends the sessions now, rolling back what they held (the
                // migration lock among it), rather than whenever the pool's
                // tasks next run.
                pool.close().await;
                return Err(e);
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                partitions,
                outbox_written: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Closes every pooled connection; calls after this fail as unavailable.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.inner.pool.begin().await.map_err(db_error)
    }

    /// Wakes the relay after a commit that wrote `events` outbox messages.
    fn written(&self, events: usize) {
        if events > 0 {
            self.inner.outbox_written.notify_one();
        }
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    // sqlx's message never repeats the URL, so no password reaches the logs.
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))
}

/// The first connection failed: name the server (never the password).
fn unreachable(options: &PgConnectOptions, e: sqlx::Error) -> StoreError {
    let server = format!(
        "{}:{} database {:?}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(default)")
    );
    match db_error(e) {
        StoreError::Unavailable(why) => {
            StoreError::Unavailable(format!("cannot reach PostgreSQL at {server}: {why}"))
        }
        other => other,
    }
}

/// Maps a driver error: the server or pool cannot serve now (retrying later may
/// work) is `Unavailable`, a value that does not decode is `Corrupt`, the rest
/// is `Internal`.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        E::Database(ref db) => {
            let code = db.code().unwrap_or_default();
            // Connection exceptions, insufficient resources, operator
            // intervention (shutdown, cancel), and transactions the server rolled
            // back to break a conflict: all pass if tried again later.
            let passing = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
                || code == "55P03";
            if passing {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Internal(e.to_string())
            }
        }
        E::ColumnDecode { .. } | E::Decode(_) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// One column of a row, by position.
fn col<'r, T>(row: &'r PgRow, i: usize) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(i).map_err(db_error)
}

/// A time as this backend keeps it: truncated to the millisecond.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn opt_ms(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(ms)
}

/// A count or limit for a bigint parameter.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A count read back, where a negative number can only mean a damaged row.
fn count(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {what}: {n}")))
}

fn user_id(raw: &str, what: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| StoreError::Corrupt(format!("{what} user id: {e}")))
}

/// Takes a transaction-scoped advisory lock on `subject` (may be empty) for
/// `purpose`, per schema, so that deployments (and tests) sharing a database
/// do not wait on each other.
async fn advisory_lock(
    tx: &mut sqlx::PgConnection,
    purpose: &'static str,
    subject: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext($1 || ' in ' || current_schema()), hashtext($2))",
    )
    .bind(purpose)
    .bind(subject)
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

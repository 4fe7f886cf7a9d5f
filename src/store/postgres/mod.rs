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

mod audit;
mod connections;
mod inbox;
mod jobs;
mod migrations;
mod outbox;
mod partitions;
mod readings;
mod shares;
mod tasks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection as _, PgPool, Postgres, Row};
use uuid::Uuid;

use super::{Scan, SharePage, ShareWrite, Store, StoreError, Upserted};
use crate::auth::audit::{AuditBatch, AuditQuery, AuditRecord};
use crate::auth::shares::Share;
use crate::connections::{
    Connection, ConnectionStatus, PendingAuthorization, Provider, RefreshOutcome,
};
use crate::domain::{Reading, StoredReading, UserId};
use crate::events::Message;
use crate::sources::webhook::inbox::{Accepted, Delivery, DeliveryEnd, NewDelivery};
use crate::sync::jobs::{Checkpoint, Created, JobBacklog, JobEnd, NewJob, SyncJob};

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

    async fn upsert_readings(&self, readings: Vec<Reading>) -> Result<Vec<Upserted>, StoreError> {
        self.upsert_readings_impl(readings).await
    }

    async fn latest_reading(&self, user: &UserId) -> Result<Option<StoredReading>, StoreError> {
        self.latest_reading_impl(user).await
    }

    async fn scan_readings(&self, scan: Scan) -> Result<Vec<StoredReading>, StoreError> {
        self.scan_readings_impl(scan).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(db_error)?;
        Ok(())
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
    ) -> Result<Vec<Message>, StoreError> {
        self.claim_outbox_impl(owner, now, until, limit).await
    }

    async fn ack_outbox(&self, ids: Vec<Uuid>) -> Result<usize, StoreError> {
        self.ack_outbox_impl(ids).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.outbox_backlog_impl().await
    }

    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        self.append_audit_impl(&entries).await
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
        self.list_shares_impl(patient, page).await
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        self.get_share_impl(patient, grantee).await
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        self.delete_share_impl(patient, grantee).await
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
        self.take_pending_authorization_impl(state_hash, now).await
    }

    async fn put_connection(&self, connection: Connection) -> Result<(), StoreError> {
        self.put_connection_impl(connection).await
    }

    async fn get_connection(
        &self,
        user: &UserId,
        provider: Provider,
    ) -> Result<Option<Connection>, StoreError> {
        self.get_connection_impl(user, provider).await
    }

    async fn list_connections(&self, user: &UserId) -> Result<Vec<Connection>, StoreError> {
        self.list_connections_impl(user).await
    }

    async fn connections_with_status(
        &self,
        provider: Provider,
        status: ConnectionStatus,
    ) -> Result<Vec<Connection>, StoreError> {
        self.connections_with_status_impl(provider, status).await
    }

    async fn record_sync(
        &self,
        user: &UserId,
        provider: Provider,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.record_sync_impl(user, provider, at, error).await
    }

    async fn try_refresh_lease(
        &self,
        user: &UserId,
        provider: Provider,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Connection>, StoreError> {
        self.try_refresh_lease_impl(user, provider, owner, now, until)
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
        self.finish_refresh_impl(user, provider, owner, outcome, now)
            .await
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
        self.claim_job_impl(owner, now, until).await
    }

    async fn checkpoint_job(
        &self,
        job: Uuid,
        owner: &str,
        checkpoint: Checkpoint,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.checkpoint_job_impl(job, owner, checkpoint, until)
            .await
    }

    async fn renew_job_lease(
        &self,
        job: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.renew_job_lease_impl(job, owner, until).await
    }

    async fn finish_job(
        &self,
        job: Uuid,
        owner: &str,
        end: JobEnd,
        now: DateTime<Utc>,
    ) -> Result<Option<SyncJob>, StoreError> {
        self.finish_job_impl(job, owner, end, now).await
    }

    async fn get_job(&self, job: Uuid) -> Result<Option<SyncJob>, StoreError> {
        self.get_job_impl(job).await
    }

    async fn list_jobs(&self, user: &UserId, limit: usize) -> Result<Vec<SyncJob>, StoreError> {
        self.list_jobs_impl(user, limit).await
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
        self.claim_deliveries_impl(owner, now, until, limit).await
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        ends: Vec<(Uuid, DeliveryEnd)>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.finish_deliveries_impl(owner, ends, now).await
    }

    async fn get_delivery(&self, delivery: Uuid) -> Result<Option<Delivery>, StoreError> {
        self.get_delivery_impl(delivery).await
    }

    async fn inbox_backlog(&self) -> Result<u64, StoreError> {
        self.inbox_backlog_impl().await
    }
}

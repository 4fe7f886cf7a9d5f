//! Embedded schema migrations, applied at start-up in one transaction that
//! holds an advisory lock, so instances starting together apply them once.

use sqlx::PgPool;

use super::{advisory_lock, db_error};
use crate::store::StoreError;

/// (version, SQL). Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_readings.sql")),
    (2, include_str!("migrations/0002_connections.sql")),
    (3, include_str!("migrations/0003_shares.sql")),
    (4, include_str!("migrations/0004_audit.sql")),
    (5, include_str!("migrations/0005_sync.sql")),
    (6, include_str!("migrations/0006_outbox.sql")),
    (7, include_str!("migrations/0007_latest_readings.sql")),
    (8, include_str!("migrations/0008_oauth_states_by_user.sql")),
    (9, include_str!("migrations/0009_open_jobs_by_user.sql")),
    (10, include_str!("migrations/0010_tasks.sql")),
    (11, include_str!("migrations/0011_profiles_daily.sql")),
    (12, include_str!("migrations/0012_alerts.sql")),
    (
        13,
        include_str!("migrations/0013_notification_endpoints.sql"),
    ),
    (14, include_str!("migrations/0014_accounts.sql")),
    (
        15,
        include_str!("migrations/0015_latest_readings_by_ts.sql"),
    ),
    (16, include_str!("migrations/0016_account_disabled.sql")),
    (17, include_str!("migrations/0017_invitations.sql")),
    (18, include_str!("migrations/0018_account_tokens.sql")),
    (19, include_str!("migrations/0019_journal.sql")),
    (20, include_str!("migrations/0020_meal_responses.sql")),
];

/// Migration 1 where TimescaleDB is available: `readings` as a hypertable.
const READINGS_AS_HYPERTABLE: &str = include_str!("migrations/0001_readings_timescaledb.sql");

pub(super) async fn apply(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    advisory_lock(&mut tx, "cgm-hub migrations", "").await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint      PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > newest {
        return Err(StoreError::Internal(format!(
            "database schema version {current} is newer than this build knows ({newest}); \
             refusing to run an older cgm-hub against it"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let sql = if *version == 1 && timescaledb(&mut tx).await? {
            READINGS_AS_HYPERTABLE
        } else {
            sql
        };
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Internal(format!("migration {version}: {}", db_error(e))))?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tracing::info!(version, "applied postgres migration");
    }
    tx.commit().await.map_err(db_error)
}

/// True when the TimescaleDB extension is installed or could be installed now.
/// Creating it needs the library preloaded and the right privileges; when that
/// fails the readings get native partitions instead.
///
/// UNTESTED here: the development machine has no TimescaleDB.
async fn timescaledb(tx: &mut sqlx::PgConnection) -> Result<bool, StoreError> {
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    if !available {
        return Ok(false);
    }
    // A savepoint, so a refusal leaves the migration's transaction usable.
    let mut attempt = sqlx::Connection::begin(&mut *tx).await.map_err(db_error)?;
    match sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(&mut *attempt)
        .await
    {
        Ok(_) => {
            attempt.commit().await.map_err(db_error)?;
            tracing::info!("readings are a TimescaleDB hypertable");
            Ok(true)
        }
        Err(e) => {
            attempt.rollback().await.map_err(db_error)?;
            tracing::warn!(error = %e, "TimescaleDB is available but cannot be created; using native partitions");
            Ok(false)
        }
    }
}

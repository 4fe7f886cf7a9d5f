//! Embedded schema migrations, applied in order at open; each runs in its own transaction.

use rusqlite::Connection;

use crate::store::StoreError;

/// (version, SQL). Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_readings.sql")),
    (2, include_str!("migrations/0002_connections.sql")),
    (3, include_str!("migrations/0003_shares.sql")),
    (4, include_str!("migrations/0004_audit.sql")),
    (5, include_str!("migrations/0005_sync.sql")),
    (6, include_str!("migrations/0006_outbox.sql")),
    (7, include_str!("migrations/0007_oauth_state_expiry.sql")),
    (8, include_str!("migrations/0008_open_jobs_by_user.sql")),
    (9, include_str!("migrations/0009_tasks.sql")),
    (10, include_str!("migrations/0010_profiles_daily.sql")),
    (11, include_str!("migrations/0011_alerts.sql")),
    (
        12,
        include_str!("migrations/0012_notification_endpoints.sql"),
    ),
    (13, include_str!("migrations/0013_accounts.sql")),
    (14, include_str!("migrations/0014_newest_readings.sql")),
    (15, include_str!("migrations/0015_account_disabled.sql")),
    (16, include_str!("migrations/0016_invitations.sql")),
    (17, include_str!("migrations/0017_account_tokens.sql")),
    (18, include_str!("migrations/0018_journal.sql")),
    (19, include_str!("migrations/0019_meal_responses.sql")),
];

/// The newest schema version this build knows.
fn newest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// The database's schema version (0: none applied).
fn current(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}

/// Refuses a database whose schema is not exactly this build's.
pub fn require_current(conn: &Connection) -> Result<(), StoreError> {
    // No schema_migrations table yet: nothing applied.
    let current = current(conn).unwrap_or(0);
    let newest = newest();
    if current == newest {
        return Ok(());
    }
    Err(StoreError::Unavailable(format!(
        "database schema version {current}, this build's is {newest}: {}",
        if current < newest {
            "run `cgm-hub migrate` with the service stopped (serve also migrates at start-up)"
        } else {
            "use the cgm-hub version that serves this database"
        }
    )))
}

pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at_ms INTEGER NOT NULL
         )",
    )
    .map_err(super::internal)?;
    let current = current(conn).map_err(super::internal)?;
    let newest = newest();
    if current > newest {
        return Err(StoreError::Internal(format!(
            "database schema version {current} is newer than this build knows ({newest}); \
             refusing to run an older cgm-hub against it"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction().map_err(super::internal)?;
        tx.execute_batch(sql).map_err(super::internal)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?1, ?2)",
            (version, chrono::Utc::now().timestamp_millis()),
        )
        .map_err(super::internal)?;
        tx.commit().map_err(super::internal)?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_migrated_database_is_current() {
        let mut conn = Connection::open_in_memory().unwrap();
        let err = require_current(&conn).unwrap_err().to_string();
        assert!(err.contains("run `cgm-hub migrate`"), "{err}");
        apply(&mut conn).unwrap();
        require_current(&conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at_ms) VALUES (999, 0)",
            [],
        )
        .unwrap();
        let err = require_current(&conn).unwrap_err().to_string();
        assert!(err.contains("use the cgm-hub version"), "{err}");
    }
}

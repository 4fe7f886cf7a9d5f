//! What only the SQLite backend promises: its file, its mode, one process per file.

use cgm_hub::config::Durability;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::{AuditStore, ReadingStore};
use tempfile::TempDir;

use crate::helpers::*;

#[tokio::test]
async fn creates_its_folder_and_uses_wal() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested/deeper/cgm.db");
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    store
        .upsert_readings(vec![cgm("u1", slot(1), 100)])
        .await
        .unwrap();
    assert_eq!(journal_mode_from_header(&path), "wal");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "health data is private to its user");
    assert_eq!(mode(&path.with_extension("db-wal")), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
}

/// Reads the journal mode with the sqlite3 file header: bytes 18-19 are 2 in WAL mode.
fn journal_mode_from_header(path: &std::path::Path) -> &'static str {
    let header = std::fs::read(path).unwrap();
    if header[18] == 2 && header[19] == 2 {
        "wal"
    } else {
        "rollback"
    }
}

#[tokio::test]
async fn a_second_store_cannot_open_the_same_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("one.db");
    let first = SqliteStore::open(&path, Durability::Full).unwrap();
    let err = SqliteStore::open(&path, Durability::Full)
        .err()
        .expect("second open fails");
    assert!(
        err.to_string()
            .contains("in use by another cgm-hub process"),
        "{err}"
    );
    drop(first);
    SqliteStore::open(&path, Durability::Full).expect("free again once the first is closed");
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("reopen.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        store
            .upsert_readings(vec![cgm("u1", slot(1), 123)])
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    let latest = store.latest_reading(&user("u1")).await.unwrap().unwrap();
    assert_eq!(latest.reading.glucose.mg_dl().get(), 123);
}

#[tokio::test]
async fn the_audit_log_is_append_only_in_the_file() {
    use cgm_hub::records::audit::AuditEntry;
    use cgm_hub::records::roles::Role;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path, Durability::Normal).unwrap();
    store
        .append_audit(std::sync::Arc::from(vec![AuditEntry {
            at: chrono::Utc::now(),
            actor: user("ops"),
            actor_roles: [Role::Admin].into(),
            action: "read_readings",
            target_user: user("pat"),
            decision: "allowed",
            status: 200,
            request_id: "r1".into(),
        }]))
        .await
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

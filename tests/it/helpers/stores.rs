//! A store of each backend for one test, on a server that must be running (a
//! missing server fails the test), with its schema or tables dropped afterwards.

use std::sync::Arc;
#[cfg(feature = "dynamodb")]
use std::time::Duration;

use cgm_hub::config::Durability;
use cgm_hub::store::postgres::PostgresStore;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::Store;
use tempfile::TempDir;

/// A store under test plus whatever keeps its backing resources alive.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

pub async fn sqlite_store() -> TestStore {
    let dir = TempDir::new().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("test.db"), Durability::Normal)
        .expect("open sqlite store");
    TestStore {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

/// A PostgreSQL store in a fresh schema of its own, dropped with the TestStore.
pub async fn postgres_store() -> TestStore {
    let schema = PgSchema::new();
    let store = schema.store().await;
    TestStore {
        store: Arc::new(store),
        _guard: Box::new(schema),
    }
}

/// One test's PostgreSQL schema (`t_<uuid>`) on TEST_DATABASE_URL (default: the
/// local server, user postgres, database test), dropped when this is dropped.
pub struct PgSchema {
    pub url: String,
    pub name: String,
}

impl PgSchema {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            url: std::env::var("TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
            name: format!("t_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// A store on this schema (another instance, when called again). Panics when
    /// PostgreSQL cannot be reached: the postgres tests never skip silently.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect_in_schema(&self.url, 4, &self.name)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the postgres tests need a PostgreSQL server at {} \
                     (set TEST_DATABASE_URL to another one): {e}",
                    self.url
                )
            })
    }

    /// A plain connection that sees this schema, for looking behind the store.
    pub async fn connection(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", self.url));
        let set = format!("SET search_path = \"{}\"", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(set))
            .execute(&mut conn)
            .await
            .expect("search_path");
        conn
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let drop = format!(
            "SET lock_timeout = '10s'; SET client_min_messages = warning; \
             DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.name
        );
        // A schema left behind costs space, not correctness: say so and go on.
        if let Err(e) = sql_while_dropping(&self.url, drop) {
            eprintln!("test schema {} left behind: {e}", self.name);
        }
    }
}

/// Runs `sql` on PostgreSQL at `url` from a `Drop`: drop runs on the test's
/// runtime, which must not wait on async work, so this uses a thread and a
/// runtime of its own.
pub fn sql_while_dropping(url: &str, sql: String) -> Result<(), String> {
    let url = url.to_owned();
    let ran = std::thread::spawn(move || -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            conn.close().await.map_err(|e| e.to_string())
        })
    })
    .join();
    match ran {
        Ok(result) => result,
        Err(_) => Err("the dropping thread panicked".to_owned()),
    }
}

/// A DynamoDB store on the emulator at `TEST_DYNAMODB_ENDPOINT` (default
/// `http://127.0.0.1:8000`, moto: `scripts/dynamodb-local.sh`), with tables of
/// its own (a random prefix), so tests can run in parallel. Panics when the
/// emulator cannot be reached: a missing server is a failure, never a skip.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb_store() -> TestStore {
    use cgm_hub::store::dynamodb::DynamoStore;
    let settings = dynamodb_test_settings();
    let endpoint = settings.endpoint.clone().unwrap_or_default();
    let store = tokio::time::timeout(
        Duration::from_secs(60),
        DynamoStore::connect(settings.clone()),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{}",
            dynamodb_unreachable(&endpoint, "no answer within 60 s")
        )
    })
    .unwrap_or_else(|e| panic!("{}", dynamodb_unreachable(&endpoint, e)));
    TestStore {
        store: Arc::new(store),
        _guard: Box::new(DynamoTables(settings)),
    }
}

/// One test's settings for the emulator at `TEST_DYNAMODB_ENDPOINT` (default
/// `http://127.0.0.1:8000`): moto's `test`/`test` credentials and tables named
/// with a random prefix, so tests can run in parallel.
#[cfg(feature = "dynamodb")]
pub fn dynamodb_test_settings() -> cgm_hub::store::dynamodb::DynamoSettings {
    use cgm_hub::secret::Secret;
    use cgm_hub::store::dynamodb::{AwsCredentials, DynamoSettings, Tables};
    let endpoint = std::env::var("TEST_DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
    let prefix = format!("t{}_", uuid::Uuid::new_v4().simple());
    DynamoSettings {
        endpoint: Some(endpoint),
        region: "us-east-1".to_owned(),
        tables: Tables::prefixed(&prefix),
        static_credentials: Some(AwsCredentials {
            access_key_id: "test".to_owned(),
            secret_access_key: Secret::new("test".to_owned()),
            session_token: None,
        }),
    }
}

/// The panic message of a DynamoDB test whose emulator did not answer.
#[cfg(feature = "dynamodb")]
pub fn dynamodb_unreachable(endpoint: &str, error: impl std::fmt::Display) -> String {
    format!(
        "cannot reach the DynamoDB emulator at {endpoint} ({error}); start it with \
         scripts/dynamodb-local.sh or set TEST_DYNAMODB_ENDPOINT"
    )
}

/// One test's DynamoDB tables, deleted when this is dropped (the emulator
/// keeps every table in memory).
#[cfg(feature = "dynamodb")]
pub struct DynamoTables(pub cgm_hub::store::dynamodb::DynamoSettings);

#[cfg(feature = "dynamodb")]
impl Drop for DynamoTables {
    fn drop(&mut self) {
        // As for PgSchema: a thread and a runtime of its own.
        let settings = self.0.clone();
        let deleted = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(cgm_hub::store::dynamodb::DynamoStore::delete_tables(
                    &settings,
                ))
                .map_err(|e| e.to_string())
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test tables left behind: {e}"),
            Err(_) => eprintln!("test tables left behind: the deleting thread panicked"),
        }
    }
}

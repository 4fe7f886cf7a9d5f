//! Shared test fixtures: readings, stores, a running app, and the real binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cgm_hub::app::App;
use cgm_hub::config::{ApiVersion, Secret, Settings};
use cgm_hub::connections::cipher::TokenCipher;
use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use cgm_hub::events::rabbitmq::RabbitSettings;
use cgm_hub::events::MemoryBus;
use cgm_hub::pipeline::Pipeline;
use cgm_hub::simulator::dexcom::browser::consent;
use cgm_hub::simulator::dexcom::{RunningSimulator, SimConfig};
use cgm_hub::sources::dexcom::oauth::OAuthConfig;
use cgm_hub::sources::dexcom::outbound::{Breakers, CallBudget, Outbound, RetryPolicy};
use cgm_hub::sources::dexcom::service::{Callback, DexcomService};
use cgm_hub::store::postgres::PostgresStore;
use cgm_hub::store::sqlite::{Durability, SqliteStore};
use cgm_hub::store::Store;
use cgm_hub::sync::engine::SyncSettings;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use serde_json::{json, Value};
use tempfile::TempDir;

pub fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid test user id")
}

/// A recent instant on the 5-minute grid, `slot` grid steps before a fixed anchor.
pub fn slot(slot: i64) -> ReadingTime {
    // Fixed once per test run, so a run that crosses midnight stays consistent.
    static ANCHOR: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    let anchor = *ANCHOR.get_or_init(|| {
        Utc::now()
            .duration_trunc(ChronoDuration::days(1))
            .expect("truncation")
            - ChronoDuration::days(2)
    });
    ReadingTime::from_utc(anchor + ChronoDuration::minutes(5 * slot))
}

pub fn reading(user_id: &str, at: ReadingTime, mg_dl: u16, kind: ReadingType) -> Reading {
    Reading {
        user_id: user(user_id),
        timestamp: at,
        glucose: Glucose::value(MgDl::new(mg_dl).expect("in range")),
        trend: Some(Trend::Steady),
        trend_rate: Some(TrendRate::new(0.1).expect("in range")),
        device: DeviceInfo::parse(Some("G7-1".into()), Some("SN1".into()), Some("TX1".into()))
            .expect("valid device"),
        reading_type: kind,
        source: if kind == ReadingType::Manual {
            Source::manual()
        } else {
            Source::dexcom()
        },
        source_record_id: None,
        display_offset_minutes: None,
    }
}

pub fn cgm(user_id: &str, at: ReadingTime, mg_dl: u16) -> Reading {
    reading(user_id, at, mg_dl, ReadingType::Cgm)
}

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
        // Drop runs on the test's runtime, which must not wait on async work: the
        // schema is dropped from a thread and a runtime of its own.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let drop = format!(
                    "SET lock_timeout = '10s'; SET client_min_messages = warning; \
                     DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        // A schema left behind costs space, not correctness: say so and go on.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test schema {} left behind: {e}", self.name),
            Err(_) => eprintln!(
                "test schema {} left behind: the dropping thread panicked",
                self.name
            ),
        }
    }
}

/// A DynamoDB store on the emulator at `TEST_DYNAMODB_ENDPOINT` (default
/// `http://127.0.0.1:8000`, moto: `scripts/dynamodb-local.sh`), with tables of
/// its own (a random prefix), so tests can run in parallel. Panics when the
/// emulator cannot be reached: a missing server is a failure, never a skip.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb_store() -> TestStore {
    use cgm_hub::store::dynamodb::{DynamoSettings, DynamoStore, Tables};
    let endpoint = std::env::var("TEST_DYNAMODB_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
    let prefix = format!("t{}_", uuid::Uuid::new_v4().simple());
    let settings = DynamoSettings {
        endpoint: Some(endpoint.clone()),
        region: "us-east-1".to_owned(),
        tables: Tables::prefixed(&prefix),
        static_credentials: Some(("test".to_owned(), "test".to_owned())),
    };
    let store = tokio::time::timeout(
        Duration::from_secs(60),
        DynamoStore::connect(settings.clone()),
    )
    .await
    .unwrap_or_else(|_| panic!("DynamoDB emulator at {endpoint} did not answer within 60 s"))
    .unwrap_or_else(|e| {
        panic!(
            "cannot reach the DynamoDB emulator at {endpoint} ({e}); start it with \
             scripts/dynamodb-local.sh or set TEST_DYNAMODB_ENDPOINT"
        )
    });
    TestStore {
        store: Arc::new(store),
        _guard: Box::new(DynamoTables(settings)),
    }
}

/// One test's DynamoDB tables, deleted when this is dropped (the emulator
/// keeps every table in memory).
#[cfg(feature = "dynamodb")]
struct DynamoTables(cgm_hub::store::dynamodb::DynamoSettings);

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

/// The real router on a random port, in this process, over a temporary SQLite file.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub cipher: Arc<TokenCipher>,
    pub db_path: PathBuf,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// `{base}` in an override value becomes the app's own base URL (for
    /// DEXCOM_REDIRECT_URI, which must point back at this app).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "SQLITE_PATH".into(),
                dir.path().join("app.db").display().to_string(),
            ),
            ("AUTH_DISABLED".into(), "true".into()),
            ("SQLITE_SYNCHRONOUS".into(), "normal".into()),
            // Tests send bursts from one address; the limits have tests of their own.
            ("RATE_LIMIT_USER_PER_MINUTE".into(), "10000000".into()),
            ("RATE_LIMIT_ANONYMOUS_PER_MINUTE".into(), "10000000".into()),
        ]);
        for (k, v) in overrides {
            vars.insert((*k).into(), v.replace("{base}", &base));
        }
        let settings = Settings::from_vars(&vars).expect("test settings are valid");
        let app = App::build(settings).await.expect("app builds");
        let store = app.state.store.clone();
        let cipher = app.cipher().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            store,
            cipher,
            db_path: dir.path().join("app.db"),
            _dir: dir,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_with(&self, path: &str, header: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(header, value)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }
}

/// A reading in the contract's JSON input format.
pub fn reading_json(at: DateTime<Utc>, mg_dl: u16) -> Value {
    json!({
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "glucose_value": mg_dl,
        "trend_direction": "flat",
        "trend_rate": 0.2,
        "device_info": {"device_id": "G7-1", "serial_number": "SN1", "transmitter_id": "TX1"},
        "reading_type": "CGM",
        "source": "dexcom"
    })
}

/// A Dexcom v3 EGV record, as Dexcom sends it.
pub fn egv(at: chrono::DateTime<Utc>, value: u16) -> Value {
    json!({
        "recordId": uuid::Uuid::new_v4().to_string(),
        "systemTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "displayTime": (at - chrono::Duration::hours(5)).format("%Y-%m-%dT%H:%M:%S-05:00").to_string(),
        "transmitterId": "hashed-tx",
        "transmitterTicks": 123_456,
        "value": value,
        "status": null,
        "trend": "flat",
        "trendRate": 0.1,
        "unit": "mg/dL",
        "rateUnit": "mg/dL/min",
        "displayDevice": "iOS",
        "transmitterGeneration": "g7"
    })
}

/// Asserts the error envelope and returns its `error` object.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response.headers().contains_key("x-request-id"),
        "x-request-id on errors"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["details"].is_object(),
        "details is always an object: {body}"
    );
    body["error"].clone()
}

/// GET an absolute URL and parse the JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("request");
    response.json().await.expect("JSON body")
}

/// `GET {base}/metrics`: the Prometheus text.
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("request /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// The value of one series (name and labels, exactly as exported) in a scrape.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// A pipeline over `store`, and a subscription to the events its outbox relay
/// publishes to an in-process bus (the relay runs for the rest of the test).
pub fn pipeline_with_events(
    store: Arc<dyn Store>,
) -> (
    cgm_hub::pipeline::Pipeline,
    tokio::sync::broadcast::Receiver<Arc<cgm_hub::events::Message>>,
) {
    let bus = Arc::new(MemoryBus::default());
    let events = bus.subscribe();
    start_relay(store.clone(), bus);
    let pipeline = cgm_hub::pipeline::Pipeline::new(store, cgm_hub::domain::TimePolicy::default());
    (pipeline, events)
}

/// Publishes `store`'s outbox to `bus` for the rest of the test, as an app does.
pub fn start_relay(store: Arc<dyn Store>, bus: Arc<dyn cgm_hub::events::EventBus>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Box::leak(Box::new(stop));
    cgm_hub::events::relay::Relay::new(store, bus).start(stopped);
}

/// The next event on `events`, waiting up to 5 s for the relay.
pub async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<Arc<cgm_hub::events::Message>>,
) -> Value {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("event bus open")
        .json()
}

/// Every reading of a listing, following `pagination.next` links from `first_url`.
pub async fn all_readings(client: &reqwest::Client, first_url: &str) -> Vec<Value> {
    let mut readings = Vec::new();
    let mut next = Some(first_url.to_owned());
    while let Some(url) = next {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.expect("JSON page");
        readings.extend(
            page["data"]["readings"]
                .as_array()
                .expect("readings")
                .iter()
                .cloned(),
        );
        next = page["data"]["pagination"]["next"]
            .as_str()
            .map(str::to_owned);
    }
    readings
}

// --- RabbitMQ ---

/// The local broker (`rabbitmq-server`, guest/guest).
pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A channel on the local broker and the connection carrying it (keep both
/// alive while the channel is in use).
pub async fn broker_channel() -> Result<(lapin::Connection, lapin::Channel), lapin::Error> {
    let connection =
        lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// An exchange and queue of their own per test, so tests never read each
/// other's messages.
pub fn rabbit_settings(url: &str, name: &str) -> RabbitSettings {
    RabbitSettings {
        url: Secret::new(url.to_owned()),
        exchange: format!("test_events_{name}"),
        queue: format!("test_queue_{name}"),
    }
}

/// A fresh name for per-test resources.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The environment that points a `Binary` at `s`.
pub fn rabbit_env(s: &RabbitSettings) -> [(&'static str, &str); 4] {
    [
        ("EVENT_BUS", "rabbitmq"),
        ("RABBITMQ_URL", s.url.expose().as_str()),
        ("RABBITMQ_EXCHANGE", s.exchange.as_str()),
        ("RABBITMQ_QUEUE", s.queue.as_str()),
    ]
}

/// Runs `cgm-hub ARGS` to completion in `dir`, with nothing in its environment
/// but `envs` (a command, not a server: see `Binary` for that).
pub fn run_cgm_hub(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cgm-hub"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run cgm-hub")
}

/// The compiled `cgm-hub` binary, started with a fresh environment.
pub struct Binary {
    pub child: Child,
    pub base: String,
    /// Every line the process wrote to stdout (its JSON logs), so far.
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts `cgm-hub serve` on a port the OS picks (no race with other tests for
    /// a "free" port) and learns the address from its own "listening" log line.
    pub fn start(db: &Path) -> Self {
        Self::start_with(db, &[], &[])
    }

    /// `cgm-hub serve ARGS` with extra environment variables.
    pub fn start_with(db: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_cgm-hub"));
        let mut child = Command::new(exe)
            .arg("serve")
            .args(args)
            .current_dir(db.parent().expect("db has a folder"))
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("SQLITE_PATH", db)
            .env("AUTH_DISABLED", "true")
            .env("LOG_FORMAT", "json")
            .env("RATE_LIMIT_USER_PER_MINUTE", "10000000")
            .env("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "10000000")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cgm-hub");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            // Keep draining the pipe for the process's whole life, or it would block.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["message"] == "cgm-hub listening" {
                        let _ = tx.send(event["addr"].as_str().unwrap_or_default().to_owned());
                    }
                }
                keep.lock().expect("log lines").push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("cgm-hub logs the address it listens on");
        Self {
            child,
            base: format!("http://{addr}"),
            stdout: lines,
        }
    }

    /// Starts the binary and waits until `/health` answers 200.
    pub async fn start_healthy(db: &Path, client: &reqwest::Client) -> Self {
        let mut binary = Self::start(db);
        binary.wait_healthy(client).await;
        binary
    }

    pub async fn wait_healthy(&mut self, client: &reqwest::Client) {
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                self.child.try_wait().expect("poll child").is_none(),
                "cgm-hub exited early"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cgm-hub did not become healthy");
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM");
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cgm-hub did not exit within 30 s of SIGTERM");
    }

    /// SIGKILL: no shutdown hooks run.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Binary {
    /// A failed test must not leave a server behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// --- Dexcom: the simulator and client stacks pointed at it ---

/// A running Dexcom simulator with default settings.
pub async fn simulator() -> RunningSimulator {
    simulator_with(SimConfig::default()).await
}

pub async fn simulator_with(config: SimConfig) -> RunningSimulator {
    cgm_hub::simulator::dexcom::spawn(config)
        .await
        .expect("start the Dexcom simulator")
}

/// A TestApp whose Dexcom client is the simulator's (the OAuth redirect comes
/// back to the app itself).
pub async fn dexcom_app(sim: &RunningSimulator, extra: &[(&str, &str)]) -> TestApp {
    let config = SimConfig::default();
    let mut vars = vec![
        ("DEXCOM_API_BASE_URL", sim.base_url.as_str()),
        ("DEXCOM_CLIENT_ID", config.client_id.as_str()),
        ("DEXCOM_CLIENT_SECRET", config.client_secret.as_str()),
        ("DEXCOM_REDIRECT_URI", "{base}/oauth/callback"),
    ];
    vars.extend_from_slice(extra);
    let owned: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let borrowed: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    TestApp::spawn_with(&borrowed).await
}

/// Short retry waits, so fault tests take milliseconds, not seconds.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        backoff_factor: 2.0,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    }
}

/// One "instance" of the Dexcom client stack over `store`, talking to `sim`.
/// Several stacks over one store behave like several cgm-hub processes.
pub fn dexcom_stack(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    policy: RetryPolicy,
    breakers: Breakers,
    backfill_days: u32,
) -> Arc<DexcomService> {
    dexcom_stack_with(
        store,
        sim,
        policy,
        breakers,
        backfill_days,
        test_cipher(),
        ApiVersion::V3,
    )
}

/// `dexcom_stack` with a chosen token cipher and API version.
pub fn dexcom_stack_with(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    policy: RetryPolicy,
    breakers: Breakers,
    backfill_days: u32,
    cipher: TokenCipher,
    version: ApiVersion,
) -> Arc<DexcomService> {
    build_dexcom(
        store,
        sim,
        Arc::new(MemoryBus::default()),
        Outbound::new(
            policy,
            breakers,
            CallBudget::per_hour(60_000, Duration::from_secs(1)),
        ),
        cipher,
        version,
        SyncSettings {
            backfill_days,
            ..SyncSettings::default()
        },
    )
}

/// A Dexcom stack whose sync engine polls every `interval` and publishes to
/// `bus`, as one instance of the app would (start a `Scheduler` to poll).
pub fn dexcom_engine_stack(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    bus: Arc<MemoryBus>,
    interval: Duration,
) -> Arc<DexcomService> {
    build_dexcom(
        store,
        sim,
        bus,
        Outbound::new(
            fast_policy(),
            Breakers::new(5, Duration::from_secs(30)),
            CallBudget::per_hour(60_000, Duration::from_secs(1)),
        ),
        test_cipher(),
        ApiVersion::V3,
        SyncSettings {
            interval,
            backfill_days: 1,
            lease: Duration::from_secs(5),
            ..SyncSettings::default()
        },
    )
}

fn build_dexcom(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    bus: Arc<MemoryBus>,
    outbound: Outbound,
    cipher: TokenCipher,
    version: ApiVersion,
    sync: SyncSettings,
) -> Arc<DexcomService> {
    let config = SimConfig::default();
    start_relay(store.clone(), bus);
    let pipeline = Pipeline::new(store, cgm_hub::domain::TimePolicy::default());
    let service = DexcomService::build(
        pipeline,
        Arc::new(cipher),
        OAuthConfig {
            base_url: sim.base_url.parse().expect("simulator URL"),
            client_id: config.client_id,
            client_secret: Secret::new(config.client_secret),
            // Never followed: `connect` completes the flow itself.
            redirect_uri: "http://127.0.0.1:9/oauth/callback".parse().expect("URL"),
            pkce: true,
            state_ttl: cgm_hub::sources::dexcom::oauth::STATE_TTL,
            pending_per_user: 10,
        },
        outbound,
        version,
        sync,
    );
    // The engine runs queued jobs as the app's would; it runs for the rest of
    // the test (the stop sender is leaked on purpose).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Box::leak(Box::new(stop));
    service.engine().start(stopped);
    service
}

pub fn test_cipher() -> TokenCipher {
    TokenCipher::new(&[42; 32], &[])
}

/// The browser's part of the OAuth flow against the simulator, then the
/// callback handled by `service` directly.
pub async fn connect(service: &DexcomService, user_id: &str) {
    let started = service.begin(&user(user_id)).await.expect("begin");
    let back = consent(&started.login_url, user_id)
        .await
        .expect("the simulator consents");
    service
        .complete(Callback {
            browser: Some(started.browser_secret.expose().clone()),
            ..Callback::from_url(&back)
        })
        .await
        .expect("the state names the user")
        .outcome
        .expect("connected");
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A user connects Dexcom through the app's real HTTP flow, as a browser would:
/// `/oauth/authorize` (AUTH_DISABLED), the simulator's consent, and back to
/// `/oauth/callback` with the cookie. Works for a `TestApp` and a `Binary`.
pub async fn connect_over_http(base: &str, user_id: &str) {
    let browser = no_redirects();
    let started = browser
        .get(format!("{base}/oauth/authorize?user_id={user_id}"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(started.status(), 302, "authorize redirects to the login");
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_owned();
    let login: url::Url = started.headers()["location"]
        .to_str()
        .expect("location")
        .parse()
        .expect("login URL");
    let back = consent(&login, user_id)
        .await
        .expect("the simulator consents");
    let done = browser
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(done.status(), 200, "the callback connects {user_id}");
}

/// Waits until `condition` holds, polling every 25 ms; panics naming `what`
/// after `within`. For effects that follow an observable one (a relay deletes
/// what the bus already delivered; an inbox row is finished after its readings
/// are visible).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `GET path` (JSON) until `done` accepts the body, or panics after `within`.
pub async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let body = get_json(client, url).await;
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} did not reach the expected state within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! The storage backends side by side, in one run: bulk ingest, `latest_reading`
//! and a one-day `scan_readings`, on a fresh SQLite file and a fresh PostgreSQL
//! schema. Prints a markdown table (docs/performance.md keeps the results).
//!
//!   cargo bench --bench store_backends [-- READINGS USERS BATCH SECONDS]
//!
//! Defaults: 200,000 readings for 100 users in batches of 2,000; each read
//! workload runs SECONDS (default 5) with `READERS` concurrent tasks.
//! PostgreSQL comes from BENCH_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test); the bench makes a schema of its
//! own and drops it at the end. SQLite runs with `Durability::Full`, the
//! default, and PostgreSQL with the server's settings (synchronous_commit on
//! by default): both durable at every commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgm_hub::config::Durability;
use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use cgm_hub::store::postgres::PostgresStore;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::{Order, Scan, Store};
use chrono::{DurationRound, Utc};

/// Concurrent tasks of the read workloads.
const READERS: usize = 4;
/// Pool size of the PostgreSQL store (the service's default is 10).
const PG_CONNECTIONS: u32 = 10;
/// One reading every five minutes: a CGM's day.
const STEP_SECS: i64 = 300;
const DAY_SECS: i64 = 86_400;

struct Workload {
    readings: usize,
    users: usize,
    batch: usize,
    seconds: u64,
}

struct Figures {
    backend: &'static str,
    ingest_per_s: f64,
    concurrent_ingest_per_s: f64,
    latest_per_s: f64,
    day_scan_per_s: f64,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().unwrap_or(default);
    let workload = Workload {
        readings: arg(0, 200_000) as usize,
        users: arg(1, 100) as usize,
        batch: arg(2, 2_000) as usize,
        seconds: arg(3, 5),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(run(workload));
}

async fn run(w: Workload) {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    // One schema per fresh store, all under one prefix dropped at the end.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let schema = format!("bench_{}", &run_id[..12]);
    let stores = AtomicU64::new(0);
    println!(
        "{} readings, {} users, batches of {}, {} s per read workload, {READERS} readers",
        w.readings, w.users, w.batch, w.seconds
    );

    let mut table = Vec::new();
    {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let open = || {
            let path = dir.path().join(format!("{}.db", uuid::Uuid::new_v4()));
            let store = SqliteStore::open(&path, Durability::Full).expect("open sqlite");
            Arc::new(store) as Arc<dyn Store>
        };
        table.push(measure("sqlite", &w, || async { open() }).await);
    }
    {
        let connect = || async {
            let schema = format!("{schema}_{}", stores.fetch_add(1, Ordering::Relaxed));
            let store = PostgresStore::connect_in_schema(&url, PG_CONNECTIONS, &schema)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
            Arc::new(store) as Arc<dyn Store>
        };
        table.push(measure("postgres", &w, connect).await);
        drop_bench_schemas(&url, &schema).await;
    }

    println!();
    println!(
        "| backend | bulk ingest, 1 writer (readings/s) | bulk ingest, {READERS} writers (readings/s) \
         | latest_reading (calls/s) | one-day scan, 288 readings (calls/s) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for f in table {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            f.backend, f.ingest_per_s, f.concurrent_ingest_per_s, f.latest_per_s, f.day_scan_per_s
        );
    }
}

/// Every workload against `backend`; each ingest starts from a fresh store.
async fn measure<F, Fut>(backend: &'static str, w: &Workload, fresh: F) -> Figures
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(5))
        .expect("truncation");
    let batches = batches(w, now);

    let store = fresh().await;
    let started = Instant::now();
    for batch in batches.clone() {
        store.upsert_readings(batch).await.expect("ingest");
    }
    let ingest_per_s = w.readings as f64 / started.elapsed().as_secs_f64();
    eprintln!("{backend}: ingest with 1 writer: {ingest_per_s:.0} readings/s");

    let concurrent = fresh().await;
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let writers: Vec<_> = (0..READERS)
        .map(|_| {
            let (store, queue) = (concurrent.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some(batch) = next else { break };
                    store.upsert_readings(batch).await.expect("ingest");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let concurrent_ingest_per_s = w.readings as f64 / started.elapsed().as_secs_f64();
    eprintln!("{backend}: ingest with {READERS} writers: {concurrent_ingest_per_s:.0} readings/s");
    drop(concurrent);

    let users: Arc<Vec<UserId>> = Arc::new((0..w.users).map(user).collect());
    let duration = Duration::from_secs(w.seconds);
    let latest_per_s = {
        let users = users.clone();
        calls_per_second(&store, duration, move |store, i| {
            let user = users[i % users.len()].clone();
            async move {
                let found = store.latest_reading(&user).await.expect("latest");
                assert!(found.is_some(), "every user has readings");
            }
        })
        .await
    };
    eprintln!("{backend}: latest_reading: {latest_per_s:.0} calls/s");

    // A day that is fully stored for every user: the one before the newest.
    let until = now.timestamp() - DAY_SECS;
    let day_scan_per_s = calls_per_second(&store, duration, move |store, i| {
        let scan = Scan {
            user_id: users[i % users.len()].clone(),
            from: until - DAY_SECS,
            until,
            order: Order::Asc,
            limit: 288,
        };
        async move {
            let day = store.scan_readings(scan).await.expect("scan");
            assert_eq!(day.len(), 288, "a full day");
        }
    })
    .await;
    eprintln!("{backend}: one-day scan: {day_scan_per_s:.0} calls/s");

    Figures {
        backend,
        ingest_per_s,
        concurrent_ingest_per_s,
        latest_per_s,
        day_scan_per_s,
    }
}

/// Runs `call` from `READERS` tasks for `duration`; returns calls per second.
async fn calls_per_second<C, Fut>(store: &Arc<dyn Store>, duration: Duration, call: C) -> f64
where
    C: Fn(Arc<dyn Store>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..READERS)
        .map(|task| {
            let (store, call, done) = (store.clone(), call.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = task * 7919;
                while started.elapsed() < duration {
                    call(store.clone(), i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("reader");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn user(i: usize) -> UserId {
    UserId::parse(&format!("bench-user-{i:04}")).expect("valid user id")
}

/// Each user's readings, one every five minutes back from `now`, cut into
/// batches of one user's consecutive readings (what a sync writes).
fn batches(w: &Workload, now: chrono::DateTime<Utc>) -> Vec<Vec<Reading>> {
    let per_user = w.readings / w.users;
    let mut out = Vec::new();
    for u in 0..w.users {
        let user = user(u);
        let readings: Vec<Reading> = (0..per_user)
            .map(|k| {
                let at = now.timestamp() - STEP_SECS * k as i64;
                let value = 70 + ((u * 31 + k * 7) % 200) as u16;
                Reading {
                    user_id: user.clone(),
                    timestamp: ReadingTime::from_unix_seconds(at).expect("time"),
                    glucose: Glucose::value(MgDl::new(value).expect("in range")),
                    trend: Some(Trend::Steady),
                    trend_rate: Some(TrendRate::new(0.1).expect("rate")),
                    device: DeviceInfo::parse(
                        Some("G7".into()),
                        Some("SN-1".into()),
                        Some("TX-1".into()),
                    )
                    .expect("device"),
                    reading_type: ReadingType::Cgm,
                    source: Source::dexcom(),
                    source_record_id: None,
                    display_offset_minutes: None,
                }
            })
            .collect();
        out.extend(readings.chunks(w.batch).map(<[Reading]>::to_vec));
    }
    out
}

async fn drop_bench_schemas(url: &str, prefix: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return;
    };
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 || '%'")
            .bind(prefix)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for schema in schemas {
        let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await
        {
            eprintln!("cannot drop bench schema {schema}: {e}");
        }
    }
}

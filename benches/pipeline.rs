//! Code-path benchmarks: parsing bulk JSON, upserting into SQLite, and a 30-day
//! Dexcom backfill from the simulator, end to end.
//!
//! `cargo bench --bench pipeline`. HTTP throughput is measured separately by
//! `scripts/bench-http.sh` (wrk against the real binary and a trivial baseline).

use std::sync::Arc;

use cgm_hub::config::Durability;
use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use cgm_hub::pipeline::wire;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::Store;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BATCH: usize = 10_000;

fn readings(user: &UserId, offset: i64) -> Vec<Reading> {
    let device =
        DeviceInfo::parse(Some("G7".into()), Some("SN1".into()), Some("TX1".into())).unwrap();
    (0..BATCH as i64)
        .map(|i| Reading {
            user_id: user.clone(),
            timestamp: ReadingTime::from_unix_seconds(1_700_000_000 + (offset + i) * 300).unwrap(),
            glucose: Glucose::value(MgDl::new(80 + (i % 200) as u16).unwrap()),
            trend: Some(Trend::Steady),
            trend_rate: Some(TrendRate::new(0.3).unwrap()),
            device: device.clone(),
            reading_type: ReadingType::Cgm,
            source: Source::dexcom(),
            source_record_id: None,
            display_offset_minutes: None,
        })
        .collect()
}

fn upsert(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let mut group = c.benchmark_group("sqlite_upsert");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join(format!("{name}.db")), durability).unwrap(),
        );
        let user = UserId::parse("bench").unwrap();
        let mut offset = 0;
        group.bench_function(format!("insert_10k_new/{name}"), |b| {
            b.iter_batched(
                || {
                    offset += BATCH as i64;
                    readings(&user, offset)
                },
                |batch| rt.block_on(store.upsert_readings(batch)).unwrap(),
                BatchSize::PerIteration,
            )
        });
        let existing = readings(&user, offset);
        group.bench_function(format!("reupsert_10k_duplicates/{name}"), |b| {
            b.iter_batched(
                || existing.clone(),
                |batch| rt.block_on(store.upsert_readings(batch)).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let user = UserId::parse("bench").unwrap();
    let record = r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":120,"glucose_unit":"mg/dL",
        "trend_direction":"flat","trend_rate":0.1,"device_info":{"device_id":"G6-12345",
        "serial_number":"SN12345678","transmitter_id":"TX12345"},"reading_type":"CGM","source":"dexcom"}"#;
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_record", |b| {
        b.iter(|| wire::parse_record(std::hint::black_box(record), &user).unwrap())
    });
    group.finish();
}

/// One user's 30-day backfill: egvs over HTTP from the in-process simulator
/// (about 8,640 records), translation, validation and one durable SQLite batch
/// per window. Each iteration backfills a user never seen before; connecting
/// (the OAuth flow) happens outside the timed part.
fn dexcom_backfill(c: &mut Criterion) {
    use cgm_hub::config::ApiVersion;
    use cgm_hub::config::SyncSettings;
    use cgm_hub::connections::cipher::TokenCipher;
    use cgm_hub::pipeline::Pipeline;
    use cgm_hub::secret::Secret;
    use cgm_hub::simulator::dexcom::{browser::consent, spawn, SimConfig};
    use cgm_hub::sources::dexcom::oauth::OAuthConfig;
    use cgm_hub::sources::dexcom::outbound::{Breakers, CallBudget, Outbound, RetryPolicy};
    use cgm_hub::sources::dexcom::service::{Callback, DexcomService};
    use cgm_hub::sources::dexcom::sync::fetch_range;
    use std::time::{Duration, Instant};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("backfill.db"), Durability::Full).unwrap());
    let sim_config = SimConfig::default();
    let (sim, service) = rt.block_on(async {
        let sim = spawn(sim_config.clone()).await.unwrap();
        let pipeline = Pipeline::new(store.clone(), cgm_hub::domain::TimePolicy::default());
        let service = DexcomService::build(
            store.clone(),
            pipeline,
            Arc::new(TokenCipher::new(&[7; 32], &[])),
            OAuthConfig {
                base_url: sim.base_url.parse().unwrap(),
                client_id: sim_config.client_id.clone(),
                client_secret: Secret::new(sim_config.client_secret.clone()),
                redirect_uri: "http://127.0.0.1:9/oauth/callback".parse().unwrap(),
                pkce: true,
                state_ttl: cgm_hub::config::MAX_OAUTH_STATE_TTL,
                pending_per_user: 10,
            },
            Outbound::new(
                RetryPolicy {
                    max_retries: 3,
                    backoff_factor: 2.0,
                    base_delay: Duration::from_secs(1),
                    max_delay: Duration::from_secs(60),
                    max_retry_after: Duration::from_secs(120),
                    timeout: Duration::from_secs(30),
                },
                Breakers::new(5, Duration::from_secs(30)),
                CallBudget::per_hour(60_000, Duration::from_secs(30)),
            ),
            ApiVersion::V3,
            SyncSettings {
                backfill_days: 0,
                ..SyncSettings::default()
            },
        );
        (sim, service)
    });
    let pipeline = Pipeline::new(store.clone(), cgm_hub::domain::TimePolicy::default());
    let mut group = c.benchmark_group("dexcom_backfill");
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("30_days_one_user", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let user = UserId::parse(&format!("bench-{n}")).unwrap();
                    let started = service.begin(&user).await.unwrap();
                    let back = consent(&started.login_url, user.as_str()).await.unwrap();
                    let callback = Callback {
                        browser: Some(started.browser_secret.expose().clone()),
                        ..Callback::from_url(&back)
                    };
                    service.complete(callback).await.unwrap().outcome.unwrap();
                    let end = chrono::Utc::now();
                    let start = end - chrono::Duration::days(30);
                    let started = Instant::now();
                    let report = fetch_range(
                        service.client(),
                        &pipeline,
                        store.as_ref(),
                        &user,
                        start,
                        end,
                    )
                    .await
                    .unwrap();
                    total += started.elapsed();
                    assert!(
                        report.counts.inserted > 8_000,
                        "a 30-day backfill: {report:?}"
                    );
                }
                total
            })
        })
    });
    group.finish();
    drop(sim);
}

criterion_group!(benches, upsert, parse, dexcom_backfill);
criterion_main!(benches);

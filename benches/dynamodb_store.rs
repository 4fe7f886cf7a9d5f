//! DynamoDB store figures for the record, against an emulator (moto by default:
//! `scripts/dynamodb-local.sh`), so they measure the emulator as much as the
//! store: bulk ingest (readings/s), latest calls/s and one-day range calls/s.
//!
//! `BENCH_DYNAMODB_ENDPOINT=http://127.0.0.1:8000 cargo bench --bench dynamodb_store`
//! Sizes: `BENCH_READINGS` (default 2016, one week at 5 minutes), `BENCH_CALLS` (200).

use std::time::Instant;

use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use cgm_hub::secret::Secret;
use cgm_hub::store::dynamodb::{AwsCredentials, DynamoSettings, DynamoStore, Tables};
use cgm_hub::store::{Order, ReadingStore, Scan};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn readings(user: &UserId, count: usize) -> Vec<Reading> {
    let device =
        DeviceInfo::parse(Some("G7".into()), Some("SN1".into()), Some("TX1".into())).unwrap();
    (0..count as i64)
        .map(|i| Reading {
            user_id: user.clone(),
            timestamp: ReadingTime::from_unix_seconds(1_700_000_000 + i * 300).unwrap(),
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

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let endpoint = std::env::var("BENCH_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    let count = env_number("BENCH_READINGS", 2016);
    let calls = env_number("BENCH_CALLS", 200);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let prefix = format!("bench{}_", uuid::Uuid::new_v4().simple());
        let store = DynamoStore::connect(DynamoSettings {
            endpoint: Some(endpoint.clone()),
            region: "us-east-1".into(),
            tables: Tables::prefixed(&prefix),
            static_credentials: Some(AwsCredentials {
                access_key_id: "test".into(),
                secret_access_key: Secret::new("test".into()),
                session_token: None,
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("DynamoDB at {endpoint}: {e}"));
        let user = UserId::parse("bench-user").unwrap();
        let batch = readings(&user, count);

        let started = Instant::now();
        for chunk in batch.chunks(500) {
            store.upsert_readings(chunk.to_vec()).await.unwrap();
        }
        let ingest = started.elapsed();
        println!(
            "dynamodb bulk ingest: {count} readings in {:.2} s = {:.0} readings/s (batches of 500)",
            ingest.as_secs_f64(),
            count as f64 / ingest.as_secs_f64()
        );

        let started = Instant::now();
        for _ in 0..calls {
            store.latest_reading(&user).await.unwrap().unwrap();
        }
        let latest = started.elapsed();
        println!(
            "dynamodb latest: {calls} calls in {:.2} s = {:.0} calls/s",
            latest.as_secs_f64(),
            calls as f64 / latest.as_secs_f64()
        );

        let day = 86_400;
        let started = Instant::now();
        let mut returned = 0;
        for i in 0..calls {
            let from = 1_700_000_000 + (i as i64 % 6) * day;
            returned += store
                .scan_readings(Scan {
                    user_id: user.clone(),
                    from,
                    until: from + day,
                    order: Order::Asc,
                    limit: 1000,
                })
                .await
                .unwrap()
                .len();
        }
        let range = started.elapsed();
        println!(
            "dynamodb one-day range: {calls} calls in {:.2} s = {:.1} calls/s ({} readings per call)",
            range.as_secs_f64(),
            calls as f64 / range.as_secs_f64(),
            returned / calls.max(1)
        );
    });
}

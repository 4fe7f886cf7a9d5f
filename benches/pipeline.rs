//! Code-path benchmarks: parsing bulk JSON and upserting into SQLite.
//!
//! `cargo bench --bench pipeline`. HTTP throughput is measured separately by
//! `scripts/bench-http.sh` (wrk against the real binary and a trivial baseline).

use std::sync::Arc;

use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use cgm_hub::pipeline::wire;
use cgm_hub::store::sqlite::{Durability, SqliteStore};
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

criterion_group!(benches, upsert, parse);
criterion_main!(benches);

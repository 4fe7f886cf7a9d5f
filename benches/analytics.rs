//! All 49 metrics (plus ranges and GRI) for 5 users, about 14,000 readings in
//! all: the target is at least 100× faster than iglu-python on the same
//! data in the same run. `scripts/oracle/bench_data.py` writes the same dataset
//! (same generator and seed) for `scripts/bench-analytics.sh`.
//!
//! `cargo bench --bench analytics`; `scripts/bench-analytics.sh` runs the same
//! data through this code path and iglu-python side by side.

use cgm_hub::analytics::{self, Sample};
use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const USERS: usize = 5;
const PER_USER: usize = 2_800;

fn dataset() -> Vec<Vec<Sample>> {
    let mut state = 42u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..USERS)
        .map(|u| {
            let t0 = Utc
                .with_ymd_and_hms(2024, 6, 1, 0, 2 + u as u32, 0)
                .unwrap();
            (0..PER_USER)
                .filter(|i| i % 613 > 6)
                .map(|i| {
                    let m = i as f64 * 5.0;
                    let g = 130.0
                        + 50.0 * (m / 1440.0 * std::f64::consts::TAU + u as f64).sin()
                        + 25.0 * (m / 240.0).sin()
                        + (rnd() - 0.5) * 20.0;
                    Sample {
                        at: t0 + Duration::minutes(i as i64 * 5),
                        mg_dl: g.round().clamp(39.0, 401.0),
                    }
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let users = dataset();
    let total: usize = users.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("analytics");
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function(format!("stats_5_users_{total}_readings"), |b| {
        b.iter(|| {
            users
                .iter()
                .map(|s| analytics::stats(s, chrono_tz::Tz::America__New_York))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

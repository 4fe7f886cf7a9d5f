//! The maths behind the meal endpoints, without I/O: one meal's response, and the
//! responses of 100 meals over a 14-day trace (4,032 readings), as a request for "a
//! list of 100 meals with their responses" computes them; the issue's budget for that
//! request is 20 ms in all, so this shows how little of it the computation takes.
//! Also the unlogged-meal scan of the same trace.
//!
//! `cargo bench --bench meal_response`.

use cgm_hub::analytics::{meal_response, unlogged_meals, Sample};
use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};

const DAYS: i64 = 14;
const MEALS: i64 = 100;

/// 14 days of 5-minute readings with a response after each of 100 meals.
fn dataset() -> (Vec<Sample>, Vec<DateTime<Utc>>) {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 6, 0, 2, 0).unwrap();
    let span = DAYS * 1440;
    let meals: Vec<DateTime<Utc>> = (0..MEALS)
        .map(|i| t0 + Duration::minutes(60 + i * (span - 300) / MEALS))
        .collect();
    let mut state = 7u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let readings = (0..span / 5)
        .map(|i| {
            let at = t0 + Duration::minutes(i * 5);
            let rise: f64 = meals
                .iter()
                .map(|m| (at - *m).num_minutes() as f64)
                .filter(|t| (0.0..240.0).contains(t))
                .map(|t| 70.0 * (t / 45.0) * (-t / 45.0 + 1.0).exp())
                .sum();
            Sample {
                at,
                mg_dl: (105.0 + rise + (rnd() - 0.5) * 8.0).round(),
            }
        })
        .collect();
    (readings, meals)
}

fn bench(c: &mut Criterion) {
    let (readings, meals) = dataset();
    let now = readings.last().unwrap().at + Duration::hours(6);
    let mut g = c.benchmark_group("meal_response");
    g.bench_function("one_meal_in_14_days", |b| {
        b.iter(|| meal_response(meals[50], &readings, &meals, now))
    });
    g.bench_function("100_meals_in_14_days", |b| {
        b.iter(|| {
            meals
                .iter()
                .map(|m| meal_response(*m, &readings, &meals, now))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("unlogged_meals_14_days", |b| {
        b.iter(|| unlogged_meals(&readings, &meals))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Tests of the demo generator: determinism, the sensor grid, window semantics and physiological realism.

use super::curves::{smoothstep, Shape};
use super::events::{day_plan, weekday, MEAL_SHAPE, MEAL_SHAPE_MAX_SLOPE};
use super::hypos::{week_hypos, MAX_PER_WEEK};
use super::rng::{mix64, SplitMix64, Stream};
use super::*;
use chrono::{Duration, Timelike};
use std::collections::{BTreeMap, BTreeSet};

const DAY_SECS: i64 = 86_400;
const SLOTS_PER_DAY: usize = 288;
const REALISM_DAYS: i64 = 14;

/// Monday 2025-01-06 00:00:00 UTC: a fixed, arbitrary start for the test windows.
fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_736_121_600, 0).expect("valid timestamp")
}

fn patient(id: &str) -> DemoPatient {
    demo_patient(id).expect("known demo patient")
}

fn is_type_1(p: &DemoPatient) -> bool {
    p.description.starts_with("Type 1")
}

fn local_day(p: &DemoPatient, t: DateTime<Utc>) -> i64 {
    (t.timestamp() + i64::from(p.local_offset().local_minus_utc())).div_euclid(DAY_SECS)
}

/// Figures measured over a window, for the assertions and the report.
struct Stats {
    expected_slots: usize,
    present: usize,
    mean: f64,
    in_range: f64,
    below_70: usize,
    below_54: usize,
    above_180: usize,
    high: usize,
    min: u16,
    max: u16,
    max_adjacent_step: u16,
    max_step_per_slot_across_gaps: f64,
    night_mean: f64,
    dawn_mean: f64,
}

impl Stats {
    fn missing_fraction(&self) -> f64 {
        1.0 - self.present as f64 / self.expected_slots as f64
    }
}

fn measure(p: &DemoPatient, from: DateTime<Utc>, days: i64) -> Stats {
    let samples = p.samples(from, from + Duration::days(days));
    let count = |f: &dyn Fn(u16) -> bool| samples.iter().filter(|s| f(s.glucose_mg_dl)).count();

    let mut max_adjacent_step = 0;
    let mut max_step_per_slot_across_gaps: f64 = 0.0;
    for pair in samples.windows(2) {
        let step = pair[1].glucose_mg_dl.abs_diff(pair[0].glucose_mg_dl);
        let slots = (pair[1].timestamp - pair[0].timestamp).num_seconds() / SAMPLE_INTERVAL_SECS;
        if slots == 1 {
            max_adjacent_step = max_adjacent_step.max(step);
        }
        max_step_per_slot_across_gaps =
            max_step_per_slot_across_gaps.max(f64::from(step) / slots as f64);
    }

    // Dawn phenomenon: per local day, mean of 06:00-08:00 and of 02:00-04:00 local, then averaged over days.
    let mut per_day: BTreeMap<i64, [(f64, usize); 2]> = BTreeMap::new();
    for s in &samples {
        let bucket = match s.timestamp.with_timezone(&p.local_offset()).hour() {
            2 | 3 => 0,
            6 | 7 => 1,
            _ => continue,
        };
        let entry = per_day.entry(local_day(p, s.timestamp)).or_default();
        entry[bucket].0 += f64::from(s.glucose_mg_dl);
        entry[bucket].1 += 1;
    }
    let day_means: Vec<[f64; 2]> = per_day
        .values()
        .filter(|b| b[0].1 > 0 && b[1].1 > 0)
        .map(|b| [b[0].0 / b[0].1 as f64, b[1].0 / b[1].1 as f64])
        .collect();
    let average = |i: usize| day_means.iter().map(|d| d[i]).sum::<f64>() / day_means.len() as f64;

    Stats {
        expected_slots: usize::try_from(days).expect("positive") * SLOTS_PER_DAY,
        present: samples.len(),
        mean: samples
            .iter()
            .map(|s| f64::from(s.glucose_mg_dl))
            .sum::<f64>()
            / samples.len() as f64,
        in_range: count(&|g| (70..=180).contains(&g)) as f64 / samples.len() as f64,
        below_70: count(&|g| g < 70),
        below_54: count(&|g| g < 54),
        above_180: count(&|g| g > 180),
        high: samples
            .iter()
            .filter(|s| s.level == SensorLevel::High)
            .count(),
        min: samples.iter().map(|s| s.glucose_mg_dl).min().unwrap_or(0),
        max: samples.iter().map(|s| s.glucose_mg_dl).max().unwrap_or(0),
        max_adjacent_step,
        max_step_per_slot_across_gaps,
        night_mean: average(0),
        dawn_mean: average(1),
    }
}

fn report(p: &DemoPatient, s: &Stats) {
    println!(
        "{:<10} mean {:5.1}  TIR {:4.1}%  <70: {:2} (<54: {:2})  >180: {:4} (HIGH {:2})  range {}-{}  \
         missing {:4.2}%  max 5-min step {:2}  02-04h {:5.1} vs 06-08h {:5.1}",
        p.user_id,
        s.mean,
        100.0 * s.in_range,
        s.below_70,
        s.below_54,
        s.above_180,
        s.high,
        s.min,
        s.max,
        100.0 * s.missing_fraction(),
        s.max_adjacent_step,
        s.night_mean,
        s.dawn_mean,
    );
}

fn assert_realistic(p: &DemoPatient, s: &Stats) {
    let id = p.user_id;
    assert!((90.0..=200.0).contains(&s.mean), "{id}: mean {}", s.mean);
    assert!(
        (0.40..=0.95).contains(&s.in_range),
        "{id}: time in range {}",
        s.in_range
    );
    if is_type_1(p) {
        assert!(s.below_70 > 0, "{id}: a type-1 patient has lows");
    }
    assert!(s.above_180 > 0, "{id}: some values above 180");
    let missing = s.missing_fraction();
    assert!(
        (0.002..=0.03).contains(&missing),
        "{id}: missing fraction {missing}"
    );
    assert!(
        s.max_adjacent_step <= 25,
        "{id}: 5-minute step {}",
        s.max_adjacent_step
    );
    assert!(
        s.max_step_per_slot_across_gaps <= 25.0,
        "{id}: step across a gap"
    );
    assert!(
        s.dawn_mean > s.night_mean,
        "{id}: dawn {} <= night {}",
        s.dawn_mean,
        s.night_mean
    );
}

#[test]
fn realism_over_14_days() {
    for p in demo_patients() {
        let stats = measure(&p, start(), REALISM_DAYS);
        report(&p, &stats);
        assert_realistic(&p, &stats);
    }
}

#[test]
fn same_window_gives_identical_samples() {
    for p in demo_patients() {
        let (from, to) = (start() + Duration::days(3), start() + Duration::days(5));
        let first = p.samples(from, to);
        assert!(first.len() > 500, "{}: two days of samples", p.user_id);
        assert_eq!(first, p.samples(from, to));
        // Re-created patients (as another process would) give the same data.
        assert_eq!(first, patient(p.user_id).samples(from, to));
    }
}

#[test]
fn samples_agree_with_sample_at() {
    for p in demo_patients() {
        let from = start() + Duration::days(9);
        let samples = p.samples(from, from + Duration::days(1));
        for s in &samples {
            assert_eq!(p.sample_at(s.timestamp).as_ref(), Some(s));
            // Any instant inside the slot maps to the same sample.
            let inside = s.timestamp
                + Duration::seconds(SAMPLE_INTERVAL_SECS - 1)
                + Duration::milliseconds(999);
            assert_eq!(p.sample_at(inside).as_ref(), Some(s));
        }
        // And the slots missing from `samples` are gaps for `sample_at` too.
        let present: BTreeSet<_> = samples.iter().map(|s| s.timestamp).collect();
        let phase = i64::from(p.grid_offset_secs()) - from.timestamp();
        let first_slot = from + Duration::seconds(phase.rem_euclid(SAMPLE_INTERVAL_SECS));
        let gaps = (0..SLOTS_PER_DAY as i64)
            .map(|k| first_slot + Duration::seconds(k * SAMPLE_INTERVAL_SECS))
            .filter(|t| !present.contains(t) && *t < from + Duration::days(1))
            .inspect(|t| assert_eq!(p.sample_at(*t), None))
            .count();
        assert_eq!(gaps + samples.len(), SLOTS_PER_DAY, "{}", p.user_id);
    }
}

#[test]
fn timestamps_sit_on_the_patients_grid() {
    let offsets: BTreeSet<u32> = demo_patients()
        .iter()
        .map(DemoPatient::grid_offset_secs)
        .collect();
    assert_eq!(offsets.len(), 3, "each transmitter has its own phase");
    for p in demo_patients() {
        let samples = p.samples(start(), start() + Duration::days(2));
        for s in &samples {
            assert_eq!(s.timestamp.timestamp_subsec_nanos(), 0);
            let phase = s.timestamp.timestamp().rem_euclid(SAMPLE_INTERVAL_SECS);
            assert_eq!(phase, i64::from(p.grid_offset_secs()), "{}", p.user_id);
        }
        for pair in samples.windows(2) {
            let secs = (pair[1].timestamp - pair[0].timestamp).num_seconds();
            assert!(
                secs > 0 && secs % SAMPLE_INTERVAL_SECS == 0,
                "{}: {secs} s apart",
                p.user_id
            );
        }
    }
}

#[test]
fn samples_window_is_half_open_and_ascending() {
    let p = patient("demo-alice");
    let all = p.samples(start(), start() + Duration::days(1));
    assert!(
        all.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
        "strictly ascending"
    );
    assert!(all
        .iter()
        .all(|s| s.timestamp >= start() && s.timestamp < start() + Duration::days(1)));

    // A window starting and ending exactly on sample timestamps includes the first, excludes the last.
    let (a, b) = (all[10].timestamp, all[20].timestamp);
    let window = p.samples(a, b);
    assert_eq!(window.first(), Some(&all[10]));
    assert_eq!(window.last(), Some(&all[19]));
    assert_eq!(window, all[10..20].to_vec());

    // One nanosecond later, the sample at `a` is no longer in [from, to); at `b` it is.
    let nano = Duration::nanoseconds(1);
    assert_eq!(p.samples(a + nano, b + nano), all[11..21].to_vec());
    assert!(p.samples(b, a).is_empty());
    assert!(p.samples(a, a).is_empty());
}

#[test]
fn reported_values_follow_dexcom_limits() {
    for p in demo_patients() {
        for s in p.samples(start(), start() + Duration::days(REALISM_DAYS)) {
            match s.level {
                SensorLevel::InRange => assert!((40..=400).contains(&s.glucose_mg_dl)),
                SensorLevel::Low => assert_eq!(s.glucose_mg_dl, LOW_MG_DL),
                SensorLevel::High => assert_eq!(s.glucose_mg_dl, HIGH_MG_DL),
            }
        }
    }
    assert_eq!(super::report(39.4), (LOW_MG_DL, SensorLevel::Low));
    assert_eq!(super::report(39.5), (40, SensorLevel::InRange));
    assert_eq!(super::report(400.4), (400, SensorLevel::InRange));
    assert_eq!(super::report(400.5), (HIGH_MG_DL, SensorLevel::High));
}

#[test]
fn poorly_controlled_patient_sometimes_reads_high() {
    let carol = patient("demo-carol");
    let samples = carol.samples(start(), start() + Duration::weeks(8));
    let highs = samples
        .iter()
        .filter(|s| s.level == SensorLevel::High)
        .count();
    println!("demo-carol: {highs} HIGH readings in 8 weeks");
    assert!(highs > 0, "HIGH now and then");
    assert!(highs * 50 < samples.len(), "but rarely (< 2%)");
}

#[test]
fn trend_rate_follows_consecutive_readings() {
    for p in demo_patients() {
        let samples = p.samples(start(), start() + Duration::days(REALISM_DAYS));
        let mut after_gap = 0;
        for pair in samples.windows(2) {
            let (prev, cur) = (&pair[0], &pair[1]);
            let adjacent =
                cur.timestamp - prev.timestamp == Duration::seconds(SAMPLE_INTERVAL_SECS);
            assert_eq!(
                cur.trend_rate.is_some(),
                adjacent,
                "{}: None exactly after a gap",
                p.user_id
            );
            after_gap += usize::from(!adjacent);
            if let (Some(rate), true) = (
                cur.trend_rate,
                cur.level == SensorLevel::InRange && prev.level == cur.level,
            ) {
                // Both readings are rounded, the rate comes from the unrounded curve.
                let from_readings =
                    (f64::from(cur.glucose_mg_dl) - f64::from(prev.glucose_mg_dl)) / 5.0;
                assert!(
                    (rate - from_readings).abs() <= 0.25,
                    "{}: {rate} vs {from_readings}",
                    p.user_id
                );
                assert_eq!((rate * 10.0).round() / 10.0, rate, "one decimal");
            }
        }
        assert!(after_gap > 0, "{}: the window contains gaps", p.user_id);
    }
}

#[test]
fn days_are_not_periodic() {
    for p in demo_patients() {
        let first_day = local_day(&p, start()) + 1;
        let days = first_day..first_day + REALISM_DAYS - 1;
        let meal_times = |i: usize| -> BTreeSet<i64> {
            days.clone()
                .map(|d| {
                    day_plan(&p.profile, p.seed, d).meals[i]
                        .at
                        .rem_euclid(DAY_SECS)
                })
                .collect()
        };
        for meal in 0..3 {
            assert!(
                meal_times(meal).len() >= 8,
                "{}: meal {meal} times vary",
                p.user_id
            );
        }
        // The daily traces of two days are not equal: compare each slot with the one 24 h later.
        let day_one = start() + Duration::days(1);
        let pairs: Vec<(f64, f64)> = p
            .samples(day_one, day_one + Duration::days(1))
            .iter()
            .filter_map(|s| {
                let next = p.sample_at(s.timestamp + Duration::days(1))?;
                Some((f64::from(s.glucose_mg_dl), f64::from(next.glucose_mg_dl)))
            })
            .collect();
        let mean_abs_diff =
            pairs.iter().map(|(a, b)| (a - b).abs()).sum::<f64>() / pairs.len() as f64;
        assert!(
            pairs.len() > 200 && mean_abs_diff > 8.0,
            "{}: days differ by {mean_abs_diff}",
            p.user_id
        );
        // And the daily peak is not always at the same hour.
        let peak_hours: BTreeSet<u32> = (0..REALISM_DAYS)
            .filter_map(|d| {
                let from = start() + Duration::days(d);
                p.samples(from, from + Duration::days(1))
                    .into_iter()
                    .max_by_key(|s| s.glucose_mg_dl)
                    .map(|s| s.timestamp.hour())
            })
            .collect();
        assert!(
            peak_hours.len() >= 4,
            "{}: daily peaks at {peak_hours:?}",
            p.user_id
        );
    }
}

#[test]
fn weekends_start_later() {
    let p = patient("demo-bob");
    let first = local_day(&p, start());
    let breakfast = |d: i64| {
        day_plan(&p.profile, p.seed, d).meals[0]
            .at
            .rem_euclid(DAY_SECS)
    };
    for d in first..first + 28 {
        let weekend = weekday(d) >= 5;
        assert_eq!(breakfast(d) >= 8 * 3600 + 30 * 60, weekend, "day {d}");
    }
}

#[test]
fn type_1_patients_have_one_or_two_lows_a_week() {
    for p in demo_patients() {
        let first_week = local_day(&p, start()).div_euclid(7);
        for week in first_week..first_week + 52 {
            let planned = week_hypos(&p.profile, p.seed, week)
                .iter()
                .flatten()
                .count();
            if is_type_1(&p) {
                assert!(
                    (1..=MAX_PER_WEEK).contains(&planned),
                    "{}: {planned} lows",
                    p.user_id
                );
            } else {
                assert_eq!(planned, 0, "{}", p.user_id);
            }
        }
    }
}

#[test]
fn sensor_noise_is_smooth_not_white() {
    for p in demo_patients() {
        let t0 = start().timestamp();
        let noise: Vec<f64> = (0..2000)
            .map(|k| super::sensor::noise(&p.profile, p.seed, t0 + k * SAMPLE_INTERVAL_SECS))
            .collect();
        let mean = noise.iter().sum::<f64>() / noise.len() as f64;
        let var = noise.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / noise.len() as f64;
        let lag1 = noise
            .windows(2)
            .map(|w| (w[0] - mean) * (w[1] - mean))
            .sum::<f64>()
            / (noise.len() - 1) as f64;
        let autocorrelation = lag1 / var;
        assert!(
            autocorrelation > 0.6,
            "{}: lag-1 autocorrelation {autocorrelation}",
            p.user_id
        );
        let sd = var.sqrt();
        assert!((0.5..=5.0).contains(&sd), "{}: noise sd {sd}", p.user_id);
    }
}

#[test]
fn gaps_are_short_signal_losses_or_sensor_warmups() {
    for p in demo_patients() {
        let samples = p.samples(start(), start() + Duration::weeks(4));
        let runs: Vec<i64> = samples
            .windows(2)
            .map(|w| (w[1].timestamp - w[0].timestamp).num_seconds() / SAMPLE_INTERVAL_SECS - 1)
            .filter(|&missing| missing > 0)
            .collect();
        let warmup_slots = p.profile.warmup_secs / SAMPLE_INTERVAL_SECS;
        assert!(
            runs.contains(&warmup_slots),
            "{}: a sensor change in 4 weeks: {runs:?}",
            p.user_id
        );
        for run in &runs {
            assert!(
                (3..=warmup_slots.max(12) + 12).contains(run),
                "{}: gap of {run} slots",
                p.user_id
            );
        }
        assert!(
            runs.len() >= 8,
            "{}: a few gaps a week: {runs:?}",
            p.user_id
        );
    }
}

#[test]
fn works_far_from_today() {
    for p in demo_patients() {
        for secs in [0, -86_400 * 365, 4_102_444_800, 7_258_118_400] {
            let t = DateTime::from_timestamp(secs, 0).expect("valid timestamp");
            let day = p.samples(t, t + Duration::days(1));
            assert!(
                day.len() > 250,
                "{}: {} samples at {t}",
                p.user_id,
                day.len()
            );
            assert!(day
                .iter()
                .all(|s| (LOW_MG_DL..=HIGH_MG_DL).contains(&s.glucose_mg_dl)));
        }
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            // No panic or overflow at chrono's limits; a slot starting before MIN_UTC is simply absent.
            assert!(p.sample_at(t).is_none_or(|s| s.timestamp <= t));
            assert!(p.samples(t, t).is_empty());
        }
    }
}

#[test]
fn patients_are_well_formed() {
    let patients = demo_patients();
    assert_eq!(patients.len(), 3);
    let ids: BTreeSet<_> = patients.iter().map(|p| p.user_id).collect();
    let seeds: BTreeSet<_> = patients.iter().map(|p| p.seed).collect();
    assert_eq!((ids.len(), seeds.len()), (3, 3));
    for p in &patients {
        assert!((1..=64).contains(&p.user_id.len()));
        assert!(p
            .user_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert!(!p.description.is_empty() && !p.description.contains('\n'));
        assert_eq!(p.transmitter_id.len(), 6);
        assert!(p
            .transmitter_id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(!p.serial_number.is_empty());
        assert!(["G6", "G7"].contains(&p.device_model));
        assert_eq!(
            i64::from(p.local_offset().local_minus_utc()),
            i64::from(p.profile.utc_offset_secs)
        );
        assert!(i64::from(p.grid_offset_secs()) < SAMPLE_INTERVAL_SECS);
        assert_eq!(demo_patient(p.user_id).as_ref(), Some(p));
    }
    assert_eq!(demo_patient("nobody"), None);
}

#[test]
fn rng_is_the_reference_splitmix64() {
    // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
    let mut rng = SplitMix64::from_state(0);
    assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    assert_eq!(mix64(0), 0);
    // Keyed streams are independent of each other and reproducible.
    let draw = |stream, index| SplitMix64::keyed(7, stream, index).next_u64();
    assert_eq!(draw(Stream::Meals, 5), draw(Stream::Meals, 5));
    assert_ne!(draw(Stream::Meals, 5), draw(Stream::Meals, 6));
    assert_ne!(draw(Stream::Meals, 5), draw(Stream::Exercise, 5));
    let mut rng = SplitMix64::keyed(1, Stream::Noise, -3);
    for _ in 0..1000 {
        let u = rng.unit();
        assert!((0.0..1.0).contains(&u));
        assert!((-1.0..1.0).contains(&rng.symmetric()));
        assert!((10..=12).contains(&rng.int_in(10, 12)));
    }
}

#[test]
fn meal_shape_slope_constant_holds() {
    let steepest = |shape: Shape| {
        let n = 100_000;
        (0..n)
            .map(|i| {
                (shape.eval(f64::from(i + 1) / f64::from(n))
                    - shape.eval(f64::from(i) / f64::from(n)))
                    * f64::from(n)
            })
            .fold(0.0_f64, |m, d| m.max(d.abs()))
    };
    let measured = steepest(MEAL_SHAPE);
    assert!(
        measured <= MEAL_SHAPE_MAX_SLOPE && measured > 0.97 * MEAL_SHAPE_MAX_SLOPE,
        "{measured}"
    );
    assert_eq!(MEAL_SHAPE.eval(MEAL_SHAPE.peak_fraction()), 1.0);
    assert_eq!(
        (smoothstep(-1.0), smoothstep(0.5), smoothstep(2.0)),
        (0.0, 0.5, 1.0)
    );
}

/// Pinned output: the Dexcom simulator must serve exactly these readings.
/// If this fails, the generator changed and every consumer's data moves with it.
#[test]
fn pinned_readings_do_not_change() {
    type Pin = (&'static str, i64, Option<(u16, Option<f64>)>);
    let pinned: [Pin; 14] = [
        ("demo-alice", 1_736_121_600, Some((103, Some(-0.1)))),
        ("demo-alice", 1_736_150_000, Some((105, Some(0.0)))),
        ("demo-alice", 1_736_200_000, Some((98, Some(-0.1)))),
        ("demo-alice", 1_740_000_000, Some((103, Some(0.1)))),
        ("demo-bob", 1_736_121_600, Some((112, Some(0.5)))),
        ("demo-bob", 1_736_150_000, Some((210, Some(-2.3)))),
        ("demo-bob", 1_736_200_000, Some((228, Some(-2.1)))),
        ("demo-bob", 1_740_000_000, Some((222, Some(-2.2)))),
        ("demo-bob", 1_736_220_851, Some((128, None))), // first reading after a gap
        ("demo-carol", 1_736_121_600, Some((144, Some(-1.3)))),
        ("demo-carol", 1_736_150_000, Some((103, Some(0.1)))),
        ("demo-carol", 1_736_200_000, None), // a gap
        ("demo-carol", 1_740_000_000, Some((268, Some(1.9)))),
        ("demo-carol", 1_737_651_944, Some((HIGH_MG_DL, Some(1.7)))),
    ];
    for (id, secs, expected) in pinned {
        let t = DateTime::from_timestamp(secs, 0).expect("valid timestamp");
        let got = patient(id)
            .sample_at(t)
            .map(|s| (s.glucose_mg_dl, s.trend_rate));
        assert_eq!(got, expected, "{id} at {t}");
    }
}

/// Multi-year soak run (about 5 s in a debug build), in the last step of scripts/test.sh;
/// `cargo test --lib -- --ignored long_run_stays_realistic --nocapture` prints its report.
#[test]
#[ignore = "slow in debug builds; run in release"]
fn long_run_stays_realistic() {
    for p in demo_patients() {
        for k in 0..52 {
            let stats = measure(&p, start() + Duration::days(REALISM_DAYS * k), REALISM_DAYS);
            if k % 13 == 0 {
                report(&p, &stats);
            }
            assert_realistic(&p, &stats);
        }
    }
}

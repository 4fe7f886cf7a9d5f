//! Parity of `analytics::stats` with iglu-python 0.4.3, the reference package,
//! run as a black-box oracle (`scripts/iglu-oracle.sh`; GPL, never read or
//! ported). Generated, deterministic datasets cover Dexcom-like 5-minute data
//! with gaps and warm-ups, Libre-like 15-minute data, DST changes in two zones,
//! duplicate timestamps, less than a day of data, MAGE's segment rules (gaps of
//! 180 and 185 minutes, short segments) and several weeks. Every metric
//! is compared to 1e-6 relative (1e-9 absolute near zero), except any listed in
//! `KNOWN` with the measured deviation they are held to (docs/analytics.md).
//! Failing to install or run the oracle fails the test (never skips).

use std::collections::BTreeMap;
use std::process::Command;

use cgm_hub::analytics::{self, Sample};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// Metrics not yet at 1e-6 parity on any dataset: (key, relative tolerance,
/// why). Each bound is the largest relative deviation measured on these
/// datasets, rounded up (docs/analytics.md, "Known deviations"). Empty: every
/// metric is at parity on every dataset but the artefact ones below.
const KNOWN: &[(&str, f64, &str)] = &[];

/// Grid metrics on datasets where iglu-python's answer depends on an artefact,
/// so cgm-hub deliberately differs (docs/analytics.md):
/// - `duplicates`: iglu does not average readings with equal timestamps before
///   interpolating (its grid depends on the input order of the duplicates);
///   cgm-hub averages them, as the definition says, and is order-independent.
/// - `ny_fall`: in the repeated hour of a fall-back day iglu interpolates over a
///   wall-clock series that runs backwards; cgm-hub averages equal wall-clock
///   times. iglu crashes outright on `sd_roc`, `active_percent` (and `ndays`)
///   and the SD subtypes ("Cannot infer dst time"); cgm-hub answers them.
///
/// Bounds: the largest deviation measured there, rounded up (3.1 % and 0.85 %).
const ARTEFACT_DATASETS: &[(&str, f64)] = &[("duplicates", 4e-2), ("ny_fall", 1e-2)];
const GRID_METRICS: &[&str] = &[
    "conga24",
    "conga1",
    "modd",
    "mag",
    "gvp",
    "sd_roc",
    "hourly_auc",
    "active_percent",
    "ndays",
    "sd_w",
    "sd_hhmm",
    "sd_wsh",
    "sd_dm",
    "sd_b",
    "sd_bdm",
    "cv_mean",
    "cv_sd",
    "pgs",
    "mage",
];

/// A tiny deterministic generator (64-bit LCG), so the datasets never change.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn noise(&mut self, amp: f64) -> f64 {
        (self.next() - 0.5) * 2.0 * amp
    }
}

/// A glucose-like trace: daily meal peaks, slow drift and noise; `step` minutes
/// apart, `skip` says which indices are missing.
fn trace(
    seed: u64,
    start: DateTime<Utc>,
    step: i64,
    count: usize,
    skip: impl Fn(usize) -> bool,
) -> Vec<Sample> {
    let mut r = Lcg(seed);
    let mut out = Vec::new();
    for i in 0..count {
        if skip(i) {
            continue;
        }
        let minutes = i as f64 * step as f64;
        let day = (minutes / 1440.0 * std::f64::consts::TAU).sin();
        let meals = ((minutes / 1440.0 * 3.0 * std::f64::consts::TAU).sin())
            .max(0.0)
            .powi(3);
        let g = (125.0 + 45.0 * day + 120.0 * meals + r.noise(12.0)
            - 35.0 * (r.next() < 0.02) as i32 as f64)
            .round();
        out.push(Sample {
            at: start + Duration::minutes(i as i64 * step),
            mg_dl: g.clamp(39.0, 401.0),
        });
    }
    out
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn datasets() -> Vec<(&'static str, Tz, Vec<Sample>)> {
    let mut v = Vec::new();
    // Dexcom-like: 10 days, a 2-hour warm-up gap after a sensor change, a 40-minute
    // and a 3.5-hour gap, readings at LOW (39) and HIGH (401).
    let mut dex = trace(1, utc(2024, 5, 2, 9, 3), 5, 2880, |i| {
        (1000..1024).contains(&i) || (1500..1508).contains(&i) || (2200..2242).contains(&i)
    });
    dex[100].mg_dl = 39.0;
    dex[101].mg_dl = 39.0;
    dex[700].mg_dl = 401.0;
    v.push(("dexcom", Tz::UTC, dex));
    // Libre-like: 15-minute readings over 9 days across Berlin's spring change.
    v.push((
        "libre_berlin",
        Tz::Europe__Berlin,
        trace(2, utc(2024, 3, 26, 6, 11), 15, 864, |i| {
            (300..306).contains(&i)
        }),
    ));
    // New York spring forward (2024-03-10) and fall back (2024-11-03), 5-minute.
    v.push((
        "ny_spring",
        Tz::America__New_York,
        trace(3, utc(2024, 3, 8, 13, 2), 5, 1400, |i| {
            (300..320).contains(&i)
        }),
    ));
    v.push((
        "ny_fall",
        Tz::America__New_York,
        trace(4, utc(2024, 11, 1, 20, 4), 5, 1500, |_| false),
    ));
    // Duplicate timestamps: every 7th reading sent twice with another value.
    let mut dup = trace(5, utc(2024, 7, 1, 0, 2), 5, 1200, |_| false);
    let extra: Vec<Sample> = dup
        .iter()
        .step_by(7)
        .map(|s| Sample {
            at: s.at,
            mg_dl: s.mg_dl + 6.0,
        })
        .collect();
    dup.extend(extra);
    v.push(("duplicates", Tz::UTC, dup));
    // Less than a day: 8 hours.
    v.push((
        "short",
        Tz::UTC,
        trace(6, utc(2024, 8, 5, 6, 1), 5, 96, |_| false),
    ));
    // MAGE's segments: a 185-minute gap (splits), a 180-minute one (bridged), a
    // 25-point segment (shorter than the long moving average) and a 6-point one
    // (too short for a MAGE), between longer ones.
    v.push((
        "segments",
        Tz::UTC,
        trace(8, utc(2024, 10, 7, 5, 2), 5, 600, |i| {
            (100..136).contains(&i)
                || (300..335).contains(&i)
                || (360..400).contains(&i)
                || (425..470).contains(&i)
                || (476..520).contains(&i)
        }),
    ));
    // Three weeks with a few gaps (the consensus gate passes).
    v.push((
        "multiweek",
        Tz::UTC,
        trace(7, utc(2024, 9, 1, 0, 3), 5, 6048, |i| i % 997 < 9),
    ));
    v
}

fn oracle(csv: &str, tz: Tz) -> Value {
    let dir = std::env::temp_dir().join(format!("cgm-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.csv", tz.name().replace('/', "_")));
    std::fs::write(&path, csv).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/iglu-oracle.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&path)
        .arg(tz.name())
        .output()
        .expect("the oracle script runs (bash)");
    assert!(
        out.status.success(),
        "iglu-python oracle failed (it must install and run, also under CI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle prints JSON")
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= (rel * theirs.abs()).max(1e-9)
}

#[test]
fn every_metric_matches_iglu_python() {
    let sets = datasets();
    let mut by_tz: BTreeMap<&str, (Tz, String)> = BTreeMap::new();
    for (name, tz, samples) in &sets {
        let e = by_tz
            .entry(tz.name())
            .or_insert((*tz, "id,time,gl\n".to_string()));
        for s in samples {
            e.1.push_str(&format!("{name},{},{}\n", s.at.to_rfc3339(), s.mg_dl));
        }
    }
    let mut answers: BTreeMap<String, Value> = BTreeMap::new();
    for (tz, csv) in by_tz.values() {
        if let Value::Object(map) = oracle(csv, *tz) {
            answers.extend(map);
        }
    }
    let mut failures = Vec::new();
    let mut report = String::new();
    for (name, tz, samples) in &sets {
        let theirs = &answers[*name];
        let ours = serde_json::to_value(analytics::stats(samples, *tz).metrics).unwrap();
        let ours = ours.as_object().unwrap();
        assert_eq!(ours.len(), 49);
        for (key, mine) in ours {
            let known = KNOWN.iter().find(|(k, _, _)| k == key).map(|(_, t, _)| *t);
            let artefact = ARTEFACT_DATASETS
                .iter()
                .find(|(d, _)| d == name)
                .filter(|_| GRID_METRICS.contains(&key.as_str()))
                .map(|(_, t)| *t);
            let rel = known.unwrap_or(1e-6).max(artefact.unwrap_or(1e-6));
            let theirs = theirs.get(key).unwrap_or(&Value::Null);
            let ok = match (mine.as_f64(), theirs.as_f64()) {
                (Some(a), Some(b)) => {
                    if !close(a, b, 1e-6) {
                        report.push_str(&format!(
                            "{name}.{key}: ours {a} iglu {b} rel {:.2e}\n",
                            ((a - b) / b).abs()
                        ));
                    }
                    close(a, b, rel)
                }
                (None, None) => true,
                // iglu crashed (fall-back hour): cgm-hub still answers a number.
                (Some(a), None) if artefact.is_some() => {
                    report.push_str(&format!("{name}.{key}: ours {a} iglu null (crashed)\n"));
                    a.is_finite()
                }
                (a, b) => {
                    report.push_str(&format!("{name}.{key}: ours {a:?} iglu {b:?}\n"));
                    false
                }
            };
            if !ok {
                failures.push(format!("{name}.{key}: ours {mine} iglu {theirs}"));
            }
        }
    }
    eprintln!("deviations beyond 1e-6:\n{report}");
    assert!(
        failures.is_empty(),
        "metrics off parity:\n{}",
        failures.join("\n")
    );
}

/// The AGP's percentiles equal numpy's type-7 percentiles over iglu's own
/// 5-minute grid (the oracle prints them with `--agp`).
#[test]
fn agp_matches_the_oracle_grid() {
    let (name, tz, samples) = datasets().into_iter().find(|d| d.0 == "ny_spring").unwrap();
    let mut csv = "id,time,gl\n".to_string();
    for s in &samples {
        csv.push_str(&format!("{name},{},{}\n", s.at.to_rfc3339(), s.mg_dl));
    }
    let dir = std::env::temp_dir().join(format!("cgm-parity-agp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agp.csv");
    std::fs::write(&path, csv).unwrap();
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/iglu-oracle.sh"
        ))
        .arg(&path)
        .arg(tz.name())
        .arg("--agp")
        .output()
        .expect("the oracle script runs");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cols = v[name]["_agp"].as_array().expect("the oracle's AGP");
    let bins = analytics::agp(&samples, tz);
    assert_eq!(bins.len(), 288);
    assert_eq!(cols.len(), 288);
    for (b, c) in bins.iter().zip(cols) {
        assert_eq!(b.n as u64, c["n"].as_u64().unwrap(), "minute {}", b.minute);
        match c["p"].as_array() {
            None => assert!(b.p50.is_none()),
            Some(p) => {
                let ours = [b.p05, b.p25, b.p50, b.p75, b.p95];
                for (o, t) in ours.iter().zip(p) {
                    assert!(
                        close(o.unwrap(), t.as_f64().unwrap(), 1e-9),
                        "minute {}",
                        b.minute
                    );
                }
            }
        }
    }
}

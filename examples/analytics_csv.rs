//! Prints `analytics::stats` (and the AGP with `--agp`) of a CSV of id,time,gl as
//! JSON keyed by id, the same shape as `scripts/iglu-oracle.sh` prints, so the
//! two can be compared by hand:
//! `cargo run -q --example analytics_csv -- data.csv America/New_York`.
//! With `--repeat N` it instead times `stats` over every id, N times, and prints
//! the mean wall time of one pass (used by `scripts/bench-analytics.sh`).

use std::collections::BTreeMap;

use cgm_hub::analytics::{self, Sample};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let text = std::fs::read_to_string(&args[1]).expect("readable CSV");
    let tz: chrono_tz::Tz = args[2].parse().expect("IANA zone");
    let mut by_id: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let mut f = line.split(',');
        let (id, at, gl) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        by_id.entry(id.to_string()).or_default().push(Sample {
            at: at.parse().expect("RFC 3339 time"),
            mg_dl: gl.parse().expect("number"),
        });
    }
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let n: u32 = args[i + 1].parse().expect("a count");
        let total: usize = by_id.values().map(Vec::len).sum();
        let started = std::time::Instant::now();
        for _ in 0..n {
            for s in by_id.values() {
                std::hint::black_box(analytics::stats(std::hint::black_box(s), tz));
            }
        }
        let per = started.elapsed().as_secs_f64() / f64::from(n);
        println!(
            "cgm-hub analytics::stats: {per:.6} s per pass, {} users, {total} readings",
            by_id.len()
        );
        return;
    }
    let out: BTreeMap<String, serde_json::Value> = by_id
        .into_iter()
        .map(|(id, s)| {
            let mut v = serde_json::to_value(analytics::stats(&s, tz).metrics).expect("json");
            if args.iter().any(|a| a == "--agp") {
                v["_agp"] = serde_json::to_value(analytics::agp(&s, tz)).expect("json");
            }
            (id, v)
        })
        .collect();
    println!("{}", serde_json::to_string(&out).expect("json"));
}

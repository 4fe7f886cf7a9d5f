//! Times one Argon2id password hash at a given cost, to choose ARGON2_MEMORY_KIB,
//! ARGON2_ITERATIONS and ARGON2_PARALLELISM for a machine (docs/performance.md):
//! `cargo run --release --example argon2_cost -- [memory_kib iterations parallelism [samples]]`.
//! Prints the median and the spread of `samples` hashes (default 15), run one
//! at a time as the login pool runs each.

use std::time::{Duration, Instant};

use cgm_hub::accounts::hashing::{verify_blocking, HashCost};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("numbers: memory_kib iterations parallelism [samples]")
        })
        .collect();
    let cost = HashCost {
        memory_kib: args.first().copied().unwrap_or(19_456),
        iterations: args.get(1).copied().unwrap_or(2),
        parallelism: args.get(2).copied().unwrap_or(1),
    };
    let samples = args.get(3).copied().unwrap_or(15) as usize;
    let mut hashes: Vec<Duration> = Vec::with_capacity(samples);
    let mut verifies: Vec<Duration> = Vec::with_capacity(samples);
    for i in 0..samples {
        let password = format!("benchmark passphrase {i}");
        let start = Instant::now();
        let hash = cost.hash_blocking(&password).expect("hash");
        hashes.push(start.elapsed());
        let start = Instant::now();
        assert!(verify_blocking(&hash, &password).expect("verify"));
        verifies.push(start.elapsed());
    }
    let report = |what: &str, v: &mut Vec<Duration>| {
        v.sort();
        println!(
            "{what}: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} samples)",
            v[v.len() / 2].as_secs_f64() * 1e3,
            v[0].as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3,
            v.len()
        );
    };
    println!(
        "argon2id m={} KiB t={} p={}",
        cost.memory_kib, cost.iterations, cost.parallelism
    );
    report("hash", &mut hashes);
    report("verify", &mut verifies);
}

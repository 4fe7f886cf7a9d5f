//! Load tool for the live stream (not an API example): opens many
//! `GET /api/users/{id}/stream` connections to a running cgm-hub (started with
//! AUTH_DISABLED=true, see `scripts/bench-stream.sh`) and measures
//!
//! - `latency`: from the start of a reading's POST to each stream's receipt of
//!   its `reading` event, and of the `alert` event the reading raises or
//!   resolves (p50/p99/max over every stream and round);
//! - `idle`: the server's resident memory (VmRSS of `--pid`) before and after
//!   opening `--streams` idle streams, per stream.
//!
//! ```sh
//! sse_load latency --base http://127.0.0.1:5001 --streams 1000 --users 1 --rounds 30 --prefix run1
//! sse_load idle --base http://127.0.0.1:5001 --streams 10000 --pid 1234 --users 10000
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

struct Args {
    mode: String,
    base: String,
    streams: usize,
    users: usize,
    rounds: usize,
    pid: Option<u32>,
    /// Users are `<prefix>-00000`...: a new prefix per run on one server.
    prefix: String,
}

fn args() -> Args {
    let mut raw = std::env::args().skip(1);
    let mode = raw.next().unwrap_or_else(|| "latency".into());
    let mut a = Args {
        mode,
        base: "http://127.0.0.1:5001".into(),
        streams: 1000,
        users: 1,
        rounds: 30,
        pid: None,
        prefix: "load".into(),
    };
    while let Some(flag) = raw.next() {
        let value = raw.next().expect("a value after each flag");
        match flag.as_str() {
            "--base" => a.base = value,
            "--streams" => a.streams = value.parse().expect("number"),
            "--users" => a.users = value.parse().expect("number"),
            "--rounds" => a.rounds = value.parse().expect("number"),
            "--pid" => a.pid = Some(value.parse().expect("pid")),
            "--prefix" => a.prefix = value,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// What a stream saw: (stream, "reading" or "alert", what it is about, when).
type Seen = (usize, &'static str, String, Instant);

/// Opens one stream and reports each event it receives; `opened` is told once
/// the response headers arrived (the stream is registered by then).
async fn run_stream(
    client: reqwest::Client,
    url: String,
    index: usize,
    opened: mpsc::UnboundedSender<()>,
    seen: Option<mpsc::UnboundedSender<Seen>>,
) {
    let response = match client.get(&url).send().await {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => panic!("stream {index}: {}", r.status()),
        Err(e) => panic!("stream {index}: {e}"),
    };
    let _ = opened.send(());
    let mut body = response.bytes_stream();
    let mut buffer = Vec::<u8>::new();
    while let Some(Ok(chunk)) = body.next().await {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let Some(seen) = &seen else { continue };
            let text = String::from_utf8_lossy(&block);
            let mut event = "";
            let mut data = None;
            for line in text.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = if e == "reading" { "reading" } else { "alert" };
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(d).ok();
                }
            }
            if let Some(d) = data {
                let about = match event {
                    "reading" => d["timestamp"].as_str().unwrap_or_default().to_owned(),
                    _ => format!(
                        "{} {}",
                        d["type"].as_str().unwrap_or_default(),
                        d["status"].as_str().unwrap_or_default()
                    ),
                };
                let _ = seen.send((index, event, about, Instant::now()));
            }
        }
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

async fn open_streams(
    a: &Args,
    seen: Option<mpsc::UnboundedSender<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(a.streams);
    // In batches of 200, each open before the next starts: a burst of ten
    // thousand connects would overflow the listen backlog.
    let deadline = Instant::now() + Duration::from_secs(600);
    for first in (0..a.streams).step_by(200) {
        let batch = first..(first + 200).min(a.streams);
        for i in batch.clone() {
            let url = format!(
                "{}/api/users/{}-{:05}/stream",
                a.base,
                a.prefix,
                i % a.users
            );
            tasks.push(tokio::spawn(run_stream(
                client.clone(),
                url,
                i,
                opened_tx.clone(),
                seen.clone(),
            )));
        }
        for n in 0..batch.len() {
            tokio::select! {
                got = opened.recv() => { got.expect("streams report"); }
                _ = tokio::time::sleep_until(deadline.into()) => panic!("only {} of {} streams opened", first + n, a.streams),
            }
        }
    }
    tasks
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

async fn latency(a: &Args) {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let _tasks = open_streams(a, Some(seen_tx)).await;
    println!("{} streams open over {} user(s)", a.streams, a.users);
    let client = reqwest::Client::new();
    let per_user = |u: usize| (0..a.streams).filter(|i| i % a.users == u).count();
    // Fresh readings, one second apart, ending before now: each is the newest.
    let now = Utc::now().timestamp();
    let start = now - 14 * 60;
    let mut reading_ms = Vec::new();
    let mut alert_ms = Vec::new();
    // Rounds: normal, low (raises `low`), normal (resolves it).
    for round in 0..a.rounds {
        let value = if round % 3 == 1 { 60 } else { 120 };
        // The low raises an alert, the next normal one resolves it.
        let expect_alert = round % 3 != 0;
        let at: DateTime<Utc> = DateTime::from_timestamp(start + round as i64, 0).expect("time");
        let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for u in 0..a.users {
            let body = json!({"readings": [{"timestamp": stamp, "glucose_value": value,
                "glucose_unit": "mg/dL", "trend_direction": "steady", "reading_type": "CGM", "source": "api"}]});
            let sent = Instant::now();
            let r = client
                .post(format!("{}/api/bg/{}-{u:05}/readings", a.base, a.prefix))
                .json(&body)
                .send()
                .await
                .expect("post");
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
            let want_readings = per_user(u);
            let want_alerts = if expect_alert { want_readings } else { 0 };
            let (mut readings, mut alerts) = (0, 0);
            let mut got: HashMap<(usize, &str), ()> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while readings < want_readings || alerts < want_alerts {
                let next = tokio::select! {
                    n = seen.recv() => n.expect("streams alive"),
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        panic!("round {round}: {readings}/{want_readings} readings, {alerts}/{want_alerts} alerts")
                    }
                };
                let (i, kind, about, when) = next;
                if got.insert((i, kind), ()).is_some() {
                    continue;
                }
                let ms = when.duration_since(sent).as_secs_f64() * 1000.0;
                if kind == "reading" && about == stamp {
                    readings += 1;
                    reading_ms.push(ms);
                } else if kind == "alert" {
                    alerts += 1;
                    alert_ms.push(ms);
                } else {
                    got.remove(&(i, kind));
                }
            }
        }
    }
    report("reading event (POST start → stream receipt)", reading_ms);
    report("alert event (POST start → stream receipt)", alert_ms);
}

async fn idle(a: &Args) {
    let pid = a.pid.expect("--pid of the server");
    let before = vm_rss_kib(pid);
    let started = Instant::now();
    let _tasks = open_streams(a, None).await;
    let opened_in = started.elapsed();
    // Let the allocator settle after the burst of connects.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = vm_rss_kib(pid);
    println!(
        "{} idle streams opened in {:.1} s; server VmRSS {} KiB before, {} KiB after: {:.1} KiB per stream",
        a.streams,
        opened_in.as_secs_f64(),
        before,
        after,
        (after.saturating_sub(before)) as f64 / a.streams as f64
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    match a.mode.as_str() {
        "latency" => latency(&a).await,
        "idle" => idle(&a).await,
        other => panic!("mode {other}: latency or idle"),
    }
}

//! Load benchmarks of the sync engine (not criterion: they measure a running
//! service under a steady load). Results go to docs/performance.md.
//!
//!   cargo bench --bench sync_load -- webhook [RATE] [SECONDS]
//!     Signed deliveries at RATE per second (default 200) to the in-process
//!     app over HTTP; for each, the time from sending to the reading being
//!     readable (what GET latest reads), and the time to the 202.
//!
//!   cargo bench --bench sync_load -- scheduler [USERS] [SECONDS] [INTERVAL]
//!     USERS (default 100,000) connected users against the Dexcom simulator,
//!     polled by the release binary every INTERVAL seconds (default 900); the
//!     binary's CPU and RSS over SECONDS (default 180) of steady state.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cgm_hub::app::App;
use cgm_hub::config::Durability;
use cgm_hub::config::Settings;
use cgm_hub::connections::cipher::TokenCipher;
use cgm_hub::connections::TokenSet;
use cgm_hub::domain::UserId;
use cgm_hub::records::connections::{Connection, ConnectionStatus, Provider};
use cgm_hub::secret::Secret;
use cgm_hub::simulator::dexcom::{spawn, SimConfig};
use cgm_hub::sources::webhook::signature::sign;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::ConnectionStore;
use chrono::Utc;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match args.first().map(String::as_str) {
        Some("webhook") => runtime.block_on(webhook(arg(1, 200), arg(2, 30))),
        Some("scheduler") => runtime.block_on(scheduler(arg(1, 100_000), arg(2, 180), arg(3, 900))),
        // `cargo bench` without arguments runs every bench target: nothing here.
        _ => eprintln!("sync_load: pass `webhook` or `scheduler` (see the file's header)"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.90).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}

async fn webhook(rate: u64, seconds: u64) {
    const SECRET: &str = "bench-webhook-secret";
    let durability = std::env::var("SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "full".into());
    let dir = tempfile::TempDir::new().expect("temp dir");
    let vars: HashMap<String, String> = [
        (
            "SQLITE_PATH",
            dir.path().join("bench.db").display().to_string(),
        ),
        ("AUTH_DISABLED", "true".into()),
        ("WEBHOOK_SIGNING_SECRET", SECRET.into()),
        ("RATE_LIMIT_WEBHOOK_PER_MINUTE", "100000000".into()),
        ("SQLITE_SYNCHRONOUS", durability.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let app = App::build(Settings::from_vars(&vars).expect("settings"))
        .await
        .expect("app");
    let store = app.state.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let total = rate * seconds;
    let users = 200;
    // Whole seconds, as readings are stored.
    let first = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0)
        - chrono::Duration::seconds(total as i64 + 600);
    // One watcher checks what GET latest would answer for every acknowledged
    // delivery, every millisecond (one task, so the watching costs the same
    // however far behind the service is).
    let (acked_tx, mut acked_rx) =
        tokio::sync::mpsc::unbounded_channel::<(UserId, chrono::DateTime<Utc>, Instant, Duration)>(
        );
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut acks = Vec::new();
            let mut readable = Vec::new();
            let mut open = true;
            while open || !pending.is_empty() {
                while let Ok(item) = acked_rx.try_recv() {
                    pending.push(item);
                }
                if open && acked_rx.is_closed() && acked_rx.is_empty() {
                    open = false;
                }
                let mut still = Vec::with_capacity(pending.len());
                for (user, at, sent, ack) in pending {
                    let latest = store.latest_reading(&user).await.expect("latest");
                    if latest
                        .as_ref()
                        .is_some_and(|r| r.reading.timestamp.as_datetime() >= at)
                    {
                        acks.push(ack);
                        readable.push(sent.elapsed());
                    } else {
                        assert!(
                            sent.elapsed() < Duration::from_secs(60),
                            "{user} at {at} not readable after 60 s; latest {:?}, inbox backlog {:?}",
                            latest.map(|r| r.reading.timestamp),
                            store.inbox_backlog().await
                        );
                        still.push((user, at, sent, ack));
                    }
                }
                pending = still;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (acks, readable)
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut senders = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let user = UserId::parse(&format!("hook-{}", i % users)).expect("user id");
        let at = first + chrono::Duration::seconds(i as i64);
        let body = serde_json::to_vec(&json!({"type": "egvs", "records": [{
            "recordId": format!("r{i}"),
            "transmitterId": "bench-tx",
            "transmitterTicks": i,
            "systemTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "displayTime": at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
            "value": 100 + (i % 200),
            "trend": "flat", "trendRate": 0.0, "unit": "mg/dL", "rateUnit": "mg/dL/min",
            "status": null, "transmitterGeneration": "g7", "displayDevice": "iOS"
        }]}))
        .expect("json");
        let (client, acked, url) = (
            client.clone(),
            acked_tx.clone(),
            format!("{base}/api/bg/{user}/webhook"),
        );
        senders.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ts = Utc::now().timestamp();
            let response = client
                .post(url)
                .header("x-webhook-timestamp", ts.to_string())
                .header("x-webhook-signature", sign(SECRET.as_bytes(), ts, &body))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("deliver");
            assert_eq!(response.status(), 202);
            let _ = acked.send((user, at, sent, sent.elapsed()));
        }));
    }
    let offered = started.elapsed();
    drop(acked_tx);
    for sender in senders {
        sender.await.expect("delivery");
    }
    let (acks, readable) = watcher.await.expect("watcher");
    println!(
        "webhook: {total} deliveries offered at {rate}/s over {:.1} s (SQLITE_SYNCHRONOUS={durability})",
        offered.as_secs_f64()
    );
    summary("  sent -> 202", acks);
    summary("  sent -> readable", readable);
    let _ = stop.send(());
}

/// CPU seconds (user + system) and resident set (current, peak) of a process.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based); `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

async fn provision(
    db: &Path,
    sim: &cgm_hub::simulator::dexcom::DexcomSimulator,
    key: &[u8; 32],
    users: u64,
) {
    let store = SqliteStore::open(db, Durability::Normal).expect("store");
    let cipher = TokenCipher::new(key, &[]);
    let now = Utc::now();
    for i in 0..users {
        let user = UserId::parse(&format!("load-{i:06}")).expect("user id");
        let (access, refresh) = sim.provision_tokens(user.as_str());
        let sealed = cipher
            .seal(
                &user,
                Provider::Dexcom,
                &TokenSet {
                    access_token: Secret::new(access),
                    refresh_token: Secret::new(refresh),
                },
            )
            .expect("seal");
        store
            .put_connection(Connection {
                status: ConnectionStatus::Connected,
                tokens: Some(sealed),
                access_expires_at: Some(now + chrono::Duration::hours(24)),
                access_refresh_at: Some(now + chrono::Duration::hours(23)),
                connected_at: Some(now),
                ..Connection::disconnected(user, Provider::Dexcom, now)
            })
            .await
            .expect("connection");
    }
    drop(store);
    // Steady state from the start: each user synced up to five minutes ago.
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.execute(
        "UPDATE connections SET sync_cursor_ms = ?1",
        [(now - chrono::Duration::minutes(5)).timestamp_millis()],
    )
    .expect("cursor");
}

async fn scheduler(users: u64, seconds: u64, interval: u64) {
    let sim = spawn(SimConfig {
        access_token_ttl: Duration::from_secs(24 * 3600),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::TempDir::new().expect("temp dir");
    let db = dir.path().join("load.db");
    let key = [9u8; 32];
    let t = Instant::now();
    provision(&db, &sim.sim, &key, users).await;
    println!(
        "scheduler: provisioned {users} connected users in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    use base64::Engine;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = SimConfig::default();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cgm-hub"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("SQLITE_PATH", &db)
        .env("LOG_LEVEL", "WARNING")
        .env("AUTH_DISABLED", "true")
        .env(
            "TOKEN_ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(key),
        )
        .env("DEXCOM_API_BASE_URL", &sim.base_url)
        .env("DEXCOM_CLIENT_ID", &config.client_id)
        .env("DEXCOM_CLIENT_SECRET", &config.client_secret)
        .env(
            "DEXCOM_REDIRECT_URI",
            format!("http://127.0.0.1:{port}/oauth/callback"),
        )
        .env("DEXCOM_CALLS_PER_HOUR", "1000000")
        .env("POLL_INTERVAL_SECONDS", interval.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start cgm-hub");
    let client = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let mut metrics = None;
    for _ in 0..600 {
        if let Ok(r) = client.get(&metrics_url).send().await {
            metrics = r.text().await.ok();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.is_some(), "cgm-hub did not start");
    // The first minute: users are planned (one refresh of the connection list).
    tokio::time::sleep(Duration::from_secs(60)).await;
    let pid = child.id();
    let scrape = || async {
        client
            .get(&metrics_url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let runs = |text: &str| {
        metric(
            text,
            "sync_runs_total{trigger=\"scheduled\",outcome=\"succeeded\"}",
        )
    };
    let before = scrape().await;
    let (cpu0, _, _) = usage(pid);
    let harness0 = usage(std::process::id()).0;
    let t0 = Instant::now();
    let mut max_backlog = 0.0f64;
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let text = scrape().await;
        max_backlog = max_backlog.max(metric(&text, "sync_backlog_jobs "));
        rss_max = rss_max.max(usage(pid).1);
    }
    let after = scrape().await;
    let (cpu1, rss, hwm) = usage(pid);
    let harness1 = usage(std::process::id()).0;
    let wall = t0.elapsed().as_secs_f64();
    let polls = runs(&after) - runs(&before);
    let failed = metric(
        &after,
        "sync_runs_total{trigger=\"scheduled\",outcome=\"failed\"}",
    ) + metric(
        &after,
        "sync_runs_total{trigger=\"scheduled\",outcome=\"retry\"}",
    );
    println!(
        "scheduler: {users} users, interval {interval} s, measured {wall:.0} s after a 60 s warm-up"
    );
    println!(
        "  polls {polls:.0} ({:.1}/s; expected {:.1}/s), failed or retried {failed:.0}, max backlog {max_backlog:.0}",
        polls / wall,
        users as f64 / interval as f64
    );
    println!(
        "  cgm-hub CPU {:.1}% of one core ({:.2} ms per poll), RSS {} MiB now, {} MiB max seen, {} MiB peak (VmHWM)",
        (cpu1 - cpu0) / wall * 100.0,
        (cpu1 - cpu0) / polls.max(1.0) * 1e3,
        rss / 1024,
        rss_max / 1024,
        hwm / 1024
    );
    println!(
        "  harness (simulator) CPU {:.1}% of one core",
        (harness1 - harness0) / wall * 100.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

//! The real binary: every reading acknowledged with a 2xx survives SIGKILL.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_sigkill() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("crash.db");
    let client = reqwest::Client::new();
    let mut server = Binary::start_healthy(&db, &client).await;

    // Writers keep posting batches until the process dies under them.
    // Far enough back that the writers never run into the future (~1M slots).
    let start = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap()
        - chrono::Duration::days(3600);
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (client, base, acked, stop) = (
                client.clone(),
                server.base.clone(),
                acked.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut batch_no = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let first = (batch_no * 3 + w) * 50;
                    let times: Vec<_> = (first..first + 50)
                        .map(|i| start + chrono::Duration::minutes(5 * i))
                        .collect();
                    let readings: Vec<Value> =
                        times.iter().map(|t| reading_json(*t, 120)).collect();
                    let sent = client
                        .post(format!("{base}/api/bg/crash-user/readings"))
                        .json(&json!({"readings": readings}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break }; // the server is gone
                    if !response.status().is_success() {
                        break;
                    }
                    let Ok(body) = response.json::<Value>().await else {
                        break;
                    };
                    // Acknowledged = a 2xx whose outcome says the record is stored.
                    let results = body["data"]["results"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    assert_eq!(results.len(), times.len());
                    let mut acked = acked.lock().unwrap();
                    for (t, r) in times.iter().zip(results) {
                        assert_eq!(r["outcome"], "inserted", "{r}");
                        acked.insert(t.timestamp());
                    }
                    batch_no += 1;
                }
            })
        })
        .collect();
    // Killed mid-stream, once a dozen batches are in: the writers keep posting.
    eventually(
        "the writers get a dozen batches acknowledged",
        Duration::from_secs(30),
        || std::future::ready(acked.lock().unwrap().len() >= 600),
    )
    .await;
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 150,
        "the writers got some batches acknowledged: {}",
        acked.len()
    );

    let mut server = Binary::start_healthy(&db, &client).await;
    let url = format!("{}/api/bg/crash-user?limit=1000", server.base);
    let stored: BTreeSet<i64> = all_readings(&client, &url)
        .await
        .iter()
        .map(|r| {
            let t = r["timestamp"].as_str().expect("timestamp");
            chrono::DateTime::parse_from_rfc3339(t)
                .expect("RFC 3339")
                .timestamp()
        })
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged readings lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    server.kill_hard();
}

#[tokio::test]
async fn a_second_process_cannot_serve_the_same_sqlite_file() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("shared.db");
    let client = reqwest::Client::new();
    let _first = Binary::start_healthy(&db, &client).await;
    let out = run_cgm_hub(
        dir.path(),
        &["serve"],
        &[
            ("BIND_ADDR", "127.0.0.1:0"),
            ("SQLITE_PATH", db.to_str().unwrap()),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("in use by another cgm-hub process"),
        "{stderr}"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_readings_exactly() {
    // Its own process, so no other test's traffic is in these counters.
    let dir = TempDir::new().unwrap();
    let client = reqwest::Client::new();
    let server = Binary::start_healthy(&dir.path().join("metrics.db"), &client).await;
    let at = Utc::now() - chrono::Duration::hours(1);
    let mut too_low = reading_json(at + chrono::Duration::minutes(5), 100);
    too_low["glucose_value"] = json!(10);
    let mut unknown = reading_json(at + chrono::Duration::minutes(10), 100);
    unknown["zz-made-up-field"] = json!(1);
    let mut own_source = reading_json(at + chrono::Duration::minutes(15), 100);
    own_source["source"] = json!("my-own-source-name");
    let body = json!({"readings": [reading_json(at, 100), reading_json(at, 100), too_low, unknown, own_source]});
    let url = format!("{}/api/bg/m1/readings", server.base);
    assert_eq!(
        client.post(&url).json(&body).send().await.unwrap().status(),
        201
    );
    for _ in 0..3 {
        client
            .get(format!("{}/api/bg/m1/latest", server.base))
            .send()
            .await
            .unwrap();
    }
    client
        .request(reqwest::Method::from_bytes(b"BREW").unwrap(), &url)
        .send()
        .await
        .unwrap();

    let metrics = scrape(&client, &server.base).await;
    let value = |series: &str| -> f64 {
        metric(&metrics, series).unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
    };
    assert_eq!(
        value(r#"readings_ingested_total{source="dexcom",outcome="inserted"}"#),
        1.0
    );
    assert_eq!(
        value(r#"readings_ingested_total{source="dexcom",outcome="duplicate"}"#),
        1.0
    );
    assert_eq!(
        value(r#"readings_ingested_total{source="other",outcome="inserted"}"#),
        1.0
    );
    assert_eq!(
        value(r#"readings_rejected_total{reason="glucose_value"}"#),
        1.0
    );
    assert_eq!(
        value(r#"readings_rejected_total{reason="unknown_field"}"#),
        1.0
    );
    assert_eq!(
        value(r#"http_requests_total{method="GET",route="/api/bg/{user_id}/latest",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(
            r#"http_request_duration_seconds_count{method="GET",route="/api/bg/{user_id}/latest"}"#
        ),
        3.0
    );
    assert!(
        metrics.contains(r#"http_requests_total{method="other""#),
        "{metrics}"
    );
    for minted in ["zz-made-up-field", "my-own-source-name", "BREW"] {
        assert!(
            !metrics.contains(minted),
            "clients cannot mint label values: {minted}"
        );
    }
}

#[tokio::test]
async fn a_bad_setting_stops_the_process_with_one_line() {
    let out = run_cgm_hub(
        std::path::Path::new("."),
        &["serve"],
        &[("STORAGE_BACKEND", "mongodb")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("STORAGE_BACKEND"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("term.db");
    let client = reqwest::Client::new();
    let mut server = Binary::start_healthy(&db, &client).await;

    // A large batch is still being parsed and stored when SIGTERM arrives.
    let start = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap()
        - chrono::Duration::days(60);
    let readings: Vec<Value> = (0..10_000)
        .map(|i| reading_json(start + chrono::Duration::minutes(5 * i), 110))
        .collect();
    // The body goes in two halves: SIGTERM arrives after the server has started
    // reading the request and before the rest is sent, so the request is surely
    // in flight (not waiting in the listen backlog) when shutdown begins.
    let body = bytes::Bytes::from(serde_json::to_vec(&json!({"readings": readings})).unwrap());
    let (first, rest) = (body.slice(..body.len() / 2), body.slice(body.len() / 2..));
    let (first_sent_tx, first_sent) = tokio::sync::oneshot::channel::<()>();
    let (send_rest, rest_go) = tokio::sync::oneshot::channel::<()>();
    let halves = futures_util::stream::unfold(
        (0, Some(first_sent_tx), Some(rest_go)),
        move |(step, sent, go)| {
            let (first, rest) = (first.clone(), rest.clone());
            async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(first), (1, sent, go))),
                    1 => {
                        if let Some(sent) = sent {
                            let _ = sent.send(());
                        }
                        if let Some(go) = go {
                            let _ = go.await;
                        }
                        Some((Ok(rest), (2, None, None)))
                    }
                    _ => None,
                }
            }
        },
    );
    let request = client
        .post(format!("{}/api/bg/term-user/readings", server.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(halves))
        .send();
    let in_flight = tokio::spawn(request);
    first_sent.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still serving the open request"
    );
    send_rest.send(()).unwrap();

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["summary"]["inserted"], 10_000);
    let code = eventually_ok(
        "cgm-hub exits after SIGTERM once the request is answered",
        Duration::from_secs(10),
        || {
            let exited = server.child.try_wait().unwrap();
            std::future::ready(exited.ok_or_else(|| "still running".to_owned()))
        },
    )
    .await;
    assert!(code.success(), "exit status {code}");

    let server = Binary::start_healthy(&db, &client).await;
    let latest = get_json(&client, &format!("{}/api/bg/term-user/latest", server.base)).await;
    let expected = (start + chrono::Duration::minutes(5 * 9_999))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(latest["data"]["timestamp"], expected.as_str());
}

/// `serve --demo` connects its patients through the simulator by the real OAuth
/// flow; even at DEBUG, no token it received reaches its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_connects_through_oauth_and_never_logs_a_token() {
    use cgm_hub::config::Durability;
    use cgm_hub::connections::cipher::TokenCipher;
    use cgm_hub::connections::key_file;
    use cgm_hub::records::connections::{ConnectionStatus, Provider};
    use cgm_hub::store::sqlite::SqliteStore;
    use cgm_hub::store::ConnectionStore;

    let dir = TempDir::new().unwrap();
    let db = dir.path().join("demo.db");
    let client = reqwest::Client::new();
    let mut server = Binary::start_with(
        &db,
        &["--demo"],
        &[("DEMO_BACKFILL_DAYS", "1"), ("LOG_LEVEL", "DEBUG")],
    );
    server.wait_healthy(&client).await;
    let patients = ["demo-alice", "demo-bob", "demo-carol"];
    eventually_ok(
        "every demo patient has a latest reading",
        Duration::from_secs(30),
        || {
            let (client, base) = (&client, &server.base);
            async move {
                for p in patients {
                    let latest = client
                        .get(format!("{base}/api/bg/{p}/latest"))
                        .send()
                        .await
                        .unwrap();
                    if latest.status() != 200 {
                        return Err(format!("{p}: {}", latest.status()));
                    }
                }
                Ok(())
            }
        },
    )
    .await;
    for p in patients {
        let body = get_json(
            &client,
            &format!("{}/api/users/{p}/connections", server.base),
        )
        .await;
        assert_eq!(body["data"]["connections"][0]["status"], "connected", "{p}");
        let latest = get_json(&client, &format!("{}/api/bg/{p}/latest", server.base)).await;
        assert_eq!(latest["data"]["source"], "dexcom");
    }
    server.kill_hard();

    let (key, _) = key_file::load_or_create(dir.path()).unwrap();
    let cipher = TokenCipher::new(&key, &[]);
    let store = SqliteStore::open(&db, Durability::Normal).unwrap();
    let logs = server.stdout.lock().unwrap().join("\n");
    assert!(logs.contains("Dexcom connected"), "the logs were captured");
    for p in patients {
        let c = store
            .get_connection(&user(p), Provider::Dexcom)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.status, ConnectionStatus::Connected);
        let tokens = cipher
            .open(&user(p), Provider::Dexcom, c.tokens.as_ref().unwrap())
            .unwrap();
        for secret in [tokens.access_token.expose(), tokens.refresh_token.expose()] {
            assert!(secret.len() >= 20);
            assert!(
                !logs.contains(secret.as_str()),
                "a token of {p} is in the logs"
            );
        }
    }
}

/// A 90-day backfill killed with SIGKILL after its first 30-day window resumes
/// at the next start from its checkpoint: in the end every reading Dexcom holds
/// for the range is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_midway_resumes_with_no_gap_and_no_duplicate() {
    use cgm_hub::simulator::dexcom::{Faults, SimConfig};
    use cgm_hub::sources::dexcom::sync::fetch_range;

    let dir = TempDir::new().unwrap();
    let db = dir.path().join("backfill.db");
    let client = reqwest::Client::new();
    let sim = simulator().await;
    // Slow data calls, so that the kill lands between windows.
    sim.sim.set_faults(Faults {
        slow_ms: 1500,
        ..Faults::default()
    });
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let config = SimConfig::default();
    let redirect = format!("http://127.0.0.1:{port}/oauth/callback");
    let bind = format!("127.0.0.1:{port}");
    let envs = [
        ("BIND_ADDR", bind.as_str()),
        ("DEXCOM_API_BASE_URL", sim.base_url.as_str()),
        ("DEXCOM_CLIENT_ID", config.client_id.as_str()),
        ("DEXCOM_CLIENT_SECRET", config.client_secret.as_str()),
        ("DEXCOM_REDIRECT_URI", redirect.as_str()),
        ("DEXCOM_BACKFILL_DAYS", "90"),
        // Short, so the restart need not wait long for the dead holder's lease
        // (but not so short that a busy machine's heartbeat misses it).
        ("SYNC_LEASE_SECONDS", "5"),
        // No scheduled poll may run in between and muddle the counts.
        ("POLL_INTERVAL_SECONDS", "86400"),
    ];
    let mut server = Binary::start_with(&db, &[], &envs);
    server.wait_healthy(&client).await;
    connect_over_http(&server.base, "longhaul").await;
    let jobs_url = format!("{}/api/users/longhaul/jobs", server.base);
    // Killed once the first window is stored and the job is still running.
    let midway = wait_for(&client, &jobs_url, Duration::from_secs(60), |b| {
        b["data"]["jobs"][0]["counts"]["inserted"]
            .as_u64()
            .unwrap_or(0)
            > 0
    })
    .await;
    server.kill_hard();
    let job = &midway["data"]["jobs"][0];
    assert_eq!(job["trigger"], "backfill");
    assert_eq!(job["status"], "running", "killed mid-run: {job}");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let range = job["range"].clone();
    let days = (time_of(&range["end"]) - time_of(&range["start"])).num_days();
    assert!(days >= 89, "a 90-day range: {range}");

    sim.sim.set_faults(Faults::default());
    let mut server = Binary::start_with(&db, &[], &envs[1..]);
    server.wait_healthy(&client).await;
    let done = wait_for(
        &client,
        &format!("{}/api/jobs/{job_id}", server.base),
        Duration::from_secs(60),
        |b| b["data"]["status"] != "running" && b["data"]["status"] != "queued",
    )
    .await;
    let job = &done["data"];
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["attempts"].as_u64().unwrap() >= 2, "resumed: {job}");
    assert_eq!(
        job["range"], range,
        "the resumed run fetched the same range"
    );

    // What Dexcom holds for the range, fetched in one go by a separate stack
    // into a separate store.
    let reference = sqlite_store().await;
    let stack = dexcom_stack(
        reference.store.clone(),
        &sim,
        fast_policy(),
        cgm_hub::sources::dexcom::outbound::Breakers::new(5, Duration::from_secs(30)),
        0,
    );
    connect(&stack, "longhaul").await;
    let (start, end) = (time_of(&range["start"]), time_of(&range["end"]));
    let (pipeline, _) = pipeline_with_events(reference.store.clone());
    let report = fetch_range(
        stack.client(),
        &pipeline,
        reference.store.as_ref(),
        &user("longhaul"),
        start,
        end,
    )
    .await
    .unwrap();
    assert!(report.counts.inserted > 20_000, "{report:?}");
    let want: Vec<(String, u64)> = reference
        .store
        .scan_readings(cgm_hub::store::Scan {
            user_id: user("longhaul"),
            from: start.timestamp(),
            until: end.timestamp() + 1,
            order: cgm_hub::store::Order::Asc,
            limit: 100_000,
        })
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.reading.timestamp.to_rfc3339(),
                u64::from(r.reading.glucose.mg_dl().get()),
            )
        })
        .collect();

    let url = format!("{}/api/bg/longhaul?limit=1000", server.base);
    let got: Vec<(String, u64)> = all_readings(&client, &url)
        .await
        .iter()
        .map(|r| {
            (
                r["timestamp"].as_str().unwrap().to_owned(),
                r["glucose_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len(), "no gap, no duplicate");
    assert!(got == want, "the same readings as an uninterrupted fetch");
    // Each reading was inserted once: by the first run (its checkpointed
    // windows) or the resumed one. A window stored just before the kill but not
    // checkpointed is fetched again and counted as duplicates.
    let counts = &job["counts"];
    let inserted = counts["inserted"].as_u64().unwrap();
    assert!(inserted <= want.len() as u64, "{counts}");
    assert!(
        inserted + counts["duplicates"].as_u64().unwrap() >= want.len() as u64,
        "{counts}"
    );
    server.kill_hard();
}

fn time_of(v: &Value) -> chrono::DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

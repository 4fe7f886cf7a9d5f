//! `POST /api/bg/{userId}/webhook` over real HTTP: the signature matrix, a
//! delivery readable soon after its 202, replays, unknown and invalid bodies,
//! windows that become sync jobs, and deliveries that outlive a crash.

use std::time::{Duration, Instant};

use cgm_hub::config::Durability;
use cgm_hub::records::inbox::{DeliveryStatus, NewDelivery};
use cgm_hub::sources::webhook::signature::sign;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::InboxStore;
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "webhook-test-secret";

/// A delivery with the headers a sender computes (`secret`, `ts` and `body` as given).
async fn deliver(
    app: &TestApp,
    user_id: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/api/bg/{user_id}/webhook")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap()
}

/// A delivery signed with the app's secret, now.
async fn deliver_signed(app: &TestApp, user_id: &str, body: &[u8]) -> reqwest::Response {
    deliver(
        app,
        user_id,
        body,
        &signed(SECRET, Utc::now().timestamp(), body),
    )
    .await
}

/// Header names and values of one delivery.
type Headers = Vec<(&'static str, String)>;

fn signed(secret: &str, ts: i64, body: &[u8]) -> Headers {
    vec![
        ("x-webhook-timestamp", ts.to_string()),
        ("x-webhook-signature", sign(secret.as_bytes(), ts, body)),
    ]
}

async fn app() -> TestApp {
    TestApp::spawn_with(&[("WEBHOOK_SIGNING_SECRET", SECRET)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signature_matrix() {
    let app = app().await;
    let body = serde_json::to_vec(&json!({"type": "egvs", "records": []})).unwrap();
    let now = Utc::now().timestamp();
    let mut tampered = body.clone();
    tampered[2] ^= 0x20;
    let good = signed(SECRET, now, &body);
    let cases: Vec<(&str, Vec<u8>, Headers, u16)> = vec![
        ("valid", body.clone(), good.clone(), 202),
        (
            "wrong secret",
            body.clone(),
            signed("another-secret", now, &body),
            401,
        ),
        ("tampered body", tampered, good.clone(), 401),
        (
            "stale timestamp",
            body.clone(),
            signed(SECRET, now - 301, &body),
            401,
        ),
        (
            "future timestamp",
            body.clone(),
            signed(SECRET, now + 301, &body),
            401,
        ),
        (
            "missing timestamp",
            body.clone(),
            vec![good[1].clone()],
            401,
        ),
        (
            "missing signature",
            body.clone(),
            vec![good[0].clone()],
            401,
        ),
        ("no headers", body.clone(), vec![], 401),
        (
            "wrong algorithm prefix",
            body.clone(),
            vec![
                good[0].clone(),
                ("x-webhook-signature", good[1].1.replace("sha256=", "sha1=")),
            ],
            401,
        ),
        (
            "timestamp header differs from the signed one",
            body.clone(),
            vec![
                ("x-webhook-timestamp", (now - 1).to_string()),
                good[1].clone(),
            ],
            401,
        ),
    ];
    for (name, body, headers, want) in cases {
        let response = deliver(&app, "hook-user", &body, &headers).await;
        if want == 401 {
            let error = expect_error(response, 401, "AUTH_ERROR").await;
            assert!(
                !error["message"].as_str().unwrap().contains(SECRET),
                "{name}: {error}"
            );
        } else {
            assert_eq!(response.status().as_u16(), want, "{name}");
        }
    }
    // The webhook tier of the rate limit applies (headers on every answer).
    let response = deliver(&app, "hook-user", &body, &signed(SECRET, now, &body)).await;
    assert!(response.headers().contains_key("x-ratelimit-limit"));

    // Without a secret, webhooks are off.
    let off = TestApp::spawn().await;
    let response = deliver(&off, "hook-user", &body, &signed(SECRET, now, &body)).await;
    expect_error(response, 503, "SERVICE_UNAVAILABLE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_readings_are_readable_soon_after_the_202() {
    let app = app().await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let at = Utc::now() - chrono::Duration::minutes(100 - 5 * i);
        let body =
            serde_json::to_vec(&json!({"type": "egvs", "records": [egv(at, 100 + i as u16)]}))
                .unwrap();
        let sent = Instant::now();
        let response = deliver_signed(&app, "fast", &body).await;
        assert_eq!(response.status(), 202);
        let receipt: Value = response.json().await.unwrap();
        assert_eq!(receipt["data"]["status"], "accepted");
        assert_eq!(receipt["data"]["type"], "egvs");
        let want = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        loop {
            let latest = app.get("/api/bg/fast/latest").await;
            if latest.status() == 200 {
                let body: Value = latest.json().await.unwrap();
                if body["data"]["timestamp"] == want.as_str() {
                    assert_eq!(body["data"]["glucose_value"], 100 + i);
                    break;
                }
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "not readable within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    // Printed for the record (run with --nocapture); the benchmark in
    // docs/performance.md measures this under load.
    println!(
        "webhook → readable: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // The delivery is processed and its body (health data) cleared.
    let id = {
        let body = serde_json::to_vec(&json!({"type": "egvs", "records": [egv(Utc::now() - chrono::Duration::minutes(1), 150)]})).unwrap();
        let response = deliver_signed(&app, "fast", &body).await;
        let receipt: Value = response.json().await.unwrap();
        uuid::Uuid::parse_str(receipt["data"]["delivery_id"].as_str().unwrap()).unwrap()
    };
    let delivery = wait_delivery(&app, id, DeliveryStatus::Done).await;
    assert_eq!(delivery.body, None);
    let outcome: Value = serde_json::from_str(delivery.outcome.as_deref().unwrap()).unwrap();
    assert_eq!(outcome["inserted"], 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for name in [
        "webhook_receipt_to_processed_seconds_bucket{type=\"egvs\"",
        "webhook_deliveries_received_total{outcome=\"accepted\",type=\"egvs\"}",
        "webhook_deliveries_processed_total{outcome=\"done\"}",
        "webhook_inbox_backlog ",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
}

async fn wait_delivery(
    app: &TestApp,
    id: uuid::Uuid,
    status: DeliveryStatus,
) -> cgm_hub::records::inbox::Delivery {
    eventually_ok(
        &format!("delivery {id} reaches {status:?}"),
        Duration::from_secs(5),
        || async move {
            let d = app.store.get_delivery(id).await.unwrap().expect("stored");
            if d.status == status {
                Ok(d)
            } else {
                Err(format!("{:?}", d.status))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_unknown_types_and_invalid_bodies() {
    let app = app().await;
    let now = Utc::now().timestamp();
    let body = serde_json::to_vec(
        &json!({"type": "egvs", "records": [egv(Utc::now() - chrono::Duration::minutes(3), 111)]}),
    )
    .unwrap();
    let headers = signed(SECRET, now, &body);
    let first: Value = deliver(&app, "replayed", &body, &headers)
        .await
        .json()
        .await
        .unwrap();
    let again = deliver(&app, "replayed", &body, &headers).await;
    assert_eq!(
        again.status(),
        202,
        "a replay inside the window is accepted ..."
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["data"]["status"], "duplicate",
        "... as the same delivery"
    );
    assert_eq!(again["data"]["delivery_id"], first["data"]["delivery_id"]);

    let unknown = serde_json::to_vec(&json!({"type": "calibrations.available", "x": 1})).unwrap();
    let response = deliver(&app, "replayed", &unknown, &signed(SECRET, now, &unknown)).await;
    assert_eq!(response.status(), 202, "unknown types are accepted");
    let receipt: Value = response.json().await.unwrap();
    let id = uuid::Uuid::parse_str(receipt["data"]["delivery_id"].as_str().unwrap()).unwrap();
    let ignored = wait_delivery(&app, id, DeliveryStatus::Ignored).await;
    assert_eq!(ignored.kind, "calibrations.available");

    for (raw, status, pointer) in [
        (&b"not json"[..], 400, ""),
        (br#"{"records": []}"#, 400, "/type"),
        (br#"[1, 2]"#, 400, "/type"),
        (br#"{"type": "egvs"}"#, 422, "/records"),
        (br#"{"type": "egvs.available", "startDate": "yesterday"}"#, 422, "/startDate"),
        (
            br#"{"type": "egvs.available", "startDate": "2026-01-02T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}"#,
            422,
            "/endDate",
        ),
    ] {
        let response = deliver(&app, "replayed", raw, &signed(SECRET, now, raw)).await;
        let error = expect_error(response, status, "VALIDATION_ERROR").await;
        assert_eq!(error["details"]["errors"][0]["pointer"], pointer, "{error}");
    }
    expect_error(
        deliver(&app, "not a user", &body, &signed(SECRET, now, &body)).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_available_window_is_fetched_from_dexcom_by_a_job() {
    let sim = simulator().await;
    let app = dexcom_app(
        &sim,
        &[
            ("WEBHOOK_SIGNING_SECRET", SECRET),
            ("DEXCOM_BACKFILL_DAYS", "0"),
        ],
    )
    .await;
    connect_over_http(&app.base, "windowed").await;
    let end = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
    let start = end - chrono::Duration::hours(2);
    let body = serde_json::to_vec(&json!({
        "type": "egvs.available",
        "startDate": start.to_rfc3339(),
        "endDate": end.to_rfc3339(),
    }))
    .unwrap();
    let response = deliver_signed(&app, "windowed", &body).await;
    assert_eq!(response.status(), 202);
    let jobs = wait_for(
        &app.client,
        &app.url("/api/users/windowed/jobs"),
        Duration::from_secs(10),
        |b| {
            b["data"]["jobs"].as_array().is_some_and(|j| {
                j.iter()
                    .any(|j| j["trigger"] == "webhook" && j["status"] == "succeeded")
            })
        },
    )
    .await;
    let job = jobs["data"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["trigger"] == "webhook")
        .unwrap()
        .clone();
    // The window's readings, as the simulator holds them: up to two hours of
    // 5-minute readings, fewer across a synthetic signal gap or sensor warm-up.
    let served = sim.sim.reading_times("windowed", Utc::now());
    let within = |end_included: bool| {
        served
            .iter()
            .filter(|t| **t >= start && (**t < end || (end_included && **t == end)))
            .count() as u64
    };
    let inserted = job["counts"]["inserted"].as_u64().unwrap();
    assert!(!served.is_empty(), "the simulator serves readings");
    assert!(
        inserted == within(false) || inserted == within(true),
        "{job}"
    );
    let stored = all_readings(&app.client, &app.url("/api/bg/windowed?limit=1000")).await;
    assert_eq!(stored.len() as u64, inserted);
}

/// A delivery acknowledged just before a crash is in the inbox; the next start
/// processes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_stored_before_a_crash_is_processed_at_the_next_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("inbox.db");
    let at = Utc::now() - chrono::Duration::minutes(10);
    {
        // What the handler had written before the 202 when the process died.
        let store = SqliteStore::open(&db, Durability::Full).unwrap();
        let body = serde_json::to_vec(&json!({"type": "egvs", "records": [egv(at, 97)]})).unwrap();
        store
            .put_delivery(NewDelivery {
                id: uuid::Uuid::new_v4(),
                user_id: user("crashed"),
                signature_hash: "sig".into(),
                kind: "egvs".into(),
                body,
                received_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let db_path = db.display().to_string();
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_SIGNING_SECRET", SECRET),
        ("SQLITE_PATH", db_path.as_str()),
    ])
    .await;
    let latest = wait_for(
        &app.client,
        &app.url("/api/bg/crashed/latest"),
        Duration::from_secs(5),
        |b| b["status"] == "success",
    )
    .await;
    assert_eq!(latest["data"]["glucose_value"], 97);
    // The delivery is marked done just after its readings are committed.
    eventually(
        "the delivery leaves the inbox",
        Duration::from_secs(5),
        || async { app.store.inbox_backlog().await.unwrap() == 0 },
    )
    .await;
}

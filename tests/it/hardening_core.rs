//! The limits at the edge of the service (docs/security.md), each proved over real HTTP (or raw
//! TCP where HTTP cannot express the attack): webhook replays across users, webhook bodies
//! read before their signature, slow and idle connections, connection floods, unsafe
//! request ids, and bulk bodies parsed past the batch limit. Every test here failed on the
//! code before its fix.

use std::time::Duration;

use bytes::Bytes;
use cgm_hub::sources::webhook::signature::sign;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const SECRET: &str = "hardening-webhook-secret";
/// Upper bound for something the server must do on its own within a configured 1 s: far
/// above it, so only a server that never does it fails.
const WITHIN: Duration = Duration::from_secs(30);

fn egvs_body(value: u16) -> Vec<u8> {
    let at = Utc::now() - chrono::Duration::minutes(10);
    serde_json::to_vec(&json!({"type": "egvs", "records": [egv(at, value)]})).unwrap()
}

fn webhook_url(app: &TestApp, user: &str) -> String {
    app.url(&format!("/api/bg/{user}/webhook"))
}

/// `POST` a webhook with the given signature header value for `ts`.
async fn deliver(
    app: &TestApp,
    user: &str,
    ts: i64,
    signature: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(webhook_url(app, user))
        .header("content-type", "application/json")
        .header("x-webhook-timestamp", ts.to_string())
        .header("x-webhook-signature", signature)
        .body(body)
        .send()
        .await
        .expect("webhook request")
}

/// A body that sends `first` and then nothing, forever: a client that stalls.
fn stalled_body(first: &'static [u8]) -> reqwest::Body {
    let chunks =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
            .chain(futures_util::stream::pending());
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_a_webhook_replayed_to_another_user_in_another_case_is_a_duplicate() {
    let app = TestApp::spawn_with(&[("WEBHOOK_SIGNING_SECRET", SECRET)]).await;
    let body = egvs_body(123);
    let ts = Utc::now().timestamp();
    let lower = sign(SECRET.as_bytes(), ts, &body);
    let upper = format!("sha256={}", lower["sha256=".len()..].to_uppercase());

    let first = deliver(&app, "sender-patient", ts, &lower, body.clone()).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["data"]["status"], "accepted");

    // The captured delivery, digest in upper case, to the same path and to another patient's.
    for victim in ["sender-patient", "victim-patient"] {
        let replay = deliver(&app, victim, ts, &upper, body.clone()).await;
        assert_eq!(replay.status(), 202, "{victim}");
        let replay: Value = replay.json().await.unwrap();
        assert_eq!(replay["data"]["status"], "duplicate", "{victim}: {replay}");
        assert_eq!(
            replay["data"]["delivery_id"], first["data"]["delivery_id"],
            "{victim}"
        );
    }

    // The sender's reading arrives; the victim gets nothing.
    wait_for(
        &app.client,
        &app.url("/api/bg/sender-patient/latest"),
        WITHIN,
        |b| b["data"]["glucose_value"] == 123,
    )
    .await;
    expect_error(
        app.get("/api/bg/victim-patient/latest").await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_an_unsigned_webhook_is_refused_before_its_body_is_read() {
    let app = TestApp::spawn_with(&[("WEBHOOK_SIGNING_SECRET", SECRET)]).await;
    // No signature headers, and a body that never ends: the old handler waited for it.
    let request = app
        .client
        .post(webhook_url(&app, "anyone"))
        .header("content-type", "application/json")
        .body(stalled_body(b"{\"type\":\"egvs\",\"records\":["))
        .send();
    let response = tokio::time::timeout(WITHIN, request)
        .await
        .expect("answered without waiting for the body")
        .expect("response");
    expect_error(response, 401, "AUTH_ERROR").await;

    // A stale timestamp is refused the same way, before the body.
    let stale = Utc::now().timestamp() - 301;
    let request = app
        .client
        .post(webhook_url(&app, "anyone"))
        .header("x-webhook-timestamp", stale.to_string())
        .header("x-webhook-signature", format!("sha256={}", "0".repeat(64)))
        .body(stalled_body(b"{"))
        .send();
    let response = tokio::time::timeout(WITHIN, request)
        .await
        .expect("answered without waiting for the body")
        .expect("response");
    expect_error(response, 401, "AUTH_ERROR").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_webhook_body_over_webhook_max_body_bytes_is_413() {
    // The default WEBHOOK_MAX_BODY_BYTES (1 MiB), far under MAX_BODY_BYTES (16 MiB).
    let app = TestApp::spawn_with(&[("WEBHOOK_SIGNING_SECRET", SECRET)]).await;
    let mut body = br#"{"type":"egvs","records":[],"padding":""#.to_vec();
    body.resize((1 << 20) + 1 - 2, b'x');
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), (1 << 20) + 1);
    let ts = Utc::now().timestamp();
    let signature = sign(SECRET.as_bytes(), ts, &body);
    let response = deliver(&app, "big-sender", ts, &signature, body).await;
    let error = expect_error(response, 413, "VALIDATION_ERROR").await;
    assert!(
        error["message"].as_str().unwrap().contains("1048576"),
        "{error}"
    );

    // One byte less is read, verified and accepted.
    let mut body = br#"{"type":"egvs","records":[],"padding":""#.to_vec();
    body.resize((1 << 20) - 2, b'x');
    body.extend_from_slice(b"\"}");
    let signature = sign(SECRET.as_bytes(), ts, &body);
    let response = deliver(&app, "big-sender", ts, &signature, body).await;
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_slow_webhook_body_times_out() {
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_SIGNING_SECRET", SECRET),
        ("WEBHOOK_BODY_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let ts = Utc::now().timestamp();
    // Well-formed, recent headers (the MAC is checked once the body is in).
    let signature = sign(SECRET.as_bytes(), ts, b"{}");
    let request = deliver(&app, "slow-sender", ts, &signature, stalled_body(b"{"));
    let response = tokio::time::timeout(WITHIN, request)
        .await
        .expect("the server gave up on the body by itself");
    expect_error(response, 408, "VALIDATION_ERROR").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_concurrent_webhook_body_reads_are_bounded() {
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_SIGNING_SECRET", SECRET),
        ("WEBHOOK_MAX_CONCURRENT_BODIES", "2"),
        ("WEBHOOK_BODY_TIMEOUT_SECONDS", "600"),
        ("RATE_LIMIT_WEBHOOK_PER_MINUTE", "100000000"),
    ])
    .await;
    let ts = Utc::now().timestamp();
    let signature = sign(SECRET.as_bytes(), ts, b"{}");
    // Two senders that never finish their bodies hold both permits.
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let client = reqwest::Client::new();
            let url = webhook_url(&app, &format!("holder-{i}"));
            let signature = signature.clone();
            tokio::spawn(async move {
                // Only ends if the server answers or drops it: what it got is
                // printed if the third delivery is never refused.
                client
                    .post(url)
                    .header("x-webhook-timestamp", ts.to_string())
                    .header("x-webhook-signature", signature)
                    .body(stalled_body(b"{"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string())
            })
        })
        .collect();

    // Once they are being read, a third delivery is turned away at once.
    let mut value = 40;
    let mut next_delivery = move || {
        value += 1;
        let body = egvs_body(value);
        let ts = Utc::now().timestamp();
        (sign(SECRET.as_bytes(), ts, &body), ts, body)
    };
    eventually_ok("a third body is refused while two are read", WITHIN, || {
        let (signature, ts, body) = next_delivery();
        let (app, holders) = (&app, &holders);
        async move {
            let status = deliver(app, "third", ts, &signature, body).await.status();
            if status == 429 {
                return Ok(());
            }
            let ended: Vec<bool> = holders.iter().map(|h| h.is_finished()).collect();
            Err(format!("the third got {status}; holders ended: {ended:?}"))
        }
    })
    .await;
    // Still held: the next one is refused too, with the envelope and Retry-After.
    let (signature, ts, body) = next_delivery();
    let refused = deliver(&app, "third", ts, &signature, body).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    expect_error(refused, 429, "RATE_LIMIT_EXCEEDED").await;

    // The holders hang up: their permits come back.
    for holder in &holders {
        holder.abort();
    }
    eventually(
        "a delivery is read again once the holders left",
        WITHIN,
        || {
            let (signature, ts, body) = next_delivery();
            let app = &app;
            async move { deliver(app, "third", ts, &signature, body).await.status() == 202 }
        },
    )
    .await;
}

/// A raw TCP connection to the app (HTTP clients cannot send half a request).
async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); returns what arrived.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one complete request on `stream` and reads its response head and body.
async fn round_trip(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read response");
        assert!(n > 0, "closed before the response was complete");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if received.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_slow_headers_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with(&[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;

    // Slowloris: half a request's headers, then silence.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    let got = tokio::time::timeout(WITHIN, read_until_closed(&mut slow))
        .await
        .expect("the server closed a connection whose headers never finished");
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "));

    // Idle keep-alive: one request answered, then nothing more.
    let mut idle = connect(&app).await;
    let response = round_trip(&mut idle, "/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    tokio::time::timeout(WITHIN, read_until_closed(&mut idle))
        .await
        .expect("the server closed an idle keep-alive connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_connections_over_http_max_connections_are_closed() {
    let app = TestApp::spawn_with(&[
        ("HTTP_MAX_CONNECTIONS", "3"),
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "600"),
    ])
    .await;
    // Three connections, each proven accepted by a request it got answered.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&app).await;
        let response = round_trip(&mut stream, "/health").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        held.push(stream);
    }
    // A fourth is closed without an answer.
    let mut fourth = connect(&app).await;
    let _ = fourth
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let got = tokio::time::timeout(WITHIN, read_until_closed(&mut fourth))
        .await
        .expect("the connection over the limit was closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // One connection leaves: a new one is served again, and the refusal was counted.
    drop(held.pop());
    let scraped = std::sync::Mutex::new(String::new());
    eventually("a new connection is served once one left", WITHIN, || {
        let (app, scraped) = (&app, &scraped);
        async move {
            let mut stream = connect(app).await;
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .await;
            let text = String::from_utf8_lossy(&read_until_closed(&mut stream).await).to_string();
            let served = text.starts_with("HTTP/1.1 200");
            *scraped.lock().unwrap() = text;
            served
        }
    })
    .await;
    let scraped = scraped.into_inner().unwrap();
    assert!(
        metric(&scraped, "http_connections_refused_total").is_some_and(|n| n >= 1.0),
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_an_unsafe_request_id_is_replaced_and_never_stored() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(10_000);
    let odd = "id with spaces\"and quotes";
    for sent in [long.as_str(), odd] {
        let response = app
            .get_with("/api/bg/rid-user/latest", "x-request-id", sent)
            .await;
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, sent);
        assert!(
            uuid::Uuid::parse_str(&echoed).is_ok(),
            "a generated id: {echoed}"
        );
        // The audit trail records the generated id.
        let url = app.url("/api/audit?user_id=rid-user&limit=100");
        wait_for(&app.client, &url, WITHIN, |b| {
            b["data"]["entries"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["request_id"] == echoed.as_str()))
        })
        .await;
    }
    // A safe id is echoed and recorded as sent.
    let safe = "client-trace:42.a_b";
    let response = app
        .get_with("/api/bg/rid-user/latest", "x-request-id", safe)
        .await;
    assert_eq!(response.headers()["x-request-id"], safe);
    let url = app.url("/api/audit?user_id=rid-user&limit=100");
    let trail = wait_for(&app.client, &url, WITHIN, |b| {
        b["data"]["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["request_id"] == safe))
    })
    .await;
    let stored = trail.to_string();
    assert!(
        !stored.contains(&long[..65]),
        "the long id is nowhere in the trail"
    );
    assert!(!stored.contains("with spaces"), "nor the unsafe one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_a_bulk_body_is_not_parsed_past_the_batch_limit() {
    let app = TestApp::spawn_with(&[("MAX_BATCH_RECORDS", "3")]).await;
    let record = reading_json(Utc::now() - chrono::Duration::minutes(30), 110).to_string();
    // Four records, then bytes that are not JSON at all: only a parser that stops at the
    // fourth record (one over the limit) answers 413 rather than "malformed JSON".
    let body = format!(
        "{{\"readings\":[{record},{record},{record},{record},{}",
        "@".repeat(100_000)
    );
    let response = app.post_raw("/api/bg/bulk-user/readings", body).await;
    let error = expect_error(response, 413, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/readings");

    // At the limit, a well-formed batch is stored; a malformed one is still a 400.
    let three = (0..3)
        .map(|i| reading_json(Utc::now() - chrono::Duration::minutes(30 + 5 * i), 110))
        .collect::<Vec<_>>();
    let response = app
        .post_json("/api/bg/bulk-user/readings", &json!({ "readings": three }))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["summary"]["inserted"], 3);
    let response = app
        .post_raw(
            "/api/bg/bulk-user/readings",
            format!("{{\"readings\":[{record},{record}"),
        )
        .await;
    expect_error(response, 400, "VALIDATION_ERROR").await;
}

/// How long before a `kill -9` an answered request's audit entry may still be unwritten
/// (docs/auth.md, "Audit trail"): the writer gathers for 100 ms, then writes.
const AUDIT_LOSS_WINDOW: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_9_a_kill_9_under_load_loses_only_the_last_moment_of_the_audit_trail() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use cgm_hub::config::Durability;
    use cgm_hub::records::audit::AuditQuery;
    use cgm_hub::store::sqlite::SqliteStore;
    use cgm_hub::store::AuditStore;

    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("audit.db");
    let client = reqwest::Client::new();
    let mut server = Binary::start_healthy(&db, &client).await;
    let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|task| {
            let (client, answered, stop) = (client.clone(), answered.clone(), stop.clone());
            let url = format!("{}/api/bg/audit-user/latest", server.base);
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("load-{task}-{n}");
                    let sent = client.get(&url).header("x-request-id", &id).send().await;
                    match sent {
                        Ok(response) if response.status() == 404 => {
                            answered.lock().unwrap().push((id, Instant::now()))
                        }
                        Ok(response) => panic!("unexpected {}", response.status()),
                        Err(_) => return, // killed
                    }
                }
            })
        })
        .collect();
    eventually("3,000 requests answered", Duration::from_secs(120), || {
        let enough = answered.lock().unwrap().len() >= 3_000;
        async move { enough }
    })
    .await;
    let killed_at = Instant::now();
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let store = SqliteStore::open(&db, Durability::Normal).unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut after_seq = None;
    loop {
        let page = store
            .query_audit(AuditQuery {
                target_user: Some(user("audit-user")),
                from: None,
                until: None,
                after_seq,
                limit: 1000,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after_seq = Some(last.seq);
        stored.extend(page.into_iter().map(|r| r.entry.request_id));
    }
    let answered = answered.lock().unwrap().clone();
    let lost: Vec<_> = answered
        .iter()
        .filter(|(id, _)| !stored.contains(id))
        .map(|(_, at)| killed_at.duration_since(*at))
        .collect();
    let oldest_lost = lost.iter().max().copied().unwrap_or_default();
    println!(
        "audit at kill -9: {} answered, {} lost, the oldest lost answered {:?} before the kill",
        answered.len(),
        lost.len(),
        oldest_lost
    );
    assert!(
        oldest_lost <= AUDIT_LOSS_WINDOW,
        "{} entries lost, one answered {oldest_lost:?} before the kill",
        lost.len()
    );
}

//! Notification endpoints end to end: a receiver in this test (axum on
//! 127.0.0.1, allowed because the app runs in development) gets `alert.raised`
//! after a low reading and `alert.acknowledged` after the ack, signed as
//! inbound webhooks are; a failing receiver is retried; a receiver that never
//! answers delays neither ingest nor another endpoint; a delivery pending at
//! shutdown arrives after a restart on the same store; a follower's endpoint
//! gets the patient's alerts; and every validation rule outside development.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cgm_hub::app::App;
use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::config::Settings;
use cgm_hub::notifications::{DELIVERY_KIND, FANOUT_KIND};
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use cgm_hub::records::tasks::{Enqueued, NewTask, TaskStatus};
use chrono::Utc;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);
/// Fast retries, so a test sees several attempts quickly.
const FAST: (&str, &str) = ("NOTIFICATION_RETRY_DELAYS", "50ms,100ms,200ms");

async fn create(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/users/{user}/notification-endpoints")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Creates an endpoint; returns its id.
async fn add_endpoint(
    app: &TestApp,
    user: &str,
    url: &str,
    secret: &str,
    events: &[&str],
) -> String {
    let r = create(
        app,
        user,
        json!({"url": url, "secret": secret, "events": events}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(secret),
        "the secret is never returned: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["data"]["user_id"], user);
    assert!(body["data"].get("secret").is_none());
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Whether a task of `kind` was queued under idempotency `key`: probes by
/// queueing one under the same key (the store answers with the first), due
/// never, so a probe that finds nothing leaves a task that never runs.
async fn queued(app: &TestApp, kind: &str, key: &str) -> Option<TaskStatus> {
    let mut probe = NewTask::new(kind, json!({"probe": true}), Utc::now());
    probe.not_before = Utc::now() + chrono::Duration::days(365 * 100);
    probe.idempotency_key = Some(key.to_owned());
    match app.store.create_task(probe).await.unwrap() {
        Enqueued::Existing(task) => Some(task.status),
        Enqueued::New(_) => None,
    }
}

/// Posts readings `(minutes before now, mg/dL)` of `user` in one batch.
async fn post(base: &str, user: &str, readings: &[(i64, u16)]) {
    let now = Utc::now();
    let body = json!({"readings": readings
        .iter()
        .map(|&(ago, v)| reading_json(now - chrono::Duration::minutes(ago), v))
        .collect::<Vec<_>>()});
    let r = reqwest::Client::new()
        .post(format!("{base}/api/bg/{user}/readings"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_events_reach_the_endpoint_signed_with_their_ids() {
    let app = TestApp::spawn_with(&[FAST]).await;
    let rx = Receiver::start(Behaviour::Ok).await;
    let secret = "receiver-secret-0123456789";
    add_endpoint(
        &app,
        "nt-own",
        &rx.url,
        secret,
        &["alert.raised", "alert.acknowledged"],
    )
    .await;
    let listed = get_json(
        &app.client,
        &app.url("/api/users/nt-own/notification-endpoints"),
    )
    .await;
    assert_eq!(listed["data"]["endpoints"][0]["url"], rx.url.as_str());
    assert_eq!(
        listed["data"]["endpoints"][0]["events"],
        json!(["alert.raised", "alert.acknowledged"])
    );
    assert!(!listed.to_string().contains(secret), "{listed}");
    assert!(listed["data"]["endpoints"][0].get("secret").is_none());

    post(&app.base, "nt-own", &[(0, 60)]).await;
    let raised = rx.wait_for("alert.raised", 1).await;
    let got = &raised[0];
    assert_signed(got, secret);
    let event = got.json();
    assert_eq!(event["type"], "alert.raised");
    assert_eq!(event["user_id"], "nt-own");
    assert_eq!(event["data"]["type"], "low");
    assert_eq!(event["data"]["glucose_value"], 60);
    assert_eq!(got.header("x-webhook-id"), event["id"].as_str().unwrap());
    assert_eq!(got.header("content-type"), "application/json");

    let alert_id = event["data"]["id"].as_str().unwrap().to_owned();
    let r = app
        .client
        .post(app.url(&format!("/api/users/nt-own/alerts/{alert_id}/ack")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked = rx.wait_for("alert.acknowledged", 1).await;
    assert_signed(&acked[0], secret);
    let event = acked[0].json();
    assert_eq!(event["data"]["id"], alert_id.as_str());
    assert_eq!(event["data"]["status"], "acknowledged");
    assert_ne!(acked[0].header("x-webhook-id"), got.header("x-webhook-id"));

    // Resolved is not subscribed: once the resolution is delivered elsewhere
    // (a second endpoint that wants it), this one has still only its two.
    let other = Receiver::start(Behaviour::Ok).await;
    add_endpoint(&app, "nt-own", &other.url, secret, &["alert.resolved"]).await;
    post(&app.base, "nt-own", &[(0, 110)]).await;
    other.wait_for("alert.resolved", 1).await;
    assert!(rx.of("alert.resolved").is_empty());

    // Deleting stops deliveries to it; an unknown id is a 404.
    let id = listed["data"]["endpoints"][0]["id"].as_str().unwrap();
    let path = format!("/api/users/nt-own/notification-endpoints/{id}");
    let r = app.client.delete(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = app.client.delete(app.url(&path)).send().await.unwrap();
    expect_error(r, 404, "RESOURCE_NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url("/api/users/nt-own/notification-endpoints/not-a-uuid"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "VALIDATION_ERROR").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_same_event_again_until_it_answers() {
    let app = TestApp::spawn_with(&[FAST]).await;
    let rx = Receiver::start(Behaviour::FailFirst(2)).await;
    let secret = "retry-secret-0123456789ab";
    add_endpoint(&app, "nt-retry", &rx.url, secret, &["alert.raised"]).await;
    post(&app.base, "nt-retry", &[(0, 60)]).await;
    // Two answered 500, the third 200.
    let all = rx.wait_for("alert.raised", 3).await;
    let ids: Vec<&str> = all.iter().map(|g| g.header("x-webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same event: {ids:?}"
    );
    assert!(all.iter().all(|g| g.body == all[0].body), "the same body");
    for g in &all {
        assert_signed(g, secret);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for outcome in ["failed", "delivered"] {
        let series = format!("notification_deliveries_total{{outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&series), "{series} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_delays_neither_ingest_nor_another_endpoint() {
    // The hanging request stays open for the whole test.
    let app = TestApp::spawn_with(&[FAST, ("NOTIFICATION_TIMEOUT_SECONDS", "300")]).await;
    let hang = Receiver::start(Behaviour::Hang).await;
    let fine = Receiver::start(Behaviour::Ok).await;
    let secret = "hang-secret-0123456789abc";
    let events = ["alert.raised", "alert.resolved"];
    add_endpoint(&app, "nt-hang", &hang.url, secret, &events).await;
    add_endpoint(&app, "nt-hang", &fine.url, secret, &events).await;
    post(&app.base, "nt-hang", &[(0, 60)]).await;
    fine.wait_for("alert.raised", 1).await;
    eventually("the hanging receiver got its request", WAIT, || async {
        hang.arrived.load(Ordering::SeqCst) >= 1
    })
    .await;
    // While that request hangs: ingest answers, and the next event reaches
    // the other endpoint.
    post(&app.base, "nt-hang", &[(0, 120)]).await;
    fine.wait_for("alert.resolved", 1).await;
    assert!(hang.got().is_empty(), "the hanging receiver never answered");
    assert_eq!(
        hang.arrived.load(Ordering::SeqCst),
        1,
        "one delivery per endpoint at a time: the second waits for the first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_receives_the_patients_alerts_on_their_own_endpoint() {
    let app = TestApp::spawn_with(&[FAST]).await;
    let now = Utc::now();
    for (grantee, expires_at) in [
        ("nt-parent", None),
        ("nt-ex", Some(now - chrono::Duration::seconds(1))),
    ] {
        app.store
            .put_share(
                Share {
                    patient_id: user("nt-kid"),
                    grantee_id: user(grantee),
                    role: ShareRole::Caregiver,
                    created_at: now,
                    expires_at,
                },
                100,
            )
            .await
            .unwrap();
    }
    let parent = Receiver::start(Behaviour::Ok).await;
    let expired = Receiver::start(Behaviour::Ok).await;
    let kid = Receiver::start(Behaviour::Ok).await;
    let secret = "parent-secret-0123456789a";
    let to_parent = add_endpoint(&app, "nt-parent", &parent.url, secret, &["alert.raised"]).await;
    let to_expired = add_endpoint(&app, "nt-ex", &expired.url, secret, &["alert.raised"]).await;
    add_endpoint(&app, "nt-kid", &kid.url, secret, &["alert.raised"]).await;
    post(&app.base, "nt-kid", &[(0, 60)]).await;
    let got = parent.wait_for("alert.raised", 1).await;
    assert_signed(&got[0], secret);
    assert_eq!(got[0].json()["user_id"], "nt-kid");
    let event_id = got[0].header("x-webhook-id").to_owned();
    let own = kid.wait_for("alert.raised", 1).await;
    assert_eq!(own[0].header("x-webhook-id"), event_id);
    // Once the fan-out is done, every delivery it meant is queued: the
    // parent's is, the expired grantee's is not.
    eventually("the fan-out ended", WAIT, || async {
        queued(&app, FANOUT_KIND, &event_id).await == Some(TaskStatus::Succeeded)
    })
    .await;
    assert!(
        queued(&app, DELIVERY_KIND, &format!("{event_id}/{to_parent}"))
            .await
            .is_some()
    );
    assert_eq!(
        queued(&app, DELIVERY_KIND, &format!("{event_id}/{to_expired}")).await,
        None
    );
    assert!(expired.got().is_empty(), "an expired share hears nothing");
}

/// An app as `TestApp` builds it, on given settings, that can be stopped as on
/// SIGTERM (waiting for serve to end).
struct Instance {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Instance {
    async fn start(vars: &[(&str, &str)]) -> Self {
        let dir = TempDir::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut all: HashMap<String, String> = HashMap::from([
            (
                "SQLITE_PATH".into(),
                dir.path().join("app.db").display().to_string(),
            ),
            ("AUTH_DISABLED".into(), "true".into()),
            ("RATE_LIMIT_USER_PER_MINUTE".into(), "10000000".into()),
            // Both instances open the sealed secret: one key.
            (
                "TOKEN_ENCRYPTION_KEY".into(),
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
        ]);
        for (k, v) in vars {
            all.insert((*k).into(), (*v).into());
        }
        let settings = Settings::from_vars(&all).expect("test settings are valid");
        let app = App::build(settings).await.expect("app builds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            shutdown: Some(tx),
            served,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), &mut self.served)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_at_shutdown_arrives_after_a_restart() {
    let schema = PgSchema::new();
    let _store = schema.store().await;
    let database_url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let vars = [
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", database_url.as_str()),
        ("NOTIFICATION_RETRY_DELAYS", "200ms"),
    ];
    // The receiver's address, with nobody listening yet: deliveries fail.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let url = format!("http://{addr}/hook");
    let secret = "restart-secret-0123456789";

    let first = Instance::start(&vars).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/users/nt-restart/notification-endpoints",
            first.base
        ))
        .json(&json!({"url": url, "secret": secret, "events": ["alert.raised"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    post(&first.base, "nt-restart", &[(0, 60)]).await;
    let db = Arc::new(tokio::sync::Mutex::new(schema.connection().await));
    eventually("a delivery attempt failed", WAIT, || {
        let db = db.clone();
        async move {
            let mut db = db.lock().await;
            let failed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tasks WHERE kind = 'notification_delivery' \
                 AND status IN ('queued', 'running') AND attempts >= 1",
            )
            .fetch_one(&mut *db)
            .await
            .unwrap();
            failed >= 1
        }
    })
    .await;
    first.stop().await;

    let rx = Receiver::on(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        Behaviour::Ok,
    );
    let second = Instance::start(&vars).await;
    let got = rx.wait_for("alert.raised", 1).await;
    assert_signed(&got[0], secret);
    assert_eq!(got[0].json()["user_id"], "nt-restart");
    second.stop().await;
}

const JWT_SECRET: &str = "notify-test-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_development_urls_must_be_https_and_public_and_each_error_names_its_field() {
    let app = TestApp::spawn_with(&[
        ("SERVICE_ENV", "staging"),
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", JWT_SECRET),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        ("NOTIFICATION_ENDPOINTS_MAX_PER_USER", "2"),
    ])
    .await;
    let token = mint_hs256(
        JWT_SECRET,
        "nt-val",
        &[Role::Patient],
        Duration::from_secs(600),
        None,
        None,
    )
    .unwrap();
    let secret = "validation-secret-0123456789";
    let send = |body: Value| {
        let request = app
            .client
            .post(app.url("/api/users/nt-val/notification-endpoints"))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let body = |url: &str| json!({"url": url, "secret": secret, "events": ["alert.raised"]});
    for (url, says) in [
        ("http://93.184.216.34/hook", "https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]:8443/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[fd00:ec2::254]/", "unique-local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://224.0.0.1/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://user:pw@93.184.216.34/hook", "user name"),
        ("not a url", "https"),
    ] {
        let error = expect_error(send(body(url)).await, 422, "VALIDATION_ERROR").await;
        let errors = &error["details"]["errors"];
        assert_eq!(errors[0]["pointer"], "/url", "{url}: {error}");
        assert!(
            errors[0]["message"].as_str().unwrap().contains(says),
            "{url}: {error}"
        );
        assert!(!error.to_string().contains(secret));
    }
    let long = format!("https://93.184.216.34/{}", "a".repeat(2048));
    let error = expect_error(send(body(&long)).await, 422, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/url");

    let good = "https://93.184.216.34/hook";
    for (bad, pointer) in [
        (
            json!({"url": good, "secret": "short", "events": ["alert.raised"]}),
            "/secret",
        ),
        (
            json!({"url": good, "secret": "s".repeat(257), "events": ["alert.raised"]}),
            "/secret",
        ),
        (
            json!({"url": good, "secret": secret, "events": []}),
            "/events",
        ),
        (
            json!({"url": good, "secret": secret, "events": ["alert.raised", "reading.created"]}),
            "/events/1",
        ),
    ] {
        let error = expect_error(send(bad.clone()).await, 422, "VALIDATION_ERROR").await;
        assert_eq!(
            error["details"]["errors"][0]["pointer"], pointer,
            "{bad}: {error}"
        );
    }
    // Every bad field at once: one error each.
    let error = expect_error(
        send(json!({"url": "http://x.example/", "secret": "s", "events": ["nope"]})).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    let pointers: Vec<&str> = error["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/url", "/secret", "/events/0"]);
    // Malformed: 400.
    expect_error(
        send(json!({"url": good, "secret": secret, "events": ["alert.raised"], "x": 1})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    expect_error(
        send(json!({"url": good, "secret": 12, "events": ["alert.raised"]})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;

    // Nothing was stored by any of it.
    let list = |app: &TestApp| {
        let request = app
            .client
            .get(app.url("/api/users/nt-val/notification-endpoints"))
            .bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(list(&app).await["data"]["endpoints"], json!([]));

    // A public https address passes (an IP literal: no DNS needed), up to the cap.
    for _ in 0..2 {
        let r = send(body(good)).await;
        assert_eq!(r.status(), 201);
        assert!(!r.text().await.unwrap().contains(secret));
    }
    let error = expect_error(send(body(good)).await, 409, "CONFLICT").await;
    assert!(error["message"].as_str().unwrap().contains('2'), "{error}");
    let listed = list(&app).await;
    assert_eq!(listed["data"]["endpoints"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(secret));
    // The secret is sealed at rest: not in the store's record in the clear.
    let stored = app
        .store
        .list_notification_endpoints(&user("nt-val"))
        .await
        .unwrap();
    let needle = secret.as_bytes();
    assert!(stored.iter().all(|e| !e
        .secret
        .ciphertext
        .windows(needle.len())
        .any(|w| w == needle)));
}

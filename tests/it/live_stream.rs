//! The per-user live stream (`GET /api/users/{id}/stream`): reading and alert
//! events with ids; `Last-Event-ID` (and `?last_event_id=`) replay of exactly
//! what was missed; keep-alive comments; who may stream; stream tokens for
//! browsers; the stream limits; and two instances on one PostgreSQL and one
//! RabbitMQ, where what is stored on one reaches streams held by the other.
//!
//! Streams are read with a small SSE reader over `bytes_stream()`, waiting for
//! frames (bounded by `WAIT`), never sleeping.

use std::collections::HashSet;
use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::auth::stream_token::StreamTokens;
use cgm_hub::auth::Principal;
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// How long a frame may take: events follow a commit within milliseconds (the
/// relay is woken by the commit); this bound is for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "live-stream-test-secret-0123456789abcdef";

async fn open(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

async fn stream(app: &TestApp, user: &str, headers: &[(&str, &str)]) -> SseReader {
    SseReader::new(
        open(
            &app.client,
            &app.url(&format!("/api/users/{user}/stream")),
            headers,
        )
        .await,
    )
}

/// Posts one reading of `user` at `at` with `token` (none: AUTH_DISABLED).
async fn post_at(base: &str, user: &str, at: DateTime<Utc>, mg_dl: u16, token: Option<&str>) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/bg/{user}/readings"))
        .json(&json!({"readings": [reading_json(at, mg_dl)]}));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let r = request.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn minutes_ago(m: i64) -> DateTime<Utc> {
    let now = Utc::now();
    // Whole seconds, as readings are stored.
    DateTime::from_timestamp(now.timestamp(), 0).unwrap() - chrono::Duration::minutes(m)
}

#[tokio::test]
async fn reading_and_alert_events_arrive_with_ids_and_the_endpoints_shapes() {
    let app = TestApp::spawn().await;
    let user = format!("live-{}", &unique()[..8]);
    let mut s = stream(&app, &user, &[]).await;
    let at = minutes_ago(0);
    // Below `low` (70): a low alert is raised.
    post_at(&app.base, &user, at, 62, None).await;
    let mut events = vec![s.event().await, s.event().await];
    events.sort_by(|a, b| a.0.cmp(&b.0));
    let [(alert_event, alert_id, alert), (reading_event, reading_id, reading)] =
        <[_; 2]>::try_from(events).unwrap();
    assert_eq!(
        (alert_event.as_str(), reading_event.as_str()),
        ("alert", "reading")
    );
    assert_ne!(alert_id, reading_id);
    let latest = get_json(&app.client, &app.url(&format!("/api/bg/{user}/latest"))).await;
    assert_eq!(
        reading, latest["data"],
        "the reading as GET /api/bg returns it"
    );
    let listed = get_json(&app.client, &app.url(&format!("/api/users/{user}/alerts"))).await;
    assert_eq!(alert, listed["data"]["alerts"][0], "the alert as listed");
    assert_eq!(alert["type"], "low");
    assert_eq!(alert["status"], "active");
}

/// What an event is about: the reading's timestamp, or the alert's type and status.
fn about(e: &(String, String, Value)) -> (String, String) {
    let d = &e.2;
    let what = match e.0.as_str() {
        "reading" => d["timestamp"].as_str().unwrap().to_owned(),
        _ => format!(
            "{} {}",
            d["type"].as_str().unwrap(),
            d["status"].as_str().unwrap()
        ),
    };
    (e.0.clone(), what)
}

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed_then_follows_live() {
    let app = TestApp::spawn().await;
    let user = format!("replay-{}", &unique()[..8]);
    let t = |m| minutes_ago(m);
    let mut first = stream(&app, &user, &[]).await;
    post_at(&app.base, &user, t(20), 80, None).await;
    let (_, seen_id, _) = first.event().await;
    drop(first);

    // Missed while disconnected: two readings, the second one low (gently
    // falling, so no rate alert).
    post_at(&app.base, &user, t(15), 75, None).await;
    post_at(&app.base, &user, t(10), 66, None).await;

    let mut second = stream(&app, &user, &[("Last-Event-ID", &seen_id)]).await;
    let replayed = vec![
        second.event().await,
        second.event().await,
        second.event().await,
    ];
    let mut kinds: Vec<(String, String)> = replayed.iter().map(about).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("alert".to_owned(), "low active".to_owned()),
            ("reading".to_owned(), stamp(t(15))),
            ("reading".to_owned(), stamp(t(10))),
        ],
        "exactly the missed events: {replayed:?}"
    );
    assert!(
        replayed.iter().all(|(_, id, _)| *id != seen_id),
        "what was seen is not replayed"
    );

    // Then live, with no duplicate at the seam: back in range resolves the low.
    post_at(&app.base, &user, t(5), 90, None).await;
    let mut live = Vec::new();
    while live.len() < 2 {
        live.push(second.event().await);
    }
    let mut kinds: Vec<(String, String)> = live.iter().map(about).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("alert".to_owned(), "low resolved".to_owned()),
            ("reading".to_owned(), stamp(t(5))),
        ],
        "the new reading and the resolution: {live:?}"
    );
    let last_id = live.last().unwrap().1.clone();
    let all: HashSet<&String> = replayed.iter().chain(&live).map(|(_, id, _)| id).collect();
    assert_eq!(all.len(), 5, "no id twice");
    // Nothing else followed: the next event is the next reading.
    let marker = t(4);
    post_at(&app.base, &user, marker, 91, None).await;
    assert_eq!(second.until_reading(marker).await.len(), 1);
    drop(second);

    // A browser that cannot set the header passes the id in the query.
    let mut third = SseReader::new(
        open(
            &app.client,
            &app.url(&format!("/api/users/{user}/stream?last_event_id={last_id}")),
            &[],
        )
        .await,
    );
    let got = third.until_reading(marker).await;
    assert_eq!(got.len(), 1, "only the reading stored since: {got:?}");

    // An id this server never wrote is refused.
    let r = open(
        &app.client,
        &app.url(&format!("/api/users/{user}/stream")),
        &[("Last-Event-ID", "yesterday")],
    )
    .await;
    let error = expect_error(r, 400, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/last_event_id");
}

#[tokio::test]
async fn keep_alive_comments_arrive_at_the_configured_interval() {
    let app = TestApp::spawn_with(&[("STREAM_KEEPALIVE_SECONDS", "1")]).await;
    let mut s = stream(&app, "keepalive-user", &[]).await;
    assert_eq!(s.frame().await, Frame::Comment("keep-alive".into()));
    assert_eq!(s.frame().await, Frame::Comment("keep-alive".into()));
}

async fn secured() -> TestApp {
    let app = TestApp::spawn_with(&[("AUTH_DISABLED", "false"), ("AUTH_JWT_SECRET", SECRET)]).await;
    app.store
        .put_share(
            Share {
                patient_id: user("pat"),
                grantee_id: user("mom"),
                role: ShareRole::Caregiver,
                created_at: Utc::now(),
                expires_at: None,
            },
            100,
        )
        .await
        .unwrap();
    app
}

fn jwt(sub: &str, role: Role) -> String {
    mint_hs256(SECRET, sub, &[role], Duration::from_secs(600), None, None).unwrap()
}

#[tokio::test]
async fn the_owner_a_caregiver_with_a_share_and_a_service_may_stream_others_may_not() {
    let app = secured().await;
    let url = app.url("/api/users/pat/stream");
    for (sub, role, want) in [
        ("pat", Role::Patient, 200),
        ("mom", Role::Caregiver, 200),
        ("ml", Role::Service, 200),
        ("aunt", Role::Caregiver, 403),
        ("other", Role::Patient, 403),
    ] {
        let auth = format!("Bearer {}", jwt(sub, role));
        let r = open(&app.client, &url, &[("authorization", &auth)]).await;
        assert_eq!(r.status(), want, "{sub}");
        if want == 403 {
            expect_error(r, 403, "FORBIDDEN").await;
        }
    }
    expect_error(open(&app.client, &url, &[]).await, 401, "AUTH_ERROR").await;
    // Audited like every other route.
    let audit = get_json_auth(
        &app,
        "/api/audit?user_id=pat&limit=50",
        &jwt("ops", Role::Admin),
    )
    .await;
    let decisions: Vec<(String, String)> = audit["data"]["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["action"] == "read_stream")
                .map(|e| {
                    (
                        e["actor"].as_str().unwrap_or_default().to_owned(),
                        e["decision"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        decisions.contains(&("mom".into(), "allowed".into()))
            && decisions.contains(&("aunt".into(), "denied".into())),
        "{audit}"
    );
}

async fn get_json_auth(app: &TestApp, path: &str, token: &str) -> Value {
    eventually_ok("the audit trail is written", WAIT, || async {
        let body: Value = app
            .client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let n = body["data"]["entries"].as_array().map_or(0, |e| {
            e.iter().filter(|e| e["action"] == "read_stream").count()
        });
        if n >= 5 {
            Ok(body)
        } else {
            Err(body.to_string())
        }
    })
    .await
}

#[tokio::test]
async fn a_stream_token_opens_only_its_users_stream_and_expires() {
    let app = secured().await;
    let mom = jwt("mom", Role::Caregiver);
    let r = app
        .client
        .post(app.url("/api/users/pat/stream-token"))
        .bearer_auth(&mom)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["expires_in"], 300);
    let token = body["data"]["token"].as_str().unwrap().to_owned();

    // EventSource: no header, the token in the query.
    let mut s = SseReader::new(
        open(
            &app.client,
            &app.url(&format!("/api/users/pat/stream?access_token={token}")),
            &[],
        )
        .await,
    );
    let at = minutes_ago(0);
    post_at(&app.base, "pat", at, 130, Some(&jwt("pat", Role::Patient))).await;
    let (event, _, data) = s.event().await;
    assert_eq!(
        (event.as_str(), &data["timestamp"]),
        ("reading", &json!(stamp(at)))
    );

    // Not on any other route, not for another user's stream.
    for path in [
        format!("/api/bg/pat/latest?access_token={token}"),
        format!("/api/users/pat/alerts?access_token={token}"),
        format!("/api/users/other/stream?access_token={token}"),
    ] {
        expect_error(
            open(&app.client, &app.url(&path), &[]).await,
            401,
            "AUTH_ERROR",
        )
        .await;
    }
    // Nor is a bearer JWT accepted in the query string.
    let r = open(
        &app.client,
        &app.url(&format!("/api/users/pat/stream?access_token={mom}")),
        &[],
    )
    .await;
    expect_error(r, 401, "AUTH_ERROR").await;
    // A caregiver may not mint one for a patient who did not share.
    let r = app
        .client
        .post(app.url("/api/users/pat/stream-token"))
        .bearer_auth(jwt("aunt", Role::Caregiver))
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "FORBIDDEN").await;

    // Expired: minted with the server's key an hour ago.
    let tokens = StreamTokens::new(
        app.cipher.derive_key("cgm-hub/stream-token-signing/v1"),
        Duration::from_secs(300),
    );
    let principal = Principal {
        user_id: user("mom"),
        roles: [Role::Caregiver].into(),
    };
    let expired = tokens.mint(
        &principal,
        &user("pat"),
        Utc::now() - chrono::Duration::hours(1),
    );
    let r = open(
        &app.client,
        &app.url(&format!("/api/users/pat/stream?access_token={expired}")),
        &[],
    )
    .await;
    let error = expect_error(r, 401, "AUTH_ERROR").await;
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
    // The same key, fresh: accepted (so the refusal above was the expiry).
    let fresh = tokens.mint(&principal, &user("pat"), Utc::now());
    let r = open(
        &app.client,
        &app.url(&format!("/api/users/pat/stream?access_token={fresh}")),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn streams_beyond_the_limits_are_refused_until_one_closes() {
    let app = TestApp::spawn_with(&[
        ("STREAM_MAX_PER_USER", "2"),
        ("STREAM_MAX_TOTAL", "3"),
        // Keep-alives reveal a closed client to the server within a second.
        ("STREAM_KEEPALIVE_SECONDS", "1"),
    ])
    .await;
    let url = |u: &str| app.url(&format!("/api/users/{u}/stream"));
    let a1 = stream(&app, "lim-a", &[]).await;
    let _a2 = stream(&app, "lim-a", &[]).await;
    let body = expect_error(
        open(&app.client, &url("lim-a"), &[]).await,
        429,
        "RATE_LIMIT_EXCEEDED",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );
    let _b1 = stream(&app, "lim-b", &[]).await;
    let body = expect_error(
        open(&app.client, &url("lim-c"), &[]).await,
        503,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("at most 3"),
        "{body}"
    );

    drop(a1);
    eventually("a closed stream frees its place", WAIT, || async {
        open(&app.client, &url("lim-c"), &[]).await.status() == 200
    })
    .await;
}

/// Deletes a test's exchange and durable queue.
async fn delete_topology(rabbit: &cgm_hub::config::RabbitSettings) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    if let Ok((_connection, channel)) = broker_channel().await {
        let _ = channel
            .queue_delete(rabbit.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(
                rabbit.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

#[tokio::test]
async fn readings_and_alerts_stored_on_one_instance_reach_streams_on_another() {
    let schema = PgSchema::new();
    // Migrated once, before both instances start.
    let _store = schema.store().await;
    let rabbit = rabbit_settings(BROKER, &unique());
    let database_url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let mut env = vec![
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", database_url.as_str()),
        (
            "TOKEN_ENCRYPTION_KEY",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
        ),
    ];
    env.extend(rabbit_env(&rabbit));
    let a = TestApp::spawn_with(&env).await;
    let b = TestApp::spawn_with(&env).await;
    let health = get_json(&b.client, &b.url("/health")).await;
    // Answered once every component before the listener runs, B's consumer
    // included.
    assert_eq!(
        health["checks"]["event_bus"]["status"], "ok",
        "B reaches the broker: {health}"
    );

    let user = format!("x-{}", &unique()[..8]);
    let mut on_b = stream(&b, &user, &[]).await;
    let at = minutes_ago(0);
    post_at(&a.base, &user, at, 60, None).await;
    let mut got = vec![on_b.event().await, on_b.event().await];
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got[0].0, "alert", "{got:?}");
    assert_eq!(got[0].2["type"], "low");
    assert_eq!(got[1].0, "reading");
    assert_eq!(got[1].2["timestamp"], stamp(at));
    let latest = get_json(&a.client, &a.url(&format!("/api/bg/{user}/latest"))).await;
    assert_eq!(got[1].2, latest["data"]);
    drop(on_b);
    delete_topology(&rabbit).await;
}

//! Alerting over HTTP: settings and their validation; each alert type end to
//! end (settings → readings → alert listed, on the user's live stream and at
//! their notification endpoint, signed → ack → readings back past the
//! hysteresis → resolved, again on the stream and at the endpoint); falling fast; the predicted low; a backfill raises
//! nothing; one open alert per type while a low continues; `alert.raised`
//! reaches the event bus; rising fast, falling fast and the predicted low end
//! to end; the stale timer on SQLite and PostgreSQL, and two instances' timers
//! raising one stale alert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cgm_hub::app::App;
use cgm_hub::config::Settings;
use cgm_hub::events::Subscriber;
use cgm_hub::records::events::Message;
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

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

async fn alerts(app: &TestApp, user: &str, query: &str) -> Vec<Value> {
    let body = get_json(
        &app.client,
        &app.url(&format!("/api/users/{user}/alerts?{query}")),
    )
    .await;
    body["data"]["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

async fn of_type(app: &TestApp, user: &str, kind: &str) -> Vec<Value> {
    alerts(app, user, "")
        .await
        .into_iter()
        .filter(|a| a["type"] == kind)
        .collect()
}

/// Where an alert shows besides the list: the user's live stream and a
/// notification endpoint of theirs, both opened before the first reading.
struct Observers {
    stream: SseReader,
    receiver: Receiver,
}

const OBSERVER_SECRET: &str = "observer-secret-0123456789";

impl Observers {
    async fn open(app: &TestApp, user: &str) -> Self {
        let receiver = Receiver::start(Behaviour::Ok).await;
        let r = app
            .client
            .post(app.url(&format!("/api/users/{user}/notification-endpoints")))
            .json(&json!({
                "url": receiver.url,
                "secret": OBSERVER_SECRET,
                "events": ["alert.raised", "alert.acknowledged", "alert.resolved"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let response = app
            .client
            .get(app.url(&format!("/api/users/{user}/stream")))
            .send()
            .await
            .unwrap();
        Self {
            stream: SseReader::new(response),
            receiver,
        }
    }

    /// Alert `id` reached `status`: an `alert` event on the stream says so, and
    /// the endpoint received the matching signed event.
    async fn saw(&mut self, id: &str, status: &str) {
        let stream = &mut self.stream;
        let on_stream = async {
            let mut seen = Vec::new();
            loop {
                let (event, _, data) = stream.event().await;
                if event == "alert" && data["id"] == id && data["status"] == status {
                    return;
                }
                seen.push((event, data["status"].clone(), data["type"].clone()));
                assert!(
                    seen.len() < 100,
                    "no {status} alert {id} on the stream: {seen:?}"
                );
            }
        };
        // Keep-alives arrive meanwhile, so bound the whole wait, not each frame.
        tokio::time::timeout(SSE_WAIT, on_stream)
            .await
            .unwrap_or_else(|_| panic!("alert {id} {status} on the stream within {SSE_WAIT:?}"));
        let kind = match status {
            "active" => "alert.raised",
            "acknowledged" => "alert.acknowledged",
            _ => "alert.resolved",
        };
        let delivered = |r: &Receiver| {
            r.of(kind)
                .into_iter()
                .filter(|g| g.json()["data"]["id"] == id && g.json()["data"]["status"] == status)
                .last()
        };
        let what = format!("{kind} of {id} at the endpoint");
        eventually(&what, RECEIVER_WAIT, || async {
            delivered(&self.receiver).is_some()
        })
        .await;
        assert_signed(&delivered(&self.receiver).unwrap(), OBSERVER_SECRET);
    }
}

async fn put_settings(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/users/{user}/alert-settings")))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn pointers(error: &Value) -> Vec<String> {
    error["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn alert_settings_default_validate_and_store() {
    let app = TestApp::spawn().await;
    let got = get_json(&app.client, &app.url("/api/users/set1/alert-settings")).await;
    assert_eq!(
        got["data"],
        json!({"urgent_low": 54, "low": 70, "high": 250, "urgent_high": null,
               "rate_mgdl_per_min": 3.0, "stale_minutes": 20, "predicted_low_minutes": 20,
               "snooze_minutes": 30})
    );
    let bad = expect_error(
        put_settings(&app, "set1", json!({"low": 50})).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&bad), ["/low"], "low must be above urgent_low");
    let bad = expect_error(
        put_settings(
            &app,
            "set1",
            json!({"urgent_low": 30, "high": 500, "stale_minutes": 0}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&bad), ["/urgent_low", "/high", "/stale_minutes"]);
    let bad = expect_error(
        put_settings(&app, "set1", json!({"urgent_high": 240})).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&bad), ["/urgent_high"]);
    expect_error(
        put_settings(&app, "set1", json!({"lowish": 60})).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    let r = put_settings(&app, "set1", json!({"low": 75, "urgent_high": 300})).await;
    assert_eq!(r.status(), 200);
    let got = get_json(&app.client, &app.url("/api/users/set1/alert-settings")).await;
    assert_eq!(
        (&got["data"]["low"], &got["data"]["urgent_high"]),
        (&json!(75), &json!(300))
    );
    assert_eq!(
        got["data"]["high"], 250,
        "absent fields take their defaults"
    );
}

/// One threshold alert's life: `raise` raises it, `hold` (inside the
/// hysteresis) leaves it acknowledged, `clear` resolves it.
async fn threshold_case(app: &TestApp, user: &str, kind: &str, raise: u16, hold: u16, clear: u16) {
    let mut seen = Observers::open(app, user).await;
    post(&app.base, user, &[(12, raise)]).await;
    let open = of_type(app, user, kind).await;
    assert_eq!(open.len(), 1, "{kind}: {open:?}");
    let alert = &open[0];
    assert_eq!(alert["status"], "active", "{alert}");
    assert_eq!(alert["glucose_value"], raise);
    assert_eq!(alert["user_id"], user);
    let id = alert["id"].as_str().unwrap();
    seen.saw(id, "active").await;

    let acked = app
        .client
        .post(app.url(&format!("/api/users/{user}/alerts/{id}/ack")))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let acked: Value = acked.json().await.unwrap();
    assert_eq!(acked["data"]["status"], "acknowledged");
    assert_eq!(acked["data"]["acknowledged_by"], "dev-admin", "the caller");
    assert!(acked["data"]["acknowledged_at"].is_string());
    seen.saw(id, "acknowledged").await;

    post(&app.base, user, &[(8, hold)]).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now[0]["status"], "acknowledged", "{kind} holds at {hold}");

    post(&app.base, user, &[(4, clear)]).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["status"], "resolved", "{kind} resolves at {clear}");
    assert!(now[0]["resolved_at"].is_string());
    assert_eq!(now[0]["acknowledged_by"], "dev-admin");
    seen.saw(id, "resolved").await;

    let active = alerts(app, user, "status=active").await;
    assert!(active.iter().all(|a| a["type"] != kind));
    // A resolved alert cannot be acknowledged.
    let again = app
        .client
        .post(app.url(&format!("/api/users/{user}/alerts/{id}/ack")))
        .send()
        .await
        .unwrap();
    expect_error(again, 409, "CONFLICT").await;
}

#[tokio::test]
async fn each_threshold_alert_is_raised_acknowledged_and_resolved() {
    let app = TestApp::spawn().await;
    threshold_case(&app, "th-low", "low", 65, 75, 80).await;
    threshold_case(&app, "th-ulow", "urgent_low", 50, 60, 64).await;
    threshold_case(&app, "th-high", "high", 260, 245, 240).await;
    let r = put_settings(&app, "th-uhigh", json!({"urgent_high": 300})).await;
    assert_eq!(r.status(), 200);
    threshold_case(&app, "th-uhigh", "urgent_high", 310, 295, 290).await;
    // Without urgent_high set, 310 is only high.
    post(&app.base, "th-nouh", &[(1, 310)]).await;
    let kinds: Vec<Value> = alerts(&app, "th-nouh", "")
        .await
        .iter()
        .map(|a| a["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("high")]);
}

#[tokio::test]
async fn falling_fast_and_predicted_low_are_raised_from_recent_readings() {
    let app = TestApp::spawn().await;
    // 200 → 160 in 10 minutes: -4 mg/dL/min.
    post(&app.base, "fast", &[(14, 200), (9, 180), (4, 160)]).await;
    let fast = of_type(&app, "fast", "falling_fast").await;
    assert_eq!(fast.len(), 1, "{fast:?}");
    assert_eq!(fast[0]["glucose_value"], 160);
    assert!(of_type(&app, "fast", "rising_fast").await.is_empty());

    // -2 mg/dL/min (not fast) from 130 to 90: the line reaches 50 in 20 minutes.
    post(
        &app.base,
        "fcst",
        &[(20, 130), (15, 120), (10, 110), (5, 100), (0, 90)],
    )
    .await;
    let kinds: Vec<Value> = alerts(&app, "fcst", "")
        .await
        .iter()
        .map(|a| a["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("predicted_low")]);
    // Only 5 minutes of readings: no forecast.
    post(&app.base, "fcst2", &[(5, 100), (0, 90)]).await;
    assert!(alerts(&app, "fcst2", "").await.is_empty());
}

#[tokio::test]
async fn a_backfill_of_old_readings_raises_nothing() {
    let app = TestApp::spawn().await;
    // 30 days of urgent lows at 5-minute steps, the newest 16 minutes old.
    let readings: Vec<(i64, u16)> = (0..30 * 288).map(|i| (16 + 5 * i, 45)).collect();
    for chunk in readings.chunks(5000) {
        post(&app.base, "backfill", chunk).await;
    }
    let latest = get_json(&app.client, &app.url("/api/bg/backfill/latest")).await;
    assert_eq!(
        latest["data"]["glucose_value"], 45,
        "the backfill was stored"
    );
    assert!(alerts(&app, "backfill", "").await.is_empty());
    // A fresh reading raises at once.
    post(&app.base, "backfill", &[(1, 48)]).await;
    let kinds: Vec<Value> = alerts(&app, "backfill", "")
        .await
        .iter()
        .map(|a| a["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("urgent_low")]);
}

#[tokio::test]
async fn a_continuing_low_keeps_one_open_alert() {
    let app = TestApp::spawn().await;
    for (ago, v) in [(12, 66), (8, 65), (4, 66), (0, 65)] {
        post(&app.base, "steady-low", &[(ago, v)]).await;
    }
    let lows = of_type(&app, "steady-low", "low").await;
    assert_eq!(lows.len(), 1, "{lows:?}");
    assert_eq!(lows[0]["status"], "active");
    assert_eq!(lows[0]["glucose_value"], 66, "the reading that raised it");
    // Listing: filters and a cursor that walks the (one-alert) history.
    assert_eq!(alerts(&app, "steady-low", "status=resolved").await.len(), 0);
    let body = get_json(
        &app.client,
        &app.url("/api/users/steady-low/alerts?limit=1&startDate=2000-01-01"),
    )
    .await;
    assert_eq!(body["data"]["alerts"].as_array().unwrap().len(), 1);
    assert!(body["data"]["pagination"]["next_cursor"].is_null());
    let bad = app
        .client
        .get(app.url("/api/users/steady-low/alerts?status=open&limit=0"))
        .send()
        .await
        .unwrap();
    let bad = expect_error(bad, 400, "VALIDATION_ERROR").await;
    assert_eq!(pointers(&bad), ["/status", "/limit"]);
}

/// Keeps the alert events it is handed.
#[derive(Default)]
struct AlertEvents(Mutex<Vec<Value>>);

#[async_trait]
impl Subscriber for AlertEvents {
    fn name(&self) -> &'static str {
        "alert-events"
    }
    async fn handle(&self, message: &Message) {
        if message.routing_key.starts_with("alert.") {
            self.0.lock().unwrap().push(message.json());
        }
    }
}

#[tokio::test]
async fn the_alert_raised_event_reaches_the_bus() {
    let dir = tempfile::TempDir::new().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let vars: HashMap<String, String> = HashMap::from([
        (
            "SQLITE_PATH".into(),
            dir.path().join("app.db").display().to_string(),
        ),
        ("AUTH_DISABLED".into(), "true".into()),
        ("SQLITE_SYNCHRONOUS".into(), "normal".into()),
    ]);
    let app = App::build(Settings::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let events = Arc::new(AlertEvents::default());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve_with(vec![events.clone()], listener, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    eventually("the app answers /health", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), format!("{base}/health"));
        async move { client.get(url).send().await.is_ok() }
    })
    .await;
    post(&base, "bus-low", &[(1, 62)]).await;
    eventually("alert.raised on the bus", Duration::from_secs(10), || {
        let seen = events.0.lock().unwrap().clone();
        async move {
            seen.iter().any(|e| {
                e["type"] == "alert.raised"
                    && e["user_id"] == "bus-low"
                    && e["data"]["type"] == "low"
                    && e["data"]["status"] == "active"
                    && e["data"]["glucose_value"] == 62
            })
        }
    })
    .await;
}

#[tokio::test]
async fn an_acknowledged_alert_still_true_after_its_snooze_is_raised_again() {
    use cgm_hub::records::alerts::AlertStatus;
    let app = TestApp::spawn().await;
    post(&app.base, "snooze", &[(12, 65)]).await;
    let low = app.store.open_alerts(&user("snooze")).await.unwrap();
    assert_eq!(low.len(), 1);
    // Acknowledged 31 minutes ago (the default snooze is 30 minutes).
    let long_ago = low[0].acknowledged(&user("mom"), Utc::now() - chrono::Duration::minutes(31));
    assert!(app
        .store
        .transition_alert(AlertStatus::Active, long_ago)
        .await
        .unwrap());
    post(&app.base, "snooze", &[(8, 64)]).await;
    let again = of_type(&app, "snooze", "low").await;
    assert_eq!(again.len(), 1, "the same alert, not a second one");
    assert_eq!(again[0]["id"], low[0].id.to_string());
    assert_eq!(again[0]["status"], "active");
    assert!(again[0]["acknowledged_by"].is_null());
    assert_eq!(again[0]["glucose_value"], 64);
    // Acknowledged now: the next low reading is inside the snooze.
    let id = low[0].id;
    let r = app
        .client
        .post(app.url(&format!("/api/users/snooze/alerts/{id}/ack")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    post(&app.base, "snooze", &[(4, 63)]).await;
    assert_eq!(
        of_type(&app, "snooze", "low").await[0]["status"],
        "acknowledged"
    );
}

#[tokio::test]
async fn the_alert_history_pages_newest_first() {
    let app = TestApp::spawn().await;
    // Low, back, low, back, low: three low alerts, two of them resolved.
    for (ago, v) in [(14, 65), (12, 80), (10, 65), (8, 80), (6, 65)] {
        post(&app.base, "pages", &[(ago, v)]).await;
    }
    assert_eq!(alerts(&app, "pages", "status=resolved").await.len(), 2);
    assert_eq!(alerts(&app, "pages", "status=active").await.len(), 1);
    let all = alerts(&app, "pages", "").await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["status"], "active", "newest first");
    let mut url = app.url("/api/users/pages/alerts?limit=1");
    let mut walked = Vec::new();
    loop {
        let body = get_json(&app.client, &url).await;
        let page = body["data"]["alerts"].as_array().unwrap().clone();
        assert_eq!(page.len(), 1, "{body}");
        walked.push(page[0]["id"].clone());
        match body["data"]["pagination"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(walked, ids);
    // A cursor belongs to its query.
    let body = get_json(&app.client, &app.url("/api/users/pages/alerts?limit=1")).await;
    let cursor = body["data"]["pagination"]["next_cursor"].as_str().unwrap();
    let r = app
        .client
        .get(app.url(&format!(
            "/api/users/pages/alerts?limit=1&status=active&cursor={cursor}"
        )))
        .send()
        .await
        .unwrap();
    let error = expect_error(r, 400, "VALIDATION_ERROR").await;
    assert_eq!(pointers(&error), ["/cursor"]);
}

/// The kinds of the user's alerts, newest first.
async fn kinds(app: &TestApp, user: &str) -> Vec<Value> {
    alerts(app, user, "")
        .await
        .iter()
        .map(|a| a["type"].clone())
        .collect()
}

async fn ack(app: &TestApp, user: &str, id: &str) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/api/users/{user}/alerts/{id}/ack")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["status"], "acknowledged", "{body}");
    body["data"].clone()
}

/// One alert's life from series of readings `(minutes ago, mg/dL)`: `raise`
/// raises `kind` (and nothing else), `hold` (inside the hysteresis) leaves it
/// acknowledged, `clear` resolves it.
async fn series_case(
    app: &TestApp,
    user: &str,
    kind: &str,
    raise: &[(i64, u16)],
    hold: &[(i64, u16)],
    clear: &[(i64, u16)],
) {
    let mut seen = Observers::open(app, user).await;
    post(&app.base, user, raise).await;
    assert_eq!(kinds(app, user).await, [json!(kind)], "{kind} alone");
    let alert = of_type(app, user, kind).await.remove(0);
    assert_eq!(alert["status"], "active");
    assert_eq!(alert["glucose_value"], raise.last().unwrap().1);
    let id = alert["id"].as_str().unwrap();
    seen.saw(id, "active").await;
    ack(app, user, id).await;
    seen.saw(id, "acknowledged").await;
    post(&app.base, user, hold).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["status"], "acknowledged", "{kind} holds: {}", now[0]);
    post(&app.base, user, clear).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["status"], "resolved", "{kind} resolves: {}", now[0]);
    assert!(now[0]["resolved_at"].is_string());
    seen.saw(id, "resolved").await;
    assert_eq!(kinds(app, user).await, [json!(kind)], "nothing else raised");
}

#[tokio::test]
async fn each_rate_and_forecast_alert_is_raised_acknowledged_and_resolved() {
    let app = TestApp::spawn().await;
    // The rate is taken from the oldest reading of the 15 minutes before the
    // newest: +4 mg/dL/min raises (≥ 3); +2.9 holds; +1.4 (below 2) resolves.
    series_case(
        &app,
        "rate-up",
        "rising_fast",
        &[(14, 100), (9, 120), (4, 140)],
        &[(2, 135)],
        &[(0, 120)],
    )
    .await;
    // -4 raises (≤ -3); -2.8 holds; -1.4 (above -2) resolves.
    series_case(
        &app,
        "rate-down",
        "falling_fast",
        &[(14, 200), (9, 180), (4, 160)],
        &[(2, 166)],
        &[(0, 180)],
    )
    .await;
    // -2 mg/dL/min from 130 to 90: the line reaches 50 in 20 minutes (below
    // 54); then 98 puts it at 58 (holds, below 64); 110 at 68 (resolves).
    series_case(
        &app,
        "forecast",
        "predicted_low",
        &[(24, 130), (19, 120), (14, 110), (9, 100), (4, 90)],
        &[(2, 98)],
        &[(0, 110)],
    )
    .await;
}

/// A user whose readings stop gets a `stale` alert from the timer (the app runs
/// it every second); it is acknowledged, raised again after its snooze, and
/// resolved by the next reading. Users without a reading for 24 h, and users
/// within their `stale_minutes`, get none.
async fn stale_case(app: &TestApp, user: &str) {
    use cgm_hub::pipeline::stale::StaleWatch;
    let gone = format!("{user}-gone");
    let recent = format!("{user}-recent");
    let backfilled = format!("{user}-backfilled");
    post(&app.base, &gone, &[(25 * 60, 120)]).await;
    post(&app.base, &recent, &[(5, 120)]).await;
    let old: Vec<(i64, u16)> = (0..30 * 24).map(|h| (25 * 60 + 60 * h, 110)).collect();
    post(&app.base, &backfilled, &old).await;
    let r = put_settings(app, user, json!({"stale_minutes": 1})).await;
    assert_eq!(r.status(), 200);
    let mut seen = Observers::open(app, user).await;
    post(&app.base, user, &[(3, 120), (2, 118)]).await;
    assert!(alerts(app, user, "").await.is_empty(), "nothing else");
    // The timer runs every second and sees the user once the newest reading
    // is a minute old: already the case.
    let stale = eventually_ok("a stale alert", Duration::from_secs(30), || async {
        of_type(app, user, "stale")
            .await
            .pop()
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(stale["status"], "active");
    assert_eq!(stale["glucose_value"], 118, "the last reading's");
    let message = stale["message"].as_str().unwrap();
    assert!(
        message.starts_with("No reading for ") && message.contains("118 mg/dL"),
        "{message}"
    );
    // The pass that raised it read the other users too (stored before).
    for quiet in [&gone, &recent, &backfilled] {
        assert!(alerts(app, quiet, "").await.is_empty(), "{quiet}");
    }
    let id = stale["id"].as_str().unwrap().to_owned();
    seen.saw(&id, "active").await;
    let acked = ack(app, user, &id).await;
    assert_eq!(acked["acknowledged_by"], "dev-admin");
    seen.saw(&id, "acknowledged").await;
    // Still quiet 31 minutes after the acknowledgement (snooze: 30): active
    // again, same alert, with the time since the last reading.
    let watch = StaleWatch::new(app.store.clone(), app.store.clone(), app.store.clone());
    let later = Utc::now() + chrono::Duration::minutes(31);
    // (`recent` is stale by then too.)
    assert!(watch.check(later).await.unwrap().raised >= 1);
    let again = of_type(app, user, "stale").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["id"], id.as_str());
    assert_eq!(again[0]["status"], "active");
    assert!(again[0]["acknowledged_by"].is_null());
    // The endpoint gets the re-raise as a second `alert.raised`. (On the stream
    // a re-raise is keyed by its event's time, which must be a minute or more
    // after `raised_at`; this check ran at a time 31 minutes ahead of the
    // clock, so its event is too close to the raise to show there.)
    let raised_of = |r: &Receiver| {
        r.of("alert.raised")
            .iter()
            .filter(|g| g.json()["data"]["id"] == id.as_str())
            .count()
    };
    eventually("the re-raise at the endpoint", RECEIVER_WAIT, || async {
        raised_of(&seen.receiver) >= 2
    })
    .await;
    ack(app, user, &id).await;
    // The readings come back (a late one, from before the alert): resolved.
    post(&app.base, user, &[(1, 125)]).await;
    let resolved: Vec<Value> = of_type(app, user, "stale")
        .await
        .into_iter()
        .filter(|a| a["id"] == id.as_str())
        .collect();
    assert_eq!(resolved[0]["status"], "resolved", "{resolved:?}");
    assert!(resolved[0]["resolved_at"].is_string());
    seen.saw(&id, "resolved").await;
}

#[tokio::test]
async fn a_stale_alert_is_raised_when_readings_stop_and_resolved_by_the_next() {
    let app = TestApp::spawn_with(&[("ALERT_STALE_CHECK_SECONDS", "1")]).await;
    stale_case(&app, "stale-sq").await;
}

#[tokio::test]
async fn a_stale_alert_is_raised_and_resolved_on_postgres() {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let app = TestApp::spawn_with(&[
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("ALERT_STALE_CHECK_SECONDS", "1"),
    ])
    .await;
    stale_case(&app, "stale-pg").await;
}

/// Two instances' timers passing at the same moment over the same quiet users
/// raise one stale alert each, not two (PostgreSQL: two stores on one schema).
#[tokio::test]
async fn two_instances_raise_one_stale_alert_per_user() {
    use cgm_hub::pipeline::stale::StaleWatch;
    use cgm_hub::store::Store;
    let schema = PgSchema::new();
    let a: Arc<dyn Store> = Arc::new(schema.store().await);
    let b: Arc<dyn Store> = Arc::new(schema.store().await);
    let now = Utc::now();
    let users: Vec<String> = (0..20).map(|i| format!("two-{i}")).collect();
    let readings = users
        .iter()
        .map(|u| {
            cgm(
                u,
                cgm_hub::domain::ReadingTime::from_utc(now - chrono::Duration::minutes(30)),
                120,
            )
        })
        .collect();
    a.upsert_readings(readings).await.unwrap();
    let wa = StaleWatch::new(a.clone(), a.clone(), a.clone());
    let wb = StaleWatch::new(b.clone(), b.clone(), b.clone());
    for round in 0..3 {
        let (pa, pb) = tokio::join!(wa.check(now), wb.check(now));
        let (pa, pb) = (pa.unwrap(), pb.unwrap());
        assert_eq!((pa.candidates, pb.candidates), (20, 20));
        let expected = if round == 0 { 20 } else { 0 };
        assert_eq!(pa.raised + pb.raised, expected, "round {round}");
    }
    for u in &users {
        let all = a
            .list_alerts(cgm_hub::records::alerts::AlertQuery {
                user_id: user(u),
                status: None,
                from: None,
                until: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "{u}: {all:?}");
        assert_eq!(all[0].alert_type.as_str(), "stale");
    }
}

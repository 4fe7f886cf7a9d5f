//! Alerting over HTTP: settings and their validation; each threshold alert end
//! to end (settings → readings → alert listed → ack → readings back past the
//! hysteresis → resolved); falling fast; the predicted low; a backfill raises
//! nothing; one open alert per type while a low continues; `alert.raised`
//! reaches the event bus.

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
    post(&app.base, user, &[(12, raise)]).await;
    let open = of_type(app, user, kind).await;
    assert_eq!(open.len(), 1, "{kind}: {open:?}");
    let alert = &open[0];
    assert_eq!(alert["status"], "active", "{alert}");
    assert_eq!(alert["glucose_value"], raise);
    assert_eq!(alert["user_id"], user);
    let id = alert["id"].as_str().unwrap();

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

    post(&app.base, user, &[(8, hold)]).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now[0]["status"], "acknowledged", "{kind} holds at {hold}");

    post(&app.base, user, &[(4, clear)]).await;
    let now = of_type(app, user, kind).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["status"], "resolved", "{kind} resolves at {clear}");
    assert!(now[0]["resolved_at"].is_string());
    assert_eq!(now[0]["acknowledged_by"], "dev-admin");

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

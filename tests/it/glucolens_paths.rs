//! The GlucoLens and Nutri paths (`/api/v1/glucose/*`, `/api/v1/dashboard/summary`,
//! `/api/v1/integrations/cgm/*`) with real bearer tokens: the token's `sub` is the
//! user, on SQLite, PostgreSQL and DynamoDB (readings, the daily summary, the dashboard). Readings in the GlucoLens format, validation with
//! pointers, bulk limits, the daily summary in a non-UTC profile zone, the dashboard's
//! windows, a caller confined to their own data, and connecting and syncing Dexcom
//! (the simulator) through the JSON paths.

use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::roles::Role;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "glucolens-test-secret-0123456789abcdef";
const AUDIENCE: &str = "cgm-hub";

/// Real bearer checks (no AUTH_DISABLED), HS256 with SECRET.
fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("ARGON2_MEMORY_KIB", "8192"),
        ("ARGON2_ITERATIONS", "1"),
    ];
    v.extend_from_slice(extra);
    v
}

async fn sqlite_app(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(&vars(extra)).await
}

/// The app on a fresh PostgreSQL schema, with real bearer checks.
async fn pg_app() -> TestApp {
    postgres_app(&vars(&[])).await
}

/// The app on DynamoDB (moto), with real bearer checks.
#[cfg(feature = "dynamodb")]
async fn dynamo_app() -> TestApp {
    dynamodb_app(&vars(&[])).await
}

fn token(sub: &str, role: Role) -> String {
    mint_hs256(
        SECRET,
        sub,
        &[role],
        Duration::from_secs(600),
        None,
        Some(AUDIENCE),
    )
    .unwrap()
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A whole-minute instant `minutes` before now.
fn ago(minutes: i64) -> DateTime<Utc> {
    use chrono::DurationRound;
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
        - chrono::Duration::minutes(minutes)
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut r = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap()
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    send(app, reqwest::Method::POST, path, token, Some(body)).await
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app, reqwest::Method::GET, path, token, None).await
}

/// GET, 200, the `data`.
async fn data(app: &TestApp, path: &str, token: &str) -> Value {
    let r = get(app, path, token).await;
    assert_eq!(r.status(), 200, "{path}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "success");
    body["data"].clone()
}

fn pointers(error: &Value) -> Vec<String> {
    error["details"]["errors"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect()
}

/// Writes, reads back, pages and refuses bad input, all as one user's token.
async fn readings_round_trip(app: &TestApp) {
    let alice = token("gl-alice", Role::Patient);
    let at = ago(30);
    let one =
        json!({"timestamp": stamp(at), "value": 123, "source": "dexcom_g7", "device_id": "G7-1"});
    let r = post(app, "/api/v1/glucose/readings", &alice, &one).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["outcome"], "inserted", "{body}");
    assert_eq!(body["data"]["timestamp"], stamp(at));
    let again: Value = post(app, "/api/v1/glucose/readings", &alice, &one)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["data"]["outcome"], "duplicate");
    assert_eq!(again["data"]["reason"], "identical");

    // Stored as gl-alice's, in the contract's reading shape.
    let stored = data(app, "/api/bg/gl-alice/latest", &alice).await;
    assert_eq!(stored["user_id"], "gl-alice");
    assert_eq!(stored["glucose_value"], 123);
    assert_eq!(stored["glucose_unit"], "mg/dL");
    assert_eq!(stored["source"], "dexcom_g7");
    assert_eq!(stored["reading_type"], "CGM");
    assert_eq!(stored["device_info"]["device_id"], "G7-1");

    // Latest, with its validators.
    let r = get(app, "/api/v1/glucose/latest", &alice).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let latest: Value = r.json().await.unwrap();
    assert_eq!(latest["data"], stored);
    let r = app
        .client
        .get(app.url("/api/v1/glucose/latest"))
        .bearer_auth(&alice)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Bulk: one outcome per record, the bad one named by its pointer.
    let bulk = json!({"readings": [
        {"timestamp": stamp(ago(25)), "value": 140, "source": "libre"},
        {"timestamp": stamp(ago(20)), "value": 700, "source": "apple_health"},
        {"timestamp": stamp(ago(15)), "value": 95, "source": "manual"},
        {"timestamp": stamp(ago(10)), "value": 150},
    ]});
    let r = post(app, "/api/v1/glucose/bulk", &alice, &bulk).await;
    assert_eq!(r.status(), 201);
    let result: Value = r.json().await.unwrap();
    assert_eq!(
        result["data"]["summary"],
        json!({"received": 4, "inserted": 3, "updated": 0, "duplicates": 0, "rejected": 1})
    );
    let rejected = &result["data"]["results"][1];
    assert_eq!(rejected["outcome"], "rejected");
    assert_eq!(pointers(&rejected["error"]), ["/readings/1/value"]);

    // The range, paged two at a time, links pointing at this path.
    let path = format!(
        "/api/v1/glucose/readings?start={}&end={}&limit=2",
        stamp(ago(60)),
        stamp(ago(0) + chrono::Duration::minutes(1))
    );
    let page = data(app, &path, &alice).await;
    let values: Vec<i64> = page["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["glucose_value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, [123, 140]);
    let next = page["pagination"]["next"].as_str().unwrap();
    assert!(
        next.starts_with(&app.url("/api/v1/glucose/readings?start=")),
        "{next}"
    );
    let rest: Value = app
        .client
        .get(next)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest: Vec<(i64, String, String)> = rest["data"]["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["glucose_value"].as_i64().unwrap(),
                r["source"].as_str().unwrap().to_owned(),
                r["reading_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rest,
        [
            (95, "manual".into(), "manual".into()),
            (150, "api".into(), "CGM".into())
        ]
    );
    // The contract's names work too; newest first with order=desc.
    let desc = data(
        app,
        &format!(
            "/api/v1/glucose/readings?startDate={}&order=desc&limit=1",
            stamp(ago(60))
        ),
        &alice,
    )
    .await;
    assert_eq!(desc["readings"][0]["glucose_value"], 150);

    // Bad input, named.
    let cases: [(&str, Value, u16, &[&str]); 5] = [
        (
            "/api/v1/glucose/readings",
            json!({"value": 700, "source": "Dexcom G7"}),
            422,
            &["/timestamp", "/value", "/source"],
        ),
        (
            "/api/v1/glucose/readings",
            json!({"timestamp": stamp(ago(5)), "value": 100, "user_id": "gl-bob"}),
            422,
            &["/user_id"],
        ),
        (
            "/api/v1/glucose/readings",
            json!({"readings": [{"timestamp": stamp(ago(5)), "value": 100}]}),
            422,
            &["/readings"],
        ),
        (
            "/api/v1/glucose/bulk",
            json!({"timestamp": stamp(ago(5)), "value": 100}),
            422,
            &["/readings"],
        ),
        (
            "/api/v1/glucose/readings",
            json!({"timestamp": stamp(Utc::now() + chrono::Duration::hours(1)), "value": 100}),
            422,
            &["/timestamp"],
        ),
    ];
    for (path, body, status, want) in cases {
        let r = post(app, path, &alice, &body).await;
        let error = expect_error(r, status, "VALIDATION_ERROR").await;
        assert_eq!(pointers(&error), want, "{path} {body}");
    }
    let r = app
        .client
        .post(app.url("/api/v1/glucose/readings"))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"timestamp\":")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "VALIDATION_ERROR").await;
    for (query, want) in [
        ("start=yesterday", vec!["/start"]),
        ("start=2025-01-02&startDate=2025-01-01", vec!["/start"]),
        ("start=2025-01-02&end=2025-01-01", vec!["/end"]),
        ("limit=0&order=up", vec!["/limit", "/order"]),
        ("userId=gl-bob", vec![]),
    ] {
        let r = get(app, &format!("/api/v1/glucose/readings?{query}"), &alice).await;
        let error = expect_error(r, 400, "VALIDATION_ERROR").await;
        assert_eq!(pointers(&error), want, "{query}");
    }
    let count = data(
        app,
        &format!("/api/bg/gl-alice?startDate={}", stamp(ago(60))),
        &alice,
    )
    .await["readings"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(count, 4, "nothing of the refused input was stored");
}

#[tokio::test]
async fn readings_round_trip_on_sqlite() {
    readings_round_trip(&sqlite_app(&[]).await).await;
}

#[tokio::test]
async fn readings_round_trip_on_postgres() {
    readings_round_trip(&pg_app().await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn readings_round_trip_on_dynamodb() {
    readings_round_trip(&dynamo_app().await).await;
}

#[tokio::test]
async fn a_caller_reaches_only_their_own_data() {
    let app = sqlite_app(&[]).await;
    let alice = token("gl-alice", Role::Patient);
    let bob = token("gl-bob", Role::Patient);
    let r = post(
        &app,
        "/api/v1/glucose/readings",
        &alice,
        &json!({"timestamp": stamp(ago(10)), "value": 180}),
    )
    .await;
    assert_eq!(r.status(), 201);

    // Bob sees nothing of Alice's through any path.
    expect_error(
        get(&app, "/api/v1/glucose/latest", &bob).await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
    let page = data(&app, "/api/v1/glucose/readings", &bob).await;
    assert_eq!(page["readings"], json!([]));
    let day = data(&app, "/api/v1/glucose/daily-summary", &bob).await;
    assert!(day["summary"].is_null(), "{day}");
    let dash = data(&app, "/api/v1/dashboard/summary", &bob).await;
    assert!(dash["latest"].is_null(), "{dash}");
    assert_eq!(dash["user_id"], "gl-bob");
    assert_eq!(dash["last_7_days"]["readings"], 0);
    // ... nor through the per-user route with his token.
    expect_error(
        get(&app, "/api/bg/gl-alice/latest", &bob).await,
        403,
        "FORBIDDEN",
    )
    .await;
    // What he writes is his.
    let r = post(
        &app,
        "/api/v1/glucose/bulk",
        &bob,
        &json!({"readings": [{"timestamp": stamp(ago(5)), "value": 90}]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        data(&app, "/api/v1/glucose/latest", &bob).await["glucose_value"],
        90
    );
    assert_eq!(
        data(&app, "/api/v1/glucose/latest", &alice).await["glucose_value"],
        180
    );

    // A caregiver's token is not a patient's: their own readings are not
    // theirs to write (as on /api/bg/{userId}/readings).
    let carer = token("gl-carer", Role::Caregiver);
    expect_error(
        post(
            &app,
            "/api/v1/glucose/readings",
            &carer,
            &json!({"timestamp": stamp(ago(5)), "value": 90}),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
    // No token: 401.
    let r = app.get("/api/v1/glucose/latest").await;
    expect_error(r, 401, "AUTH_ERROR").await;

    // A built-in account's access token: its `sub` is the account's id.
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("gl.{}@example.org", unique()),
                    "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let session: Value = r.json().await.unwrap();
    let id = session["data"]["user"]["id"].as_str().unwrap().to_owned();
    let access = session["data"]["access_token"].as_str().unwrap().to_owned();
    let r = post(
        &app,
        "/api/v1/glucose/readings",
        &access,
        &json!({"timestamp": stamp(ago(3)), "value": 111, "source": "apple_health"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let stored = data(&app, &format!("/api/bg/{id}/latest"), &access).await;
    assert_eq!(stored["glucose_value"], 111);
    assert_eq!(stored["user_id"], id.as_str());

    // On the audit trail as the caller's own acts.
    let admin = token("gl-ops", Role::Admin);
    let entries = eventually_ok("alice's audit entries", Duration::from_secs(10), || {
        let app = &app;
        let admin = &admin;
        async move {
            let body = data(app, "/api/audit?user_id=gl-alice", admin).await;
            let entries = body["entries"].as_array().unwrap().clone();
            let writes = entries
                .iter()
                .filter(|e| e["action"] == "write_readings")
                .count();
            if writes >= 1 {
                Ok(entries)
            } else {
                Err(format!("{entries:?}"))
            }
        }
    })
    .await;
    let write = entries
        .iter()
        .find(|e| e["action"] == "write_readings")
        .unwrap();
    assert_eq!(write["actor"], "gl-alice");
    assert_eq!(write["target_user"], "gl-alice");
    assert_eq!(write["decision"], "allowed");
    assert_eq!(write["status"], 201);
}

#[tokio::test]
async fn bulk_uploads_keep_the_batch_limit_and_the_write_quota() {
    let app = sqlite_app(&[
        ("MAX_BATCH_RECORDS", "3"),
        ("WRITE_QUOTA_READINGS_PER_HOUR", "5"),
    ])
    .await;
    let alice = token("gl-alice", Role::Patient);
    let batch = |n: i64, from: i64| {
        json!({"readings": (0..n)
            .map(|i| json!({"timestamp": stamp(ago(from + 5 * i)), "value": 100 + i}))
            .collect::<Vec<_>>()})
    };
    let error = expect_error(
        post(&app, "/api/v1/glucose/bulk", &alice, &batch(4, 0)).await,
        413,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&error), ["/readings"]);
    assert_eq!(
        data(&app, "/api/v1/glucose/readings", &alice).await["readings"],
        json!([]),
        "nothing of an oversized batch is stored"
    );
    let r = post(&app, "/api/v1/glucose/bulk", &alice, &batch(3, 0)).await;
    assert_eq!(r.status(), 201);
    // 3 of 5 used: a batch of 3 more would cross the quota and is refused whole.
    let r = post(&app, "/api/v1/glucose/bulk", &alice, &batch(3, 100)).await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;
    let error = expect_error(
        post(
            &app,
            "/api/v1/glucose/bulk",
            &alice,
            &json!({"readings": [], "extra": 1}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&error), ["/extra"]);
    assert_eq!(
        data(&app, "/api/v1/glucose/readings", &alice).await["readings"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// The daily summary counts days in the profile's zone (New York here).
async fn daily_summary_in_the_profile_zone(app: &TestApp) {
    let alice = token("gl-alice", Role::Patient);
    let r = send(
        app,
        reqwest::Method::PUT,
        "/api/users/gl-alice/profile",
        &alice,
        Some(&json!({"timezone": "America/New_York", "target_low": 80, "target_high": 140})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let bulk = json!({"readings": [
        // 07:00 and 22:00 on the 14th in New York; 01:00 on the 15th.
        {"timestamp": "2025-01-14T12:00:00Z", "value": 150, "source": "dexcom_g7"},
        {"timestamp": "2025-01-15T03:00:00Z", "value": 100, "source": "dexcom_g7"},
        {"timestamp": "2025-01-15T06:00:00Z", "value": 200, "source": "dexcom_g7"},
        // A manual reading is not a CGM figure.
        {"timestamp": "2025-01-14T13:00:00Z", "value": 300, "source": "manual"},
    ]});
    assert_eq!(
        post(app, "/api/v1/glucose/bulk", &alice, &bulk)
            .await
            .status(),
        201
    );
    let d = data(app, "/api/v1/glucose/daily-summary?date=2025-01-14", &alice).await;
    assert_eq!(d["date"], "2025-01-14");
    assert_eq!(d["tz"], "America/New_York");
    assert_eq!(d["start"], "2025-01-14T05:00:00Z");
    assert_eq!(d["end"], "2025-01-15T05:00:00Z");
    let s = &d["summary"];
    assert_eq!(s["date"], "2025-01-14");
    assert_eq!(s["readings"], 2, "{d}");
    assert_eq!(s["avg_glucose"], 125.0);
    assert_eq!(s["min_glucose"], 100.0);
    assert_eq!(s["max_glucose"], 150.0);
    // The profile's 80-140: 100 in range, 150 above.
    assert_eq!(s["time_in_range_percent"], 50.0);
    assert_eq!(s["time_above_range_percent"], 50.0);
    let d = data(app, "/api/v1/glucose/daily-summary?date=2025-01-15", &alice).await;
    assert_eq!(d["summary"]["readings"], 1);
    assert_eq!(d["summary"]["avg_glucose"], 200.0);
    // Another zone on request: in UTC the 15th holds 03:00 and 06:00.
    let d = data(
        app,
        "/api/v1/glucose/daily-summary?date=2025-01-15&tz=UTC",
        &alice,
    )
    .await;
    assert_eq!(
        (d["tz"].as_str(), d["start"].as_str()),
        (Some("UTC"), Some("2025-01-15T00:00:00Z"))
    );
    assert_eq!(d["summary"]["avg_glucose"], 150.0);
    // A day that springs forward lasts 23 hours.
    let d = data(app, "/api/v1/glucose/daily-summary?date=2025-03-09", &alice).await;
    assert_eq!(
        (d["start"].as_str(), d["end"].as_str()),
        (Some("2025-03-09T05:00:00Z"), Some("2025-03-10T04:00:00Z"))
    );
    assert!(d["summary"].is_null());
    // Without a date: today in New York.
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive()
        .to_string();
    let d = data(app, "/api/v1/glucose/daily-summary", &alice).await;
    assert_eq!(d["date"], today.as_str());
    for (query, want) in [
        ("date=2025-13-01", vec!["/date"]),
        ("date=yesterday&tz=Mars/Olympus", vec!["/tz", "/date"]),
        ("day=2025-01-14", vec![]),
    ] {
        let r = get(
            app,
            &format!("/api/v1/glucose/daily-summary?{query}"),
            &alice,
        )
        .await;
        let error = expect_error(r, 400, "VALIDATION_ERROR").await;
        assert_eq!(pointers(&error), want, "{query}");
    }
}

#[tokio::test]
async fn the_daily_summary_is_a_local_day_on_sqlite() {
    daily_summary_in_the_profile_zone(&sqlite_app(&[]).await).await;
}

#[tokio::test]
async fn the_daily_summary_is_a_local_day_on_postgres() {
    daily_summary_in_the_profile_zone(&pg_app().await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn the_daily_summary_is_a_local_day_on_dynamodb() {
    daily_summary_in_the_profile_zone(&dynamo_app().await).await;
}

#[tokio::test]
async fn the_dashboard_has_the_last_7_and_30_days_and_the_latest_reading_on_sqlite() {
    dashboard_windows(&sqlite_app(&[]).await).await;
}

#[tokio::test]
async fn the_dashboard_has_the_last_7_and_30_days_and_the_latest_reading_on_postgres() {
    dashboard_windows(&pg_app().await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn the_dashboard_has_the_last_7_and_30_days_and_the_latest_reading_on_dynamodb() {
    dashboard_windows(&dynamo_app().await).await;
}

async fn dashboard_windows(app: &TestApp) {
    let alice = token("gl-alice", Role::Patient);
    // One instant for every time below: computing `ago` again after the
    // upload could cross a minute boundary and expect another minute.
    let now = ago(0);
    let hours = |h: i64| now - chrono::Duration::hours(h);
    // Ten readings within the last week, five more 10 to 20 days ago, one
    // older than 30 days.
    let mut readings: Vec<Value> = (0..10)
        .map(|i| json!({"timestamp": stamp(hours(1 + 12 * i)), "value": 100 + 10 * i}))
        .collect();
    readings.extend(
        (0..5).map(|i| json!({"timestamp": stamp(hours(24 * (10 + 2 * i))), "value": 200})),
    );
    readings.push(json!({"timestamp": stamp(hours(24 * 40)), "value": 300}));
    let r = post(
        app,
        "/api/v1/glucose/bulk",
        &alice,
        &json!({"readings": readings}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let d = data(app, "/api/v1/dashboard/summary", &alice).await;
    assert_eq!(d["user_id"], "gl-alice");
    assert_eq!(d["tz"], "UTC");
    assert_eq!(d["latest"]["glucose_value"], 100);
    assert_eq!(d["latest"]["timestamp"], stamp(hours(1)));
    let week = &d["last_7_days"];
    let month = &d["last_30_days"];
    assert_eq!(week["readings"], 10);
    assert_eq!(month["readings"], 15);
    assert_eq!(week["end"], d["generated_at"]);
    assert_eq!(month["end"], d["generated_at"]);
    let end: DateTime<Utc> = d["generated_at"].as_str().unwrap().parse().unwrap();
    let start: DateTime<Utc> = week["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - start, chrono::Duration::days(7));
    let start: DateTime<Utc> = month["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - start, chrono::Duration::days(30));
    let mean = |v: &Value| v["metrics"]["mean"].as_f64().unwrap();
    assert!((mean(week) - 145.0).abs() < 1e-9, "{week}");
    assert!(
        (mean(month) - (1450.0 + 1000.0) / 15.0).abs() < 1e-9,
        "{month}"
    );
    assert_eq!(week["metrics"].as_object().unwrap().len(), 49);
    assert_eq!(week["sufficient"], false);
    // The same figures as /stats for the same window.
    let stats = data(
        app,
        &format!(
            "/api/bg/gl-alice/stats?startDate={}&endDate={}",
            week["start"].as_str().unwrap(),
            week["end"].as_str().unwrap()
        ),
        &alice,
    )
    .await;
    assert_eq!(stats["metrics"], week["metrics"]);
    assert_eq!(stats["ranges"], week["ranges"]);
    // A zone on request; a bad one is named.
    let d = data(app, "/api/v1/dashboard/summary?tz=Asia/Tokyo", &alice).await;
    assert_eq!(d["last_30_days"]["tz"], "Asia/Tokyo");
    let error = expect_error(
        get(app, "/api/v1/dashboard/summary?tz=Nowhere", &alice).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(pointers(&error), ["/tz"]);
}

#[tokio::test]
async fn cgm_connect_gives_the_dexcom_login_and_sync_queues_a_job() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &vars(&[])).await;
    let alice = token("gl-alice", Role::Patient);

    // Not connected yet: sync is refused with the way out.
    let error = expect_error(
        send(
            &app,
            reqwest::Method::POST,
            "/api/v1/integrations/cgm/sync",
            &alice,
            None,
        )
        .await,
        409,
        "CONFLICT",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("connect"));

    let r = post(
        &app,
        "/api/v1/integrations/cgm/connect",
        &alice,
        &json!({"provider": "dexcom"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["provider"], "dexcom");
    let login: url::Url = body["data"]["authorize_url"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        login
            .as_str()
            .starts_with(&format!("{}/v2/oauth2/login?", sim.base_url)),
        "{login}"
    );
    let query: std::collections::HashMap<String, String> =
        login.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "offline_access");
    assert_eq!(query["redirect_uri"], app.url("/oauth/callback"));
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(!query["state"].is_empty());

    // The browser that got the cookie completes the flow for gl-alice.
    let back = cgm_hub::simulator::dexcom::browser::consent(&login, "gl-alice")
        .await
        .unwrap();
    let done = no_redirects()
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["data"]["user_id"], "gl-alice");

    // A manual sync: 202 with the job, the same job for the same key.
    let sync = |key: &'static str| {
        app.client
            .post(app.url("/api/v1/integrations/cgm/sync"))
            .bearer_auth(&alice)
            .header("idempotency-key", key)
            .json(&json!({"provider": "dexcom"}))
            .send()
    };
    let r = sync("gl-sync-1").await.unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = r.json().await.unwrap();
    let job = &job["data"];
    assert_eq!(job["user_id"], "gl-alice");
    assert_eq!(job["provider"], "dexcom");
    assert_eq!(job["trigger"], "manual");
    let id = job["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/jobs/{id}"));
    let r = sync("gl-sync-1").await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["data"]["job_id"], id.as_str());
    // The job runs, and the caller may follow it.
    eventually("the manual sync succeeds", Duration::from_secs(20), || {
        let app = &app;
        let alice = &alice;
        let location = location.clone();
        async move {
            let job = data(app, &location, alice).await;
            job["status"] == "succeeded"
        }
    })
    .await;

    // Bad bodies, named.
    for (path, body, want) in [
        (
            "/api/v1/integrations/cgm/connect",
            json!({"provider": "libre"}),
            "/provider",
        ),
        (
            "/api/v1/integrations/cgm/connect",
            json!({"provider": "dexcom", "user_id": "gl-bob"}),
            "/user_id",
        ),
        (
            "/api/v1/integrations/cgm/sync",
            json!({"provider": "medtronic"}),
            "/provider",
        ),
    ] {
        let error = expect_error(
            post(&app, path, &alice, &body).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(pointers(&error), [want], "{path} {body}");
    }
    // An empty body means Dexcom.
    let r = send(
        &app,
        reqwest::Method::POST,
        "/api/v1/integrations/cgm/connect",
        &alice,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    // Not an object: serde would read `[null]` as `{}`; refused.
    for body in [json!([null]), json!(["dexcom"]), json!("dexcom")] {
        let r = post(&app, "/api/v1/integrations/cgm/connect", &alice, &body).await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
    }
    // A service token may not connect (it acts on no account of its own).
    let service = token("gl-ml", Role::Service);
    expect_error(
        post(
            &app,
            "/api/v1/integrations/cgm/connect",
            &service,
            &json!({}),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
}

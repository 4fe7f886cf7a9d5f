//! The profile and the daily aggregates over HTTP: the profile's defaults,
//! validation and whole-replacement PUT; `/daily` rows checked against figures
//! worked out by hand, a late reading for yesterday changing yesterday's row,
//! and the profile's time zone and target range deciding the days and figures;
//! each on SQLite, PostgreSQL and DynamoDB.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

async fn put_profile(app: &TestApp, body: Value) -> reqwest::Response {
    app.client
        .put(app.url("/api/users/pat/profile"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_readings(app: &TestApp, readings: &[(DateTime<Utc>, u16)]) {
    let body =
        json!({"readings": readings.iter().map(|(t, v)| reading_json(*t, *v)).collect::<Vec<_>>()});
    let response = app.post_json("/api/bg/pat/readings", &body).await;
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap()
    );
}

async fn daily(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/api/bg/pat/daily{query}")).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"].as_object().unwrap().len(), 1, "{body}");
    body["data"]["days"].as_array().unwrap().clone()
}

/// The day of `date` in `days`, if listed.
fn day(days: &[Value], date: DateTime<Utc>) -> Option<&Value> {
    let name = date.format("%Y-%m-%d").to_string();
    days.iter().find(|d| d["date"] == name.as_str())
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|got| (got - want).abs() < 1e-9)
}

/// Asserts a day's figures: readings, avg, min, max, std, in/above/below.
fn assert_day(d: &Value, n: u64, avg: f64, min: f64, max: f64, std: Option<f64>, tir: [f64; 3]) {
    assert_eq!(d["readings"], n, "{d}");
    assert!(close(&d["avg_glucose"], avg), "avg {d}");
    assert!(close(&d["min_glucose"], min), "min {d}");
    assert!(close(&d["max_glucose"], max), "max {d}");
    match std {
        Some(sd) => assert!(close(&d["std_glucose"], sd), "std {d}"),
        None => assert!(d["std_glucose"].is_null(), "std {d}"),
    }
    assert!(close(&d["time_in_range_percent"], tir[0]), "in {d}");
    assert!(close(&d["time_above_range_percent"], tir[1]), "above {d}");
    assert!(close(&d["time_below_range_percent"], tir[2]), "below {d}");
    for journal in [
        "total_sleep_minutes",
        "sleep_quality_score",
        "total_exercise_minutes",
        "total_carbs_grams",
        "total_calories",
    ] {
        assert!(d[journal].is_null(), "{journal} {d}");
    }
    assert_eq!(
        d.as_object().unwrap().len(),
        14,
        "exactly the contract's keys: {d}"
    );
}

#[tokio::test]
async fn the_profile_has_defaults_is_validated_and_replaced_whole_on_sqlite() {
    the_profile_has_defaults_is_validated_and_replaced_whole(TestApp::spawn().await).await;
}

#[tokio::test]
async fn the_profile_has_defaults_is_validated_and_replaced_whole_on_postgres() {
    the_profile_has_defaults_is_validated_and_replaced_whole(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn the_profile_has_defaults_is_validated_and_replaced_whole_on_dynamodb() {
    the_profile_has_defaults_is_validated_and_replaced_whole(dynamodb_app(&[]).await).await;
}

async fn the_profile_has_defaults_is_validated_and_replaced_whole(app: TestApp) {
    let got: Value = app
        .get("/api/users/pat/profile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["data"],
        json!({"timezone": "UTC", "target_low": 70, "target_high": 180,
               "display_unit": "mg/dL", "diabetes_type": null})
    );
    let stored = json!({"timezone": "Europe/Berlin", "target_low": 80, "target_high": 160,
                        "display_unit": "mmol/L", "diabetes_type": "type1"});
    let response = put_profile(&app, stored.clone()).await;
    assert_eq!(response.status().as_u16(), 200);
    let got: Value = app
        .get("/api/users/pat/profile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["data"], stored);

    let bad = put_profile(
        &app,
        json!({"timezone": "Europe/Atlantis", "target_low": 30, "target_high": 500,
               "display_unit": "mg/dl", "diabetes_type": "type3"}),
    )
    .await;
    let error = expect_error(bad, 422, "VALIDATION_ERROR").await;
    let pointers: Vec<&str> = error["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        [
            "/timezone",
            "/target_low",
            "/target_high",
            "/display_unit",
            "/diabetes_type"
        ]
    );
    let inverted = put_profile(&app, json!({"target_low": 150, "target_high": 120})).await;
    let error = expect_error(inverted, 422, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/target_high");
    let got: Value = app
        .get("/api/users/pat/profile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["data"], stored, "a refused PUT changes nothing");

    // A PUT replaces the whole profile: what it leaves out takes its default.
    let response = put_profile(&app, json!({"target_high": 170})).await;
    assert_eq!(response.status().as_u16(), 200);
    let got: Value = app
        .get("/api/users/pat/profile")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["data"],
        json!({"timezone": "UTC", "target_low": 70, "target_high": 170,
               "display_unit": "mg/dL", "diabetes_type": null})
    );
    let unknown = put_profile(&app, json!({"time_zone": "UTC"})).await;
    expect_error(unknown, 400, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn daily_rows_follow_late_readings_and_the_profile_on_sqlite() {
    daily_rows_follow_late_readings_and_the_profile(TestApp::spawn().await).await;
}

#[tokio::test]
async fn daily_rows_follow_late_readings_and_the_profile_on_postgres() {
    daily_rows_follow_late_readings_and_the_profile(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn daily_rows_follow_late_readings_and_the_profile_on_dynamodb() {
    daily_rows_follow_late_readings_and_the_profile(dynamodb_app(&[]).await).await;
}

async fn daily_rows_follow_late_readings_and_the_profile(app: TestApp) {
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let (d2, d1) = (today - Duration::days(2), today - Duration::days(1));
    let at = |d: DateTime<Utc>, h: i64, m: i64| d + Duration::hours(h) + Duration::minutes(m);
    post_readings(
        &app,
        &[
            (at(d2, 10, 0), 100),
            (at(d2, 10, 5), 150),
            (at(d2, 10, 10), 200),
            (at(d1, 12, 0), 60),
            (at(d1, 12, 5), 90),
        ],
    )
    .await;

    let days = daily(&app, "").await;
    assert_eq!(days.len(), 2, "{days:?}");
    // 100, 150, 200: mean 150, SD 50; 100 and 150 in 70-180, 200 above.
    let d2_row = day(&days, d2).unwrap().clone();
    assert_day(
        &d2_row,
        3,
        150.0,
        100.0,
        200.0,
        Some(50.0),
        [200.0 / 3.0, 100.0 / 3.0, 0.0],
    );
    // 60, 90: mean 75, SD sqrt(450).
    let y = day(&days, d1).unwrap();
    assert_day(
        y,
        2,
        75.0,
        60.0,
        90.0,
        Some(450f64.sqrt()),
        [50.0, 0.0, 50.0],
    );

    // A late upload for yesterday changes yesterday's row, and only it.
    post_readings(&app, &[(at(d1, 23, 30), 250), (at(d2, 10, 0), 100)]).await;
    let days = daily(&app, "").await;
    // 60, 90, 250: mean 400/3; SD sqrt(((60-m)^2 + (90-m)^2 + (250-m)^2) / 2).
    let m = 400.0 / 3.0;
    let sd = (((60.0 - m) * (60.0 - m) + (90.0 - m) * (90.0 - m) + (250.0 - m) * (250.0 - m))
        / 2.0_f64)
        .sqrt();
    let y = day(&days, d1).unwrap();
    assert_day(
        y,
        3,
        m,
        60.0,
        250.0,
        Some(sd),
        [100.0 / 3.0, 100.0 / 3.0, 100.0 / 3.0],
    );
    assert_eq!(day(&days, d2).unwrap(), &d2_row);

    // Tokyo (UTC+9, no DST): 23:30 UTC yesterday is 08:30 today there.
    let response = put_profile(&app, json!({"timezone": "Asia/Tokyo", "target_low": 100})).await;
    assert_eq!(response.status().as_u16(), 200);
    let days = daily(&app, "").await;
    assert_eq!(days.len(), 3, "{days:?}");
    // With a target of 100-180: 60 and 90 below.
    assert_day(
        day(&days, d1).unwrap(),
        2,
        75.0,
        60.0,
        90.0,
        Some(450f64.sqrt()),
        [0.0, 0.0, 100.0],
    );
    assert_day(
        day(&days, today).unwrap(),
        1,
        250.0,
        250.0,
        250.0,
        None,
        [0.0, 100.0, 0.0],
    );
    assert_day(
        day(&days, d2).unwrap(),
        3,
        150.0,
        100.0,
        200.0,
        Some(50.0),
        [200.0 / 3.0, 100.0 / 3.0, 0.0],
    );
    // `tz` overrides the profile's zone for one request.
    let days = daily(&app, "?tz=UTC").await;
    assert_eq!(days.len(), 2);
    assert_eq!(day(&days, d1).unwrap()["readings"], 3);
    // An explicit window of local dates, end exclusive.
    let only = format!(
        "?startDate={}&endDate={}",
        d1.format("%Y-%m-%d"),
        today.format("%Y-%m-%d")
    );
    let days = daily(&app, &only).await;
    assert_eq!(days.len(), 1);
    assert_eq!(days[0]["date"], d1.format("%Y-%m-%d").to_string());
}

#[tokio::test]
async fn daily_windows_and_zones_are_validated_on_sqlite() {
    daily_windows_and_zones_are_validated(TestApp::spawn().await).await;
}

#[tokio::test]
async fn daily_windows_and_zones_are_validated_on_postgres() {
    daily_windows_and_zones_are_validated(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn daily_windows_and_zones_are_validated_on_dynamodb() {
    daily_windows_and_zones_are_validated(dynamodb_app(&[]).await).await;
}

async fn daily_windows_and_zones_are_validated(app: TestApp) {
    let pointer = |e: &Value| e["details"]["errors"][0]["pointer"].clone();
    let bad_tz = app.get("/api/bg/pat/daily?tz=Mars/Olympus").await;
    assert_eq!(
        pointer(&expect_error(bad_tz, 400, "VALIDATION_ERROR").await),
        "/tz"
    );
    let long = app
        .get("/api/bg/pat/daily?startDate=2024-01-01&endDate=2025-01-02")
        .await;
    assert_eq!(
        pointer(&expect_error(long, 400, "VALIDATION_ERROR").await),
        "/endDate"
    );
    let empty = app
        .get("/api/bg/pat/daily?startDate=2025-01-02&endDate=2025-01-02")
        .await;
    assert_eq!(
        pointer(&expect_error(empty, 400, "VALIDATION_ERROR").await),
        "/endDate"
    );
    let year = daily(&app, "?startDate=2024-01-01&endDate=2025-01-01").await;
    assert!(
        year.is_empty(),
        "366 days are allowed; no readings, no days"
    );
}

#[tokio::test]
async fn daily_rows_count_cgm_readings_only_on_sqlite() {
    daily_rows_count_cgm_readings_only(TestApp::spawn().await).await;
}

#[tokio::test]
async fn daily_rows_count_cgm_readings_only_on_postgres() {
    daily_rows_count_cgm_readings_only(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn daily_rows_count_cgm_readings_only_on_dynamodb() {
    daily_rows_count_cgm_readings_only(dynamodb_app(&[]).await).await;
}

/// Only CGM readings make a day's figures, as in `/stats`: a fingerstick
/// (manual) reading stored the same day changes nothing.
async fn daily_rows_count_cgm_readings_only(app: TestApp) {
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let at = today - Duration::days(2) + Duration::hours(10);
    post_readings(&app, &[(at, 100), (at + Duration::minutes(5), 120)]).await;
    let mut manual = reading_json(at + Duration::minutes(7), 300);
    manual["reading_type"] = json!("manual");
    let response = app
        .post_json("/api/bg/pat/readings", &json!({ "readings": [manual] }))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let days = daily(&app, "?tz=UTC").await;
    let d = day(&days, at).expect("the day is listed");
    assert_eq!(d["readings"], 2, "{d}");
    assert!(close(&d["avg_glucose"], 110.0), "{d}");
}

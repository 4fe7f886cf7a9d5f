//! The health journal over HTTP, on SQLite, PostgreSQL and DynamoDB: create, list with
//! cursors, get, patch and delete of each kind; idempotent uploads by
//! `external_id`; bad input refused with the field's pointer and nothing
//! stored; a share reader reads but cannot write; and the daily aggregates'
//! journal totals following every change.

use std::time::Duration as StdDuration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body["data"].clone()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hour() -> DateTime<Utc> {
    (Utc::now() - Duration::days(1))
        .duration_trunc(Duration::hours(1))
        .unwrap()
}

/// One kind's life: create, idempotent repeat, get, list, patch, delete.
async fn kind_round_trip(app: &TestApp, plural: &str, body: Value, change: Value, check: &str) {
    let base = format!("/api/users/pat/{plural}");
    let created = json_of(
        send(app, reqwest::Method::POST, &base, Some(&body), None).await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["user_id"], "pat");
    assert_eq!(created["source"], "manual");
    assert!(created["external_id"].is_null());
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(&created[k], v, "{plural}: {k} in {created}");
    }
    let one = format!("{base}/{id}");
    let got = json_of(app.get(&one).await, 200).await;
    assert_eq!(got, created);
    let listed = json_of(app.get(&base).await, 200).await;
    assert_eq!(listed[plural].as_array().unwrap(), &vec![created.clone()]);
    assert!(listed["pagination"]["next_cursor"].is_null());

    let patched = json_of(
        send(app, reqwest::Method::PATCH, &one, Some(&change), None).await,
        200,
    )
    .await;
    assert_eq!(patched[check], change[check], "{patched}");
    assert_eq!(patched["id"], created["id"]);
    assert_eq!(patched["created_at"], created["created_at"]);
    assert_eq!(json_of(app.get(&one).await, 200).await, patched);

    let deleted = send(app, reqwest::Method::DELETE, &one, None, None).await;
    assert_eq!(deleted.status().as_u16(), 204);
    expect_error(app.get(&one).await, 404, "RESOURCE_NOT_FOUND").await;
    let again = send(app, reqwest::Method::DELETE, &one, None, None).await;
    expect_error(again, 404, "RESOURCE_NOT_FOUND").await;
    let listed = json_of(app.get(&base).await, 200).await;
    assert!(listed[plural].as_array().unwrap().is_empty());
}

async fn crud_case(app: &TestApp) {
    let t = hour();
    kind_round_trip(
        app,
        "meals",
        json!({"timestamp": at(t), "meal_type": "lunch", "carbs_grams": 62.5,
               "calories": 700.0, "foods": [{"name": "rice", "carbs_grams": 45.0}]}),
        json!({"carbs_grams": 70.0, "description": "with extra rice"}),
        "carbs_grams",
    )
    .await;
    kind_round_trip(
        app,
        "sleep",
        json!({"sleep_start": at(t - Duration::hours(8)), "sleep_end": at(t),
               "awake_minutes": 20, "quality_score": 7.5}),
        json!({"quality_score": 8.0}),
        "quality_score",
    )
    .await;
    kind_round_trip(
        app,
        "activities",
        json!({"timestamp": at(t), "activity_type": "running", "duration_minutes": 45,
               "intensity": "vigorous", "heart_rate_avg": 151, "steps": 7000}),
        json!({"duration_minutes": 50}),
        "duration_minutes",
    )
    .await;

    // Sleep's defaults: the date of its end, the duration without awake time.
    let sleep = json_of(
        app.post_json(
            "/api/users/pat/sleep",
            &json!({"sleep_start": at(t - Duration::hours(8)), "sleep_end": at(t),
                    "awake_minutes": 30}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(sleep["duration_minutes"], 450);
    assert_eq!(sleep["date"], t.format("%Y-%m-%d").to_string());
    // Moving its end re-derives the duration it did not set.
    let moved = json_of(
        send(
            app,
            reqwest::Method::PATCH,
            &format!("/api/users/pat/sleep/{}", sleep["id"].as_str().unwrap()),
            Some(&json!({"sleep_end": at(t - Duration::hours(1))})),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(moved["duration_minutes"], 390);

    // An upload with an external id, twice: one entry, 201 then 200.
    let upload = json!({"timestamp": at(t), "carbs_grams": 30.0, "source": "apple_health",
                        "external_id": "HK-0001"});
    let first = json_of(app.post_json("/api/users/pat/meals", &upload).await, 201).await;
    let mut changed = upload.clone();
    changed["carbs_grams"] = json!(99.0);
    let second = json_of(app.post_json("/api/users/pat/meals", &changed).await, 200).await;
    assert_eq!(second, first, "the stored one, unchanged");
    let patch_origin = send(
        app,
        reqwest::Method::PATCH,
        &format!("/api/users/pat/meals/{}", first["id"].as_str().unwrap()),
        Some(&json!({"external_id": "HK-0002"})),
        None,
    )
    .await;
    let error = expect_error(patch_origin, 422, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/external_id");

    // Pages of two, newest first, followed by cursor.
    for i in 1..=3 {
        app.post_json(
            "/api/users/pat/meals",
            &json!({"timestamp": at(t + Duration::minutes(i)), "carbs_grams": i}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/users/pat/meals?limit=2&order=desc".to_owned();
    loop {
        let page = json_of(app.get(&path).await, 200).await;
        for m in page["meals"].as_array().unwrap() {
            seen.push(m["timestamp"].as_str().unwrap().to_owned());
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) => path = format!("/api/users/pat/meals?limit=2&order=desc&cursor={c}"),
            None => break,
        }
    }
    let mut want: Vec<String> = (1..=3)
        .rev()
        .map(|i| at(t + Duration::minutes(i)))
        .collect();
    want.push(at(t));
    assert_eq!(seen, want);
    let tampered = app
        .get("/api/users/pat/meals?limit=2&order=asc&cursor=AAAA")
        .await;
    expect_error(tampered, 400, "VALIDATION_ERROR").await;
}

async fn bad_input_case(app: &TestApp) {
    let t = hour();
    let future = Utc::now() + Duration::days(2);
    let cases = [
        (
            "sleep",
            json!({"sleep_start": at(t), "sleep_end": at(t - Duration::hours(1))}),
            "/sleep_end",
        ),
        (
            "sleep",
            json!({"sleep_start": at(t - Duration::hours(25)), "sleep_end": at(t)}),
            "/sleep_end",
        ),
        (
            "meals",
            json!({"timestamp": at(t), "carbs_grams": -5}),
            "/carbs_grams",
        ),
        (
            "meals",
            json!({"timestamp": at(t), "meal_type": "brunch"}),
            "/meal_type",
        ),
        (
            "activities",
            json!({"timestamp": at(t), "activity_type": "skydiving", "duration_minutes": 5}),
            "/activity_type",
        ),
        ("meals", json!({"timestamp": at(future)}), "/timestamp"),
        (
            "activities",
            json!({"timestamp": at(future), "activity_type": "walking", "duration_minutes": 5}),
            "/timestamp",
        ),
        (
            "meals",
            json!({"timestamp": at(t), "colour": "red"}),
            "/colour",
        ),
        (
            "meals",
            json!({"timestamp": at(t), "carbs_grams": "lots"}),
            "/carbs_grams",
        ),
        (
            "meals",
            json!({"timestamp": at(t), "foods": [{"name": "x", "sugar": 1}]}),
            "/foods/0/sugar",
        ),
        (
            "activities",
            json!({"timestamp": at(t), "activity_type": "walking", "duration_minutes": 1441}),
            "/duration_minutes",
        ),
        ("meals", json!({"carbs_grams": 5}), "/timestamp"),
    ];
    for (plural, body, pointer) in cases {
        let response = app
            .post_json(&format!("/api/users/pat/{plural}"), &body)
            .await;
        let error = expect_error(response, 422, "VALIDATION_ERROR").await;
        assert_eq!(
            error["details"]["errors"][0]["pointer"], pointer,
            "{plural} {body}: {error}"
        );
    }
    let malformed = app
        .post_raw("/api/users/pat/meals", "{\"timestamp\": ")
        .await;
    expect_error(malformed, 400, "VALIDATION_ERROR").await;
    for plural in ["meals", "sleep", "activities"] {
        let listed = json_of(app.get(&format!("/api/users/pat/{plural}")).await, 200).await;
        assert!(
            listed[plural].as_array().unwrap().is_empty(),
            "nothing stored: {listed}"
        );
    }
    // A patch whose result is invalid changes nothing.
    let meal = json_of(
        app.post_json(
            "/api/users/pat/meals",
            &json!({"timestamp": at(t), "carbs_grams": 10}),
        )
        .await,
        201,
    )
    .await;
    let one = format!("/api/users/pat/meals/{}", meal["id"].as_str().unwrap());
    let bad = send(
        app,
        reqwest::Method::PATCH,
        &one,
        Some(&json!({"carbs_grams": 2001})),
        None,
    )
    .await;
    let error = expect_error(bad, 422, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/carbs_grams");
    assert_eq!(json_of(app.get(&one).await, 200).await, meal);
    let missing = send(
        app,
        reqwest::Method::PATCH,
        "/api/users/pat/meals/00000000-0000-4000-8000-000000000001",
        Some(&json!({"carbs_grams": 1})),
        None,
    )
    .await;
    expect_error(missing, 404, "RESOURCE_NOT_FOUND").await;
}

#[tokio::test]
async fn journal_round_trips_on_sqlite() {
    crud_case(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn journal_round_trips_on_postgres() {
    crud_case(&postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn journal_round_trips_on_dynamodb() {
    crud_case(&dynamodb_app(&[]).await).await;
}

#[tokio::test]
async fn bad_journal_input_is_named_and_stores_nothing_on_sqlite() {
    bad_input_case(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn bad_journal_input_is_named_and_stores_nothing_on_postgres() {
    bad_input_case(&postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn bad_journal_input_is_named_and_stores_nothing_on_dynamodb() {
    bad_input_case(&dynamodb_app(&[]).await).await;
}

const SECRET: &str = "journal-test-secret-0123456789abcdef";

fn token(sub: &str, role: Role) -> String {
    mint_hs256(
        SECRET,
        sub,
        &[role],
        StdDuration::from_secs(600),
        None,
        Some("cgm-hub"),
    )
    .unwrap()
}

/// Real bearer checks, HS256 with SECRET.
const WITH_TOKENS: &[(&str, &str)] = &[
    ("AUTH_DISABLED", "false"),
    ("AUTH_JWT_SECRET", SECRET),
    ("AUTH_AUDIENCE", "cgm-hub"),
];

#[tokio::test]
async fn a_share_reader_reads_the_journal_but_cannot_write_it_on_sqlite() {
    share_case(TestApp::spawn_with(WITH_TOKENS).await).await;
}

#[tokio::test]
async fn a_share_reader_reads_the_journal_but_cannot_write_it_on_postgres() {
    share_case(postgres_app(WITH_TOKENS).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn a_share_reader_reads_the_journal_but_cannot_write_it_on_dynamodb() {
    share_case(dynamodb_app(WITH_TOKENS).await).await;
}

async fn share_case(app: TestApp) {
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
    let (pat, mom, aunt) = (
        token("pat", Role::Patient),
        token("mom", Role::Caregiver),
        token("aunt", Role::Caregiver),
    );
    let meal = json!({"timestamp": at(hour()), "carbs_grams": 20});
    let created = json_of(
        send(
            &app,
            reqwest::Method::POST,
            "/api/users/pat/meals",
            Some(&meal),
            Some(&pat),
        )
        .await,
        201,
    )
    .await;
    let one = format!("/api/users/pat/meals/{}", created["id"].as_str().unwrap());
    let listed = json_of(
        send(
            &app,
            reqwest::Method::GET,
            "/api/users/pat/meals",
            None,
            Some(&mom),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(listed["meals"][0], created);
    json_of(
        send(&app, reqwest::Method::GET, &one, None, Some(&mom)).await,
        200,
    )
    .await;
    let denied = [
        send(
            &app,
            reqwest::Method::POST,
            "/api/users/pat/meals",
            Some(&meal),
            Some(&mom),
        )
        .await,
        send(
            &app,
            reqwest::Method::PATCH,
            &one,
            Some(&json!({"carbs_grams": 1})),
            Some(&mom),
        )
        .await,
        send(&app, reqwest::Method::DELETE, &one, None, Some(&mom)).await,
        send(&app, reqwest::Method::GET, &one, None, Some(&aunt)).await,
    ];
    for response in denied {
        expect_error(response, 403, "FORBIDDEN").await;
    }
    let still = json_of(
        send(&app, reqwest::Method::GET, &one, None, Some(&pat)).await,
        200,
    )
    .await;
    assert_eq!(still, created, "nothing changed");
}

fn daily_day(days: &Value, date: &str) -> Option<Value> {
    days.as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == date)
        .cloned()
}

#[tokio::test]
async fn daily_rows_follow_the_journal_on_sqlite() {
    daily_case(TestApp::spawn().await).await;
}

#[tokio::test]
async fn daily_rows_follow_the_journal_on_postgres() {
    daily_case(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn daily_rows_follow_the_journal_on_dynamodb() {
    daily_case(dynamodb_app(&[]).await).await;
}

async fn daily_case(app: TestApp) {
    let t = hour();
    let date = t.format("%Y-%m-%d").to_string();
    let query = format!(
        "/api/bg/pat/daily?startDate={}&endDate={}",
        (t - Duration::days(2)).format("%Y-%m-%d"),
        (t + Duration::days(2)).format("%Y-%m-%d")
    );
    let daily = |app: &TestApp| {
        let query = query.clone();
        let date = date.clone();
        let app_url = app.url(&query);
        let client = app.client.clone();
        async move {
            let body: Value = client
                .get(app_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            daily_day(&body["data"]["days"], &date)
        }
    };
    assert_eq!(daily(&app).await, None, "no reading, no entry: no row");
    let lunch = json_of(
        app.post_json(
            "/api/users/pat/meals",
            &json!({"timestamp": at(t), "carbs_grams": 50, "calories": 600}),
        )
        .await,
        201,
    )
    .await;
    app.post_json(
        "/api/users/pat/meals",
        &json!({"timestamp": at(t + Duration::minutes(5)), "carbs_grams": 10}),
    )
    .await;
    app.post_json(
        "/api/users/pat/activities",
        &json!({"timestamp": at(t), "activity_type": "walking", "duration_minutes": 40}),
    )
    .await;
    for (start, quality) in [(8, 6.0), (20, 8.0)] {
        let end = t - Duration::hours(start - 2);
        app.post_json(
            "/api/users/pat/sleep",
            &json!({"sleep_start": at(t - Duration::hours(start)), "sleep_end": at(end),
                    "date": date, "quality_score": quality}),
        )
        .await;
    }
    let day = daily(&app).await.expect("a journal-only day is listed");
    assert_eq!(day["readings"], 0);
    assert!(day["avg_glucose"].is_null());
    assert_eq!(day["total_carbs_grams"], 60.0);
    assert_eq!(day["total_calories"], 600.0);
    assert_eq!(day["total_exercise_minutes"], 40.0);
    assert_eq!(day["total_sleep_minutes"], 240.0);
    assert_eq!(day["sleep_quality_score"], 7.0);
    assert_eq!(day.as_object().unwrap().len(), 14, "{day}");

    let lunch_path = format!("/api/users/pat/meals/{}", lunch["id"].as_str().unwrap());
    json_of(
        send(
            &app,
            reqwest::Method::PATCH,
            &lunch_path,
            Some(&json!({"carbs_grams": 70, "calories": null})),
            None,
        )
        .await,
        200,
    )
    .await;
    let day = daily(&app).await.unwrap();
    assert_eq!(day["total_carbs_grams"], 80.0);
    assert!(day["total_calories"].is_null(), "{day}");
    let deleted = send(&app, reqwest::Method::DELETE, &lunch_path, None, None).await;
    assert_eq!(deleted.status().as_u16(), 204);
    let day = daily(&app).await.unwrap();
    assert_eq!(day["total_carbs_grams"], 10.0);
    // Readings of the day keep their figures beside the journal's.
    app.post_json(
        "/api/bg/pat/readings",
        &json!({"readings": [reading_json(t, 100), reading_json(t + Duration::minutes(5), 120)]}),
    )
    .await;
    let day = daily(&app).await.unwrap();
    assert_eq!(day["readings"], 2);
    assert_eq!(day["avg_glucose"], 110.0);
    assert_eq!(day["total_exercise_minutes"], 40.0);
}

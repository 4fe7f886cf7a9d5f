//! Meal glucose responses over HTTP, on SQLite, PostgreSQL and DynamoDB: a stored trace
//! whose numbers are derived by hand below, a pending meal, one with a gap,
//! overlapping meals, a late upload completing a response, the list with
//! `include=response`, 404 for an unknown meal, `/meals/insights` (not taken
//! for a meal id) with its food groups and an unlogged-meal suggestion, the
//! GlucoLens paths, who may read, and the stored responses (issue 20): what
//! is stored, and that a late reading, another meal, a new time or a delete
//! is never answered from a stale copy.

use std::time::Duration as StdDuration;

use cgm_hub::analytics::MealResponseStatus;
use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::domain::ReadingTime;
use cgm_hub::records::meal_response::StoredMealResponse;
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A meal time a day or more ago, on the hour: its response is final.
fn past_meal(days: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::days(days))
        .duration_trunc(Duration::hours(1))
        .unwrap()
}

/// 100 until the meal, a straight rise to 160 at 60 min, a straight fall to 100
/// at 120, then 90: the shape of `meal_response`'s unit test `a_clean_rise_and_fall`.
fn rise_and_fall(t: i64) -> u16 {
    match t {
        t if t <= 0 => 100,
        t if t <= 60 => (100 + t) as u16,
        t if t <= 120 => (220 - t) as u16,
        _ => 90,
    }
}

/// Readings every 5 minutes at `t0` + the given minutes, glucose `f(minute)`.
async fn seed(
    app: &TestApp,
    user_id: &str,
    t0: DateTime<Utc>,
    minutes: impl Iterator<Item = i64>,
    f: impl Fn(i64) -> u16,
) {
    let readings: Vec<_> = minutes
        .map(|m| {
            cgm(
                user_id,
                ReadingTime::from_utc(t0 + Duration::minutes(m)),
                f(m),
            )
        })
        .collect();
    app.store.upsert_readings(readings).await.unwrap();
}

fn every5(from: i64, to: i64) -> impl Iterator<Item = i64> {
    (from / 5..=to / 5).map(|i| i * 5)
}

async fn data(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body["data"].clone()
}

async fn meal(app: &TestApp, user_id: &str, body: Value) -> String {
    let created = data(
        app.post_json(&format!("/api/users/{user_id}/meals"), &body)
            .await,
        201,
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

async fn response_of(app: &TestApp, user_id: &str, id: &str) -> Value {
    data(
        app.get(&format!("/api/users/{user_id}/meals/{id}/response"))
            .await,
        200,
    )
    .await
}

fn close(v: &Value, expected: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!((got - expected).abs() < 1e-9, "{got} vs {expected}");
}

const METRICS: [&str; 8] = [
    "baseline",
    "peak",
    "time_to_peak",
    "delta_g",
    "iauc_120",
    "iauc_180",
    "return_to_baseline",
    "score",
];

async fn responses_case(app: &TestApp) {
    // A complete response. Readings every 5 min from −30 to 300: 100 up to the
    // meal, 100 + t up to 60 (peak 160), 220 − t down to 100 at 120, then 90.
    // baseline = mean of the 7 readings in [−30, 0] = 100; peak 160 at 60;
    // delta_g 60; iAUC over [0, 120] = triangle ½·120·60 = 3600, and nothing
    // more to 180 (90 < 100); back at the baseline exactly at 120; 37 readings
    // in [0, 180] → coverage 1; score = 100·(½ + ⅔ + 1)/3 (delta 60 between 30
    // and 90: (90−60)/60; peak 160: (200−160)/60; return 120: full marks).
    let t0 = past_meal(1);
    seed(app, "mr-full", t0, every5(-30, 300), rise_and_fall).await;
    let id = meal(
        app,
        "mr-full",
        json!({"timestamp": at(t0), "meal_type": "lunch", "carbs_grams": 60}),
    )
    .await;
    let r = response_of(app, "mr-full", &id).await;
    assert_eq!(r["meal_id"], id.as_str());
    assert_eq!(r["status"], "complete", "{r}");
    close(&r["baseline"], 100.0);
    close(&r["peak"], 160.0);
    close(&r["time_to_peak"], 60.0);
    close(&r["delta_g"], 60.0);
    close(&r["iauc_120"], 3600.0);
    close(&r["iauc_180"], 3600.0);
    close(&r["return_to_baseline"], 120.0);
    close(&r["coverage"], 1.0);
    assert_eq!(r["overlap"], false);
    close(&r["score"], 100.0 * (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 12, "the contract's twelve fields: {keys:?}");

    // Pending: eaten 30 minutes ago; the 7 baseline readings and 6 after are
    // in (0, 5, ..., 25 → 6 of 37: coverage round(6/37, 3) = 0.162).
    let recent = (Utc::now() - Duration::minutes(30))
        .duration_trunc(Duration::minutes(1))
        .unwrap();
    seed(app, "mr-pending", recent, every5(-30, 25), |_| 110).await;
    let id = meal(app, "mr-pending", json!({"timestamp": at(recent)})).await;
    let r = response_of(app, "mr-pending", &id).await;
    assert_eq!(r["status"], "pending", "{r}");
    close(&r["coverage"], 0.162);
    for k in METRICS {
        assert!(r[k].is_null(), "{k} in {r}");
    }

    // Insufficient: the same trace with no reading from 50 to 110 (a 70-minute
    // gap > 45), a day ago: past the late-upload horizon (t0 + 360).
    let t0 = past_meal(1);
    seed(
        app,
        "mr-gap",
        t0,
        every5(-30, 300).filter(|m| !(50..=110).contains(m)),
        rise_and_fall,
    )
    .await;
    let id = meal(app, "mr-gap", json!({"timestamp": at(t0)})).await;
    let r = response_of(app, "mr-gap", &id).await;
    assert_eq!(r["status"], "insufficient_data", "{r}");
    // 37 − 13 readings (50, 55, …, 110) = 24: 24/37 = 0.6486 → 0.649.
    close(&r["coverage"], 0.649);
    for k in METRICS {
        assert!(r[k].is_null(), "{k} in {r}");
    }

    // Overlap: a second meal 60 minutes after the first overlaps it; nothing
    // follows the second within 180 minutes.
    let t0 = past_meal(2);
    seed(app, "mr-two", t0, every5(-30, 400), rise_and_fall).await;
    let first = meal(app, "mr-two", json!({"timestamp": at(t0)})).await;
    let second = meal(
        app,
        "mr-two",
        json!({"timestamp": at(t0 + Duration::minutes(60))}),
    )
    .await;
    let a = response_of(app, "mr-two", &first).await;
    let b = response_of(app, "mr-two", &second).await;
    assert_eq!(
        (&a["overlap"], &b["overlap"]),
        (&json!(true), &json!(false))
    );
    // The first is the clean response above, overlap aside.
    close(&a["iauc_120"], 3600.0);

    // The list with include=response: each meal with the response its own route
    // gives, computed from one read of the trace.
    let listed = data(
        app.get("/api/users/mr-two/meals?include=response").await,
        200,
    )
    .await;
    let meals = listed["meals"].as_array().unwrap();
    assert_eq!(meals.len(), 2);
    assert_eq!(meals[0]["response"], a);
    assert_eq!(meals[1]["response"], b);
    let plain = data(app.get("/api/users/mr-two/meals").await, 200).await;
    assert!(plain["meals"][0].get("response").is_none(), "{plain}");
    expect_error(
        app.get("/api/users/mr-two/meals?include=foods").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    expect_error(
        app.get("/api/users/mr-two/sleep?include=response").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;

    // A late upload: only the readings to 90 are stored (19 + 7), so a day later
    // the response is insufficient (coverage 19/37 = 0.514); the rest arrives
    // through the API and the same meal's response is complete, as above.
    let t0 = past_meal(1);
    seed(app, "mr-late", t0, every5(-30, 90), rise_and_fall).await;
    let id = meal(app, "mr-late", json!({"timestamp": at(t0)})).await;
    let r = response_of(app, "mr-late", &id).await;
    assert_eq!(r["status"], "insufficient_data", "{r}");
    close(&r["coverage"], 0.514);
    let late: Vec<Value> = every5(95, 300)
        .map(|m| reading_json(t0 + Duration::minutes(m), rise_and_fall(m)))
        .collect();
    let posted = app
        .post_json("/api/bg/mr-late/readings", &json!({ "readings": late }))
        .await;
    assert_eq!(posted.status(), 201, "{}", posted.text().await.unwrap());
    let r = response_of(app, "mr-late", &id).await;
    assert_eq!(r["status"], "complete", "{r}");
    close(&r["iauc_120"], 3600.0);
    close(&r["coverage"], 1.0);

    // Unknown meal: 404; not a UUID: 400.
    expect_error(
        app.get("/api/users/mr-full/meals/00000000-0000-4000-8000-00000000000c/response")
            .await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
    expect_error(
        app.get("/api/users/mr-full/meals/lunch/response").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

async fn insights_case(app: &TestApp) {
    // Three breakfasts of rice (named in three spellings) a day apart, each with
    // the clean response (iauc_120 3600, delta_g 60), and one more rise of the
    // same shape four days ago with no meal logged.
    for days in 1..=3 {
        let t0 = past_meal(days);
        seed(app, "mr-ins", t0, every5(-30, 300), rise_and_fall).await;
        let name = ["Rice", " rice", "RICE"][days as usize - 1];
        meal(
            app,
            "mr-ins",
            json!({"timestamp": at(t0), "meal_type": "breakfast",
                   "foods": [{"name": name}, {"name": format!("egg {days}")}]}),
        )
        .await;
    }
    let unlogged = past_meal(4);
    seed(app, "mr-ins", unlogged, every5(-30, 300), rise_and_fall).await;

    let d = data(app.get("/api/users/mr-ins/meals/insights").await, 200).await;
    assert_eq!(d["min_meals"], 3);
    assert_eq!(d["meals"], 3);
    let ranked = d["foods"]["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 1, "{d}");
    assert_eq!(ranked[0]["name"], "rice");
    assert_eq!(ranked[0]["n"], 3);
    close(&ranked[0]["iauc_120"]["mean"], 3600.0);
    close(&ranked[0]["iauc_120"]["sd"], 0.0);
    close(&ranked[0]["delta_g"]["mean"], 60.0);
    // Each egg once: listed apart.
    assert_eq!(d["foods"]["not_enough_meals"].as_array().unwrap().len(), 3);
    assert_eq!(d["meal_types"]["ranked"][0]["name"], "breakfast");
    // The unlogged rise: from 100 (the stable 30 minutes before it) to 160.
    let suggestions = d["unlogged_meals"].as_array().unwrap();
    assert_eq!(suggestions.len(), 1, "{d}");
    let s = &suggestions[0];
    assert_eq!(s["timestamp"], at(unlogged).as_str(), "{s}");
    close(&s["baseline"], 100.0);
    close(&s["peak"], 160.0);
    close(&s["rise"], 60.0);

    // A window that leaves out the unlogged rise and two of the meals.
    let start = at(past_meal(1) - Duration::hours(2));
    let d = data(
        app.get(&format!(
            "/api/users/mr-ins/meals/insights?startDate={start}"
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(d["meals"], 1);
    assert!(d["foods"]["ranked"].as_array().unwrap().is_empty(), "{d}");
    assert!(d["unlogged_meals"].as_array().unwrap().is_empty(), "{d}");
    expect_error(
        app.get("/api/users/mr-ins/meals/insights?startDate=yesterday")
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

/// The stored response of one meal, if any.
async fn stored_of(app: &TestApp, user_id: &str, id: &str) -> Option<StoredMealResponse> {
    let id = uuid::Uuid::parse_str(id).unwrap();
    let mut got = app
        .store
        .get_meal_responses(&user(user_id), &[id])
        .await
        .unwrap();
    assert!(got.len() <= 1);
    got.pop()
}

async fn send(request: reqwest::RequestBuilder, status: u16) {
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    assert_eq!(got, status, "{}", response.text().await.unwrap_or_default());
}

/// Stored responses (issue 20): what is stored, when it is served, and that
/// every change it depends on makes the next request compute it again.
async fn stored_case(app: &TestApp) {
    // A complete response is stored by the GET, as served.
    let t0 = past_meal(1);
    seed(app, "ms-one", t0, every5(-30, 300), rise_and_fall).await;
    let id = meal(app, "ms-one", json!({"timestamp": at(t0)})).await;
    assert!(stored_of(app, "ms-one", &id).await.is_none());
    let r = response_of(app, "ms-one", &id).await;
    assert_eq!(r["status"], "complete", "{r}");
    let kept = stored_of(app, "ms-one", &id).await.expect("stored");
    let mut as_json = serde_json::to_value(&kept.response).unwrap();
    as_json["meal_id"] = json!(id);
    assert_eq!(as_json, r);

    // It is what the next GET serves: a stored copy doctored under the same
    // key comes back (so the stored copy is read, not recomputed)...
    let mut doctored = kept.clone();
    doctored.response.peak = Some(999.0);
    app.store
        .put_meal_responses(&user("ms-one"), vec![doctored])
        .await
        .unwrap();
    close(&response_of(app, "ms-one", &id).await["peak"], 999.0);
    // ...until a reading inside the window arrives: a new answer (peak 200 at
    // 60), computed and stored in place of the old one.
    seed(app, "ms-one", t0, [60].into_iter(), |_| 200).await;
    let r = response_of(app, "ms-one", &id).await;
    close(&r["peak"], 200.0);
    let again = stored_of(app, "ms-one", &id).await.unwrap();
    assert_eq!(again.response.peak, Some(200.0));
    assert_ne!(again.key, kept.key);
    // A reading on another day (outside the span) leaves the key alone.
    seed(
        app,
        "ms-one",
        t0 - Duration::days(3),
        [0].into_iter(),
        |_| 120,
    )
    .await;
    response_of(app, "ms-one", &id).await;
    assert_eq!(stored_of(app, "ms-one", &id).await.unwrap().key, again.key);

    // A late upload into a gap: insufficient_data is stored, then the upload
    // makes it complete on the next GET.
    let t0 = past_meal(1);
    seed(app, "ms-late", t0, every5(-30, 90), rise_and_fall).await;
    let id = meal(app, "ms-late", json!({"timestamp": at(t0)})).await;
    assert_eq!(
        response_of(app, "ms-late", &id).await["status"],
        "insufficient_data"
    );
    let kept = stored_of(app, "ms-late", &id).await.expect("stored");
    assert_eq!(kept.response.status, MealResponseStatus::InsufficientData);
    let late: Vec<Value> = every5(95, 300)
        .map(|m| reading_json(t0 + Duration::minutes(m), rise_and_fall(m)))
        .collect();
    send(
        app.client
            .post(app.url("/api/bg/ms-late/readings"))
            .json(&json!({ "readings": late })),
        201,
    )
    .await;
    let r = response_of(app, "ms-late", &id).await;
    assert_eq!(r["status"], "complete", "{r}");
    close(&r["iauc_120"], 3600.0);
    assert_eq!(
        stored_of(app, "ms-late", &id)
            .await
            .unwrap()
            .response
            .status,
        MealResponseStatus::Complete
    );

    // A new meal inside (t0, t0 + 180] flips the overlap flag, also in the list.
    let t0 = past_meal(2);
    seed(app, "ms-two", t0, every5(-30, 400), rise_and_fall).await;
    let id = meal(app, "ms-two", json!({"timestamp": at(t0)})).await;
    assert_eq!(response_of(app, "ms-two", &id).await["overlap"], false);
    assert!(stored_of(app, "ms-two", &id).await.is_some());
    let second = meal(
        app,
        "ms-two",
        json!({"timestamp": at(t0 + Duration::minutes(180))}),
    )
    .await;
    assert_eq!(response_of(app, "ms-two", &id).await["overlap"], true);
    let listed = data(
        app.get("/api/users/ms-two/meals?include=response").await,
        200,
    )
    .await;
    let first_listed = listed["meals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .unwrap();
    assert_eq!(first_listed["response"]["overlap"], true, "{listed}");
    // Deleting the second meal: no overlap again.
    send(
        app.client
            .delete(app.url(&format!("/api/users/ms-two/meals/{second}"))),
        204,
    )
    .await;
    assert_eq!(response_of(app, "ms-two", &id).await["overlap"], false);

    // PATCHing the meal's timestamp five minutes later: the peak (at 60 after
    // the old time) is now 55 minutes after the meal.
    send(
        app.client
            .patch(app.url(&format!("/api/users/ms-two/meals/{id}")))
            .json(&json!({"timestamp": at(t0 + Duration::minutes(5))})),
        200,
    )
    .await;
    let r = response_of(app, "ms-two", &id).await;
    close(&r["time_to_peak"], 55.0);
    assert_eq!(
        stored_of(app, "ms-two", &id)
            .await
            .unwrap()
            .response
            .time_to_peak,
        Some(55.0)
    );

    // A pending answer is not stored.
    let recent = (Utc::now() - Duration::minutes(30))
        .duration_trunc(Duration::minutes(1))
        .unwrap();
    seed(app, "ms-pending", recent, every5(-30, 25), |_| 110).await;
    let pending = meal(app, "ms-pending", json!({"timestamp": at(recent)})).await;
    assert_eq!(
        response_of(app, "ms-pending", &pending).await["status"],
        "pending"
    );
    let listed = data(
        app.get("/api/users/ms-pending/meals?include=response")
            .await,
        200,
    )
    .await;
    assert_eq!(listed["meals"][0]["response"]["status"], "pending");
    assert!(stored_of(app, "ms-pending", &pending).await.is_none());

    // Deleting the meal removes its stored response.
    assert!(stored_of(app, "ms-two", &id).await.is_some());
    send(
        app.client
            .delete(app.url(&format!("/api/users/ms-two/meals/{id}"))),
        204,
    )
    .await;
    assert!(stored_of(app, "ms-two", &id).await.is_none());
}

/// The list of many meals: the first request stores every final response,
/// the second serves them all from the store, equal to the first.
async fn stored_list_case(app: &TestApp) {
    let t0 = past_meal(3);
    // The same rise and fall every 6 hours (each meal's baseline at 100).
    let periodic = |m: i64| rise_and_fall((m + 30).rem_euclid(360) - 30);
    seed(app, "ms-list", t0, every5(-30, 60 * 30), periodic).await;
    for i in 0..5 {
        meal(
            app,
            "ms-list",
            json!({"timestamp": at(t0 + Duration::hours(6 * i))}),
        )
        .await;
    }
    let path = "/api/users/ms-list/meals?include=response";
    let first = data(app.get(path).await, 200).await;
    let ids: Vec<uuid::Uuid> = first["meals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| uuid::Uuid::parse_str(m["id"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    let stored = app
        .store
        .get_meal_responses(&user("ms-list"), &ids)
        .await
        .unwrap();
    assert_eq!(stored.len(), 5, "every final response is stored");
    let second = data(app.get(path).await, 200).await;
    assert_eq!(first, second);
    for m in second["meals"].as_array().unwrap() {
        assert_eq!(m["response"]["status"], "complete", "{m}");
        close(&m["response"]["iauc_120"], 3600.0);
    }
}

#[tokio::test]
async fn stored_meal_responses_on_sqlite() {
    let app = TestApp::spawn().await;
    stored_case(&app).await;
    stored_list_case(&app).await;
}

#[tokio::test]
async fn stored_meal_responses_on_postgres() {
    let app = postgres_app(&[]).await;
    stored_case(&app).await;
    stored_list_case(&app).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn stored_meal_responses_on_dynamodb() {
    let app = dynamodb_app(&[]).await;
    stored_case(&app).await;
    stored_list_case(&app).await;
}

#[tokio::test]
async fn meal_responses_on_sqlite() {
    responses_case(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn meal_responses_on_postgres() {
    responses_case(&postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn meal_responses_on_dynamodb() {
    responses_case(&dynamodb_app(&[]).await).await;
}

#[tokio::test]
async fn meal_insights_on_sqlite() {
    insights_case(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn meal_insights_on_postgres() {
    insights_case(&postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn meal_insights_on_dynamodb() {
    insights_case(&dynamodb_app(&[]).await).await;
}

#[tokio::test]
async fn the_glucolens_paths_answer_for_the_callers_meals_on_sqlite() {
    glucolens_case(TestApp::spawn().await).await;
}

#[tokio::test]
async fn the_glucolens_paths_answer_for_the_callers_meals_on_postgres() {
    glucolens_case(postgres_app(&[]).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn the_glucolens_paths_answer_for_the_callers_meals_on_dynamodb() {
    glucolens_case(dynamodb_app(&[]).await).await;
}

/// With AUTH_DISABLED the caller is dev-admin.
async fn glucolens_case(app: TestApp) {
    let t0 = past_meal(1);
    seed(&app, "dev-admin", t0, every5(-30, 300), rise_and_fall).await;
    let id = meal(&app, "dev-admin", json!({"timestamp": at(t0)})).await;
    let v1 = data(
        app.get(&format!("/api/v1/glucose/meal-response/{id}"))
            .await,
        200,
    )
    .await;
    assert_eq!(v1, response_of(&app, "dev-admin", &id).await);
    assert_eq!(v1["status"], "complete");
    let insights = data(app.get("/api/v1/glucose/insights").await, 200).await;
    assert_eq!(insights["user_id"], "dev-admin");
    assert_eq!(insights["meals"], 1);
    expect_error(
        app.get("/api/v1/glucose/meal-response/00000000-0000-4000-8000-00000000000c")
            .await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
}

const SECRET: &str = "meal-response-secret-0123456789abcdef";

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
async fn a_share_reader_reads_meal_responses_and_a_stranger_does_not_on_sqlite() {
    share_case(TestApp::spawn_with(WITH_TOKENS).await).await;
}

#[tokio::test]
async fn a_share_reader_reads_meal_responses_and_a_stranger_does_not_on_postgres() {
    share_case(postgres_app(WITH_TOKENS).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn a_share_reader_reads_meal_responses_and_a_stranger_does_not_on_dynamodb() {
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
    let t0 = past_meal(1);
    seed(&app, "pat", t0, every5(-30, 300), rise_and_fall).await;
    let created = app
        .client
        .post(app.url("/api/users/pat/meals"))
        .bearer_auth(token("pat", Role::Patient))
        .json(&json!({"timestamp": at(t0)}))
        .send()
        .await
        .unwrap();
    let id = data(created, 201).await["id"].as_str().unwrap().to_owned();
    let get = |path: String, who: String| {
        let request = app.client.get(app.url(&path)).bearer_auth(who);
        async move { request.send().await.unwrap() }
    };
    let response = format!("/api/users/pat/meals/{id}/response");
    let mom = token("mom", Role::Caregiver);
    let r = data(get(response.clone(), mom.clone()).await, 200).await;
    assert_eq!(r["status"], "complete");
    data(get("/api/users/pat/meals/insights".into(), mom).await, 200).await;
    let aunt = token("aunt", Role::Caregiver);
    for path in [
        response,
        "/api/users/pat/meals/insights".into(),
        "/api/users/pat/meals?include=response".into(),
    ] {
        expect_error(get(path, aunt.clone()).await, 403, "FORBIDDEN").await;
    }
}

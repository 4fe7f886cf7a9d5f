//! The journal's GlucoLens and Nutri paths with real bearer tokens, on SQLite
//! and PostgreSQL: `POST /api/v1/meals`, `/sleep`, `/activities` store the
//! caller's own entries; `POST /api/v1/integrations/apple-health` stores a whole
//! upload or nothing (a bad item in the middle stores no reading and no entry),
//! a repeat stores nothing new, and a caller cannot write another user's data.

use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::roles::Role;
use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "journal-v1-test-secret-0123456789abcdef";
const AUDIENCE: &str = "cgm-hub";

fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("MAX_BATCH_RECORDS", "12"),
    ];
    v.extend_from_slice(extra);
    v
}

fn token(sub: &str) -> String {
    mint_hs256(
        SECRET,
        sub,
        &[Role::Patient],
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
fn ago(minutes: i64) -> String {
    stamp(
        Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap()
            - chrono::Duration::minutes(minutes),
    )
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// How many entries of `kind` (`meals`, `sleep`, `activities`) and readings `user` has.
async fn counts(app: &TestApp, user: &str) -> (usize, usize, usize, usize) {
    let t = token(user);
    let mut n = Vec::new();
    for kind in ["meals", "sleep", "activities"] {
        let (status, body) = get(app, &format!("/api/users/{user}/{kind}?limit=1000"), &t).await;
        assert_eq!(status, 200, "{body}");
        n.push(body["data"][kind].as_array().unwrap().len());
    }
    let (status, body) = get(
        app,
        &format!(
            "/api/v1/glucose/readings?start={}&limit=1000",
            ago(3 * 24 * 60)
        ),
        &t,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        n[0],
        n[1],
        n[2],
        body["data"]["readings"].as_array().unwrap().len(),
    )
}

fn pointers(body: &Value) -> Vec<String> {
    body["error"]["details"]["errors"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect()
}

fn night(hours_ago: i64) -> Value {
    json!({"sleep_start": ago(hours_ago * 60), "sleep_end": ago((hours_ago - 8) * 60),
           "deep_sleep_minutes": 80, "rem_sleep_minutes": 100, "light_sleep_minutes": 250,
           "awake_minutes": 20})
}

fn upload() -> Value {
    json!({
        "glucose_readings": [
            {"timestamp": ago(30), "value": 120, "source": "apple_health", "device_id": "G7"},
            {"timestamp": ago(25), "value": 131, "source": "apple_health"},
            {"timestamp": ago(20), "value": 95, "source": "manual"},
        ],
        "sleep_sessions": [night(20), night(44)],
        "activities": [
            {"timestamp": ago(300), "activity_type": "walking", "duration_minutes": 30},
            {"timestamp": ago(200), "activity_type": "running", "duration_minutes": 20,
             "calories_burned": 210, "external_id": "hk-workout-1"},
        ],
    })
}

async fn journal_paths(app: &TestApp) {
    let alice = token("jv-alice");
    // Each path stores the caller's own entry.
    let (status, meal) = post(
        app,
        "/api/v1/meals",
        &alice,
        &json!({"timestamp": ago(90), "meal_type": "lunch", "carbs_grams": 45}),
    )
    .await;
    assert_eq!(status, 201, "{meal}");
    assert_eq!(meal["data"]["user_id"], "jv-alice");
    assert_eq!(meal["data"]["carbs_grams"], 45.0);
    assert_eq!(meal["data"]["source"], "manual");
    let (status, sleep) = post(app, "/api/v1/sleep", &alice, &night(60)).await;
    assert_eq!(status, 201, "{sleep}");
    assert_eq!(sleep["data"]["duration_minutes"], 460, "{sleep}");
    let activity = json!({"timestamp": ago(120), "activity_type": "cycling", "duration_minutes": 45,
               "external_id": "bike-1"});
    let (status, stored) = post(app, "/api/v1/activities", &alice, &activity).await;
    assert_eq!(status, 201, "{stored}");
    // The same external id again: the stored one, nothing new.
    let (status, again) = post(app, "/api/v1/activities", &alice, &activity).await;
    assert_eq!(status, 200);
    assert_eq!(again["data"]["id"], stored["data"]["id"]);
    assert_eq!(counts(app, "jv-alice").await, (1, 1, 1, 0));
    // Validation as on the per-user routes.
    let (status, bad) = post(
        app,
        "/api/v1/sleep",
        &alice,
        &json!({"sleep_start": ago(60), "sleep_end": ago(120)}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(pointers(&bad), ["/sleep_end"]);

    // Another caller cannot write into alice's data.
    let bob = token("jv-bob");
    let (status, refused) = post(
        app,
        "/api/v1/meals",
        &bob,
        &json!({"timestamp": ago(90), "carbs_grams": 10, "user_id": "jv-alice"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(pointers(&refused), ["/user_id"]);
    let (status, _) = post(
        app,
        "/api/users/jv-alice/meals",
        &bob,
        &json!({"timestamp": ago(90)}),
    )
    .await;
    assert_eq!(status, 403);

    // The Apple Health upload: everything stored.
    // One body for the upload and its repeat: built twice, a minute boundary
    // between them would move every time in it (`ago` is whole minutes).
    let body = upload();
    let (status, synced) = post(app, "/api/v1/integrations/apple-health", &alice, &body).await;
    assert_eq!(status, 201, "{synced}");
    assert_eq!(
        synced["data"],
        json!({"records_synced": 7,
               "glucose_readings": {"received": 3, "inserted": 3, "updated": 0, "duplicate": 0},
               "sleep_sessions": 2, "activities": 2,
               "new_sleep_sessions": 2, "new_activities": 2})
    );
    assert_eq!(counts(app, "jv-alice").await, (1, 3, 3, 3));
    let (_, sleep) = get(app, "/api/users/jv-alice/sleep?order=desc&limit=1", &alice).await;
    let newest = &sleep["data"]["sleep"][0];
    assert_eq!(newest["source"], "apple_health", "{sleep}");
    assert!(newest["external_id"].as_str().unwrap().starts_with("ahu-"));
    let (_, activities) = get(app, "/api/users/jv-alice/activities", &alice).await;
    assert!(activities["data"]["activities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["external_id"] == "hk-workout-1" && a["calories_burned"] == 210.0));

    // A repeat (a client's retry): nothing new.
    let (status, repeat) = post(app, "/api/v1/integrations/apple-health", &alice, &body).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["data"]["records_synced"], 7);
    assert_eq!(
        repeat["data"]["glucose_readings"],
        json!({"received": 3, "inserted": 0, "updated": 0, "duplicate": 3})
    );
    assert_eq!(
        (
            repeat["data"]["new_sleep_sessions"].as_u64(),
            repeat["data"]["new_activities"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(counts(app, "jv-alice").await, (1, 3, 3, 3));

    // Bob's upload is his: alice's data is unchanged.
    let (status, _) = post(app, "/api/v1/integrations/apple-health", &bob, &upload()).await;
    assert_eq!(status, 201);
    assert_eq!(counts(app, "jv-bob").await, (0, 2, 2, 3));
    assert_eq!(counts(app, "jv-alice").await, (1, 3, 3, 3));

    // A bad item in the middle: nothing stored, every problem named.
    let carol = token("jv-carol");
    let mut bad = upload();
    bad["sleep_sessions"] = json!([night(20), night(44), night(68),
        {"sleep_start": ago(100), "sleep_end": ago(200)}]);
    bad["activities"][1]["duration_minutes"] = json!(0);
    bad["glucose_readings"][2]["value"] = json!(900);
    let (status, refused) = post(app, "/api/v1/integrations/apple-health", &carol, &bad).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(
        pointers(&refused),
        [
            "/glucose_readings/2/value",
            "/sleep_sessions/3/sleep_end",
            "/activities/1/duration_minutes"
        ]
    );
    assert_eq!(counts(app, "jv-carol").await, (0, 0, 0, 0));
    // An unknown field in an item, and at the top.
    let mut unknown = upload();
    unknown["activities"][0]["mood"] = json!("great");
    let (status, refused) = post(app, "/api/v1/integrations/apple-health", &carol, &unknown).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(pointers(&refused), ["/activities/0/mood"]);
    let (status, _) = post(
        app,
        "/api/v1/integrations/apple-health",
        &carol,
        &json!({"meals": []}),
    )
    .await;
    assert_eq!(status, 422);
    // Not an object: serde would read the three lists from an array; refused.
    let (status, _) = post(
        app,
        "/api/v1/integrations/apple-health",
        &carol,
        &json!([[], [], []]),
    )
    .await;
    assert_eq!(status, 400);
    // Over MAX_BATCH_RECORDS (12 here) items in all: 413, nothing stored.
    let mut big = upload();
    big["sleep_sessions"] = json!((0..8).map(|i| night(20 + 24 * i)).collect::<Vec<_>>());
    let (status, _) = post(app, "/api/v1/integrations/apple-health", &carol, &big).await;
    assert_eq!(status, 413);
    assert_eq!(counts(app, "jv-carol").await, (0, 0, 0, 0));
}

#[tokio::test]
async fn journal_v1_paths_on_sqlite() {
    let app = TestApp::spawn_with(&vars(&[])).await;
    journal_paths(&app).await;
}

#[tokio::test]
async fn journal_v1_paths_on_postgres() {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let app = TestApp::spawn_with(&vars(&[
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ]))
    .await;
    journal_paths(&app).await;
}

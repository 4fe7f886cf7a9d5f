//! The journal's GlucoLens and Nutri paths with real bearer tokens, on SQLite,
//! PostgreSQL and DynamoDB: `POST /api/v1/meals`, `/sleep`, `/activities` store the
//! caller's own entries; `POST /api/v1/integrations/apple-health` stores a whole
//! upload or nothing (a bad item in the middle stores no reading and no entry),
//! a repeat stores nothing new, and a caller cannot write another user's data.
//! The upload is one transaction on SQL: a journal insert made to fail by a
//! trigger, after the upload's readings were written, leaves no reading, no
//! entry and no event of it, and the retry stores it once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::config::Durability;
use cgm_hub::domain::{
    Activity, ActivityInput, ActivityType, SleepInput, SleepSession, TimePolicy, TimeZoneName,
};
use cgm_hub::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use cgm_hub::records::readings::Outcome;
use cgm_hub::records::roles::Role;
use cgm_hub::store::sqlite::SqliteStore;
use cgm_hub::store::{Order, Scan, Store};
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
    journal_paths(&postgres_app(&vars(&[])).await).await;
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn journal_v1_paths_on_dynamodb() {
    journal_paths(&dynamodb_app(&vars(&[])).await).await;
}

/// Makes the journal insert of an entry with external id `boom` fail, behind
/// the store: a trigger on `journal_entries` (created and dropped by the test).
enum Behind {
    Sqlite(PathBuf),
    Postgres(PgSchema),
}

const SQLITE_REFUSE: &str = "CREATE TRIGGER refuse_boom BEFORE INSERT ON journal_entries \
     WHEN NEW.external_id = 'boom' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
const POSTGRES_REFUSE: &str = "CREATE OR REPLACE FUNCTION refuse_boom() RETURNS trigger \
     LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
     CREATE TRIGGER refuse_boom BEFORE INSERT ON journal_entries FOR EACH ROW \
     WHEN (NEW.external_id = 'boom') EXECUTE FUNCTION refuse_boom()";

impl Behind {
    async fn run(&self, sqlite: &str, postgres: &str) {
        match self {
            Behind::Sqlite(path) => sqlite_batch(path, sqlite),
            Behind::Postgres(schema) => {
                let mut conn = schema.connection().await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(postgres.to_owned()))
                    .execute(&mut conn)
                    .await
                    .expect("postgres DDL");
            }
        }
    }

    async fn refuse_boom(&self) {
        self.run(SQLITE_REFUSE, POSTGRES_REFUSE).await;
    }

    async fn allow_boom(&self) {
        self.run(
            "DROP TRIGGER refuse_boom",
            "DROP TRIGGER refuse_boom ON journal_entries",
        )
        .await;
    }
}

fn sqlite_batch(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).expect("open the database");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(sql).expect("sqlite DDL");
}

/// An upload of `u`'s as the store gets it: three readings, a sleep session
/// and two activities, the last with external id `boom`.
fn parsed_upload(u: &str) -> (Vec<cgm_hub::domain::Reading>, Vec<JournalEntry>) {
    let now = Utc::now();
    let policy = TimePolicy::default();
    let readings = vec![
        cgm(u, slot(1), 101),
        cgm(u, slot(2), 102),
        cgm(u, slot(3), 103),
    ];
    let sleep = SleepSession::parse(
        SleepInput {
            sleep_start: Some(ago(20 * 60)),
            sleep_end: Some(ago(12 * 60)),
            ..Default::default()
        },
        u,
        TimeZoneName::UTC,
        &policy,
        now,
    )
    .unwrap();
    let activity = |minutes: i64| {
        let input = ActivityInput {
            timestamp: Some(ago(minutes)),
            activity_type: Some(ActivityType::Walking),
            duration_minutes: Some(30),
            ..Default::default()
        };
        JournalBody::Activity(Activity::parse(input, u, &policy, now).unwrap())
    };
    let entry = |external_id: &str, body| {
        JournalEntry::new(
            user(u),
            "apple_health".into(),
            Some(external_id.into()),
            body,
            now,
        )
    };
    let entries = vec![
        entry("night-1", JournalBody::Sleep(sleep)),
        entry("walk-1", activity(300)),
        entry("boom", activity(200)),
    ];
    (readings, entries)
}

/// What `u` has in the store: readings, sleep sessions, activities, and the
/// outbox's unpublished events (no relay runs on a bare store).
async fn stored(store: &dyn Store, u: &str) -> (usize, usize, usize, u64) {
    let readings = store
        .scan_readings(Scan {
            user_id: user(u),
            from: slot(-10_000).unix_seconds(),
            until: slot(10_000).unix_seconds(),
            order: Order::Asc,
            limit: 1000,
        })
        .await
        .unwrap()
        .len();
    let mut n = Vec::new();
    for kind in [JournalKind::Sleep, JournalKind::Activity] {
        let listed = store
            .list_journal_entries(JournalQuery {
                user_id: user(u),
                kind,
                from: None,
                until: None,
                descending: false,
                after: None,
                limit: 100,
            })
            .await
            .unwrap();
        n.push(listed.len());
    }
    (readings, n[0], n[1], store.outbox_backlog().await.unwrap())
}

/// The store's `store_health_upload` with the last entry refused inside its
/// transaction (after the readings and the first entries were written):
/// nothing of the upload stored, no event; the retry stores it all once.
async fn one_transaction_in_the_store(store: &dyn Store, behind: &Behind) {
    let (readings, entries) = parsed_upload("tx-store");
    behind.refuse_boom().await;
    let failed = store
        .store_health_upload(readings.clone(), entries.clone())
        .await;
    assert!(
        format!("{failed:?}").contains("refused by the test"),
        "{failed:?}"
    );
    assert_eq!(stored(store, "tx-store").await, (0, 0, 0, 0));
    assert!(store
        .latest_reading(&user("tx-store"))
        .await
        .unwrap()
        .is_none());

    behind.allow_boom().await;
    let (upserted, created) = store
        .store_health_upload(readings.clone(), entries.clone())
        .await
        .unwrap();
    assert!(upserted.iter().all(|u| u.outcome == Outcome::Inserted));
    assert_eq!(
        created,
        entries
            .iter()
            .cloned()
            .map(JournalCreated::Created)
            .collect::<Vec<_>>()
    );
    // Three readings and three entries, each with its event.
    assert_eq!(stored(store, "tx-store").await, (3, 1, 2, 6));
    assert_eq!(
        store
            .latest_reading(&user("tx-store"))
            .await
            .unwrap()
            .unwrap()
            .reading,
        readings[2]
    );
    // Once: the same upload again stores nothing and writes no event.
    let (upserted, created) = store.store_health_upload(readings, entries).await.unwrap();
    assert!(upserted
        .iter()
        .all(|u| matches!(u.outcome, Outcome::Duplicate(_))));
    assert!(created
        .iter()
        .all(|c| matches!(c, JournalCreated::Existing(_))));
    assert_eq!(stored(store, "tx-store").await, (3, 1, 2, 6));
}

/// The same through `POST /api/v1/integrations/apple-health`: 500 and
/// nothing stored, then the retry answers 201 with everything new.
async fn one_transaction_over_http(app: &TestApp, behind: &Behind) {
    let dave = token("jv-dave");
    let mut body = upload();
    body["activities"][1]["external_id"] = json!("boom");
    behind.refuse_boom().await;
    let r = app
        .client
        .post(app.url("/api/v1/integrations/apple-health"))
        .bearer_auth(&dave)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(counts(app, "jv-dave").await, (0, 0, 0, 0));

    behind.allow_boom().await;
    let (status, synced) = post(app, "/api/v1/integrations/apple-health", &dave, &body).await;
    assert_eq!(status, 201, "{synced}");
    assert_eq!(
        synced["data"],
        json!({"records_synced": 7,
               "glucose_readings": {"received": 3, "inserted": 3, "updated": 0, "duplicate": 0},
               "sleep_sessions": 2, "activities": 2,
               "new_sleep_sessions": 2, "new_activities": 2})
    );
    assert_eq!(counts(app, "jv-dave").await, (0, 2, 2, 3));
}

#[tokio::test]
async fn apple_health_all_or_none_on_sqlite() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, Durability::Normal).unwrap();
    one_transaction_in_the_store(&store, &Behind::Sqlite(path)).await;

    let app = TestApp::spawn_with(&vars(&[])).await;
    one_transaction_over_http(&app, &Behind::Sqlite(app.db_path.clone())).await;
}

// No `_on_dynamodb` variant: the failure is injected by a trigger behind the
// store, which DynamoDB has not, and a DynamoDB upload is documented as not one
// unit (docs/journal.md, "Apple Health upload"): a repeat completes it.
#[tokio::test]
async fn apple_health_all_or_none_on_postgres() {
    let schema = PgSchema::new();
    let store = schema.store().await;
    let behind = Behind::Postgres(schema);
    one_transaction_in_the_store(&store, &behind).await;

    let Behind::Postgres(schema) = &behind else {
        unreachable!()
    };
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let app = TestApp::spawn_with(&vars(&[
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ]))
    .await;
    one_transaction_over_http(&app, &behind).await;
}

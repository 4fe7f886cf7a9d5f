//! The real app on PostgreSQL and on DynamoDB, so an HTTP test written once
//! (a function taking a `TestApp`) runs on every backend: each app gets a
//! schema or tables of its own, dropped with it, on a server that must be
//! running (a missing server fails the test, never skips it).

use crate::helpers::{PgSchema, TestApp};

/// The app with `overrides` on a fresh PostgreSQL schema (TEST_DATABASE_URL),
/// migrated first and dropped with the app.
pub async fn postgres_app(overrides: &[(&str, &str)]) -> TestApp {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let mut vars = overrides.to_vec();
    vars.extend([
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ]);
    let mut app = TestApp::spawn_with(&vars).await;
    app.backend = Some(Box::new(schema));
    app
}

/// The app with `overrides` on the DynamoDB emulator (TEST_DYNAMODB_ENDPOINT,
/// default moto at http://127.0.0.1:8000) with `dynamodb_test_settings`: fixed
/// credentials through AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and tables
/// of its own, which the app creates on start-up (`open_store`) and which are
/// deleted with the app.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb_app(overrides: &[(&str, &str)]) -> TestApp {
    use crate::helpers::{dynamodb_test_settings, dynamodb_unreachable, DynamoTables};
    let settings = dynamodb_test_settings();
    let endpoint = settings.endpoint.clone().expect("an emulator endpoint");
    let credentials = settings
        .static_credentials
        .clone()
        .expect("the emulator's credentials");
    let t = &settings.tables;
    let mut vars = overrides.to_vec();
    vars.extend([
        ("STORAGE_BACKEND", "dynamodb"),
        ("DYNAMODB_ENDPOINT", endpoint.as_str()),
        ("AWS_REGION", settings.region.as_str()),
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id.as_str()),
        (
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.expose().as_str(),
        ),
        ("DYNAMODB_TABLE", t.readings.as_str()),
        ("DYNAMODB_USER_TOKENS_TABLE", t.user_tokens.as_str()),
        ("DYNAMODB_SYNC_JOBS_TABLE", t.sync_jobs.as_str()),
        ("DYNAMODB_AUX_TABLE", t.aux.as_str()),
    ]);
    let spawned = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        TestApp::try_spawn_with(&vars),
    )
    .await;
    // Tables created before a failure are deleted too.
    let tables = DynamoTables(settings.clone());
    let mut app = spawned
        .unwrap_or_else(|_| {
            panic!(
                "{}",
                dynamodb_unreachable(&endpoint, "no answer within 60 s")
            )
        })
        .unwrap_or_else(|e| panic!("{}", dynamodb_unreachable(&endpoint, e)));
    app.backend = Some(Box::new(tables));
    app
}

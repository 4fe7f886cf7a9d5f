//! The security hardening of settings and of what callers can make the store
//! hold (docs/security.md): weak production settings refused at start-up,
//! expired OAuth states pruned on a timer and capped per user, shares capped
//! per patient and their list paginated. Each test goes through the real
//! binary or the real router over HTTP. (The `finding_N` in test names number
//! the hardening work that added them; docs/security.md cites the tests by name.)

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cgm_hub::simulator::dexcom::browser::consent;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

// --- Weak production settings ---

const KEY: (&str, &str) = (
    "TOKEN_ENCRYPTION_KEY",
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
);
const STRONG: &str = "f3a1c9e07b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f";
const JWKS: &str = "https://idp.example.org/.well-known/jwks.json";

/// A started `cgm-hub serve`, killed when dropped (if it did not exit).
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cgm-hub serve` with only `envs` (plus a free port and a database
/// in a fresh folder) and returns its stderr once it exits non-zero; fails if
/// it is still serving after 30 s.
async fn refused_at_start(envs: &[(&str, &str)]) -> String {
    let dir = TempDir::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cgm-hub"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("SQLITE_PATH", dir.path().join("app.db"))
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cgm-hub");
    let serving = Arc::new(Mutex::new(Serving(child)));
    let exited = Arc::new(Mutex::new(None));
    eventually(
        "cgm-hub refuses to start (instead of serving)",
        Duration::from_secs(30),
        || {
            let (serving, exited) = (serving.clone(), exited.clone());
            async move {
                let status = serving.lock().unwrap().0.try_wait().expect("try_wait");
                *exited.lock().unwrap() = status;
                status.is_some()
            }
        },
    )
    .await;
    let status = exited.lock().unwrap().expect("exited");
    assert!(!status.success(), "refused with a non-zero exit: {status}");
    let mut stderr = String::new();
    let mut serving = serving.lock().unwrap();
    serving
        .0
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    stderr
}

/// The refusal is one line naming the variable, and never echoes a secret.
fn assert_one_line_refusal(stderr: &str, variable: &str, secret: Option<&str>) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(
        lines[0].starts_with(&format!("cgm-hub: invalid {variable}: ")),
        "{stderr:?}"
    );
    if let Some(secret) = secret {
        assert!(!stderr.contains(secret), "the secret is not printed");
    }
}

#[tokio::test]
async fn finding_7_production_refuses_a_short_auth_jwt_secret() {
    let short = "jwt-secret-of-31-bytes-xxxxxxxx";
    assert_eq!(short.len(), 31);
    let stderr = refused_at_start(&[
        ("SERVICE_ENV", "production"),
        KEY,
        ("AUTH_JWT_SECRET", short),
    ])
    .await;
    assert_one_line_refusal(&stderr, "AUTH_JWT_SECRET", Some(short));
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[tokio::test]
async fn finding_7_production_refuses_a_short_webhook_signing_secret() {
    let short = "hook";
    let stderr = refused_at_start(&[
        ("SERVICE_ENV", "production"),
        KEY,
        ("AUTH_JWT_SECRET", STRONG),
        ("WEBHOOK_SIGNING_SECRET", short),
    ])
    .await;
    assert_one_line_refusal(&stderr, "WEBHOOK_SIGNING_SECRET", Some(short));
}

#[tokio::test]
async fn finding_7_staging_and_production_refuse_an_http_jwks_url() {
    for env in ["staging", "production"] {
        let stderr = refused_at_start(&[
            ("SERVICE_ENV", env),
            KEY,
            (
                "AUTH_JWKS_URL",
                "http://idp.example.org/.well-known/jwks.json",
            ),
            ("AUTH_ISSUER", "https://idp.example.org/"),
            ("AUTH_AUDIENCE", "cgm-hub"),
        ])
        .await;
        assert_one_line_refusal(&stderr, "AUTH_JWKS_URL", None);
        assert!(stderr.contains("https://"), "{stderr}");
    }
}

#[tokio::test]
async fn finding_7_production_refuses_jwks_without_issuer_or_audience() {
    let prod = ("SERVICE_ENV", "production");
    let stderr = refused_at_start(&[
        prod,
        KEY,
        ("AUTH_JWKS_URL", JWKS),
        ("AUTH_AUDIENCE", "cgm-hub"),
    ])
    .await;
    assert_one_line_refusal(&stderr, "AUTH_ISSUER", None);
    let stderr = refused_at_start(&[
        prod,
        KEY,
        ("AUTH_JWKS_URL", JWKS),
        ("AUTH_ISSUER", "https://idp.example.org/"),
    ])
    .await;
    assert_one_line_refusal(&stderr, "AUTH_AUDIENCE", None);
}

/// The control: strong settings of every kind start in production, and
/// development still takes the short secrets tests and local runs use.
#[tokio::test]
async fn finding_7_strong_production_settings_and_short_development_secrets_still_start() {
    let client = reqwest::Client::new();
    let dir = TempDir::new().unwrap();
    let mut production = Binary::start_with(
        &dir.path().join("prod.db"),
        &[],
        &[
            ("SERVICE_ENV", "production"),
            ("AUTH_DISABLED", "false"),
            KEY,
            ("AUTH_JWT_SECRET", STRONG),
            ("WEBHOOK_SIGNING_SECRET", STRONG),
            ("AUTH_JWKS_URL", JWKS),
            ("AUTH_ISSUER", "https://idp.example.org/"),
            ("AUTH_AUDIENCE", "cgm-hub"),
        ],
    );
    production.wait_healthy(&client).await;
    production.terminate().await;
    let mut development = Binary::start_with(
        &dir.path().join("dev.db"),
        &[],
        &[
            ("AUTH_JWT_SECRET", "dev"),
            ("WEBHOOK_SIGNING_SECRET", "dev"),
            ("AUTH_JWKS_URL", "http://127.0.0.1:9/jwks.json"),
        ],
    );
    development.wait_healthy(&client).await;
    development.terminate().await;
}

// --- OAuth states ---

/// Rows of `oauth_states` in the app's SQLite file, for `user` or everyone.
fn oauth_states(db: &Path, user: Option<&str>) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open the app's database");
    match user {
        None => conn.query_row("SELECT COUNT(*) FROM oauth_states", [], |r| r.get(0)),
        Some(u) => conn.query_row(
            "SELECT COUNT(*) FROM oauth_states WHERE user_id = ?1",
            [u],
            |r| r.get(0),
        ),
    }
    .expect("count oauth_states")
}

/// `GET /oauth/authorize` as a browser: the login URL and the cookie to come back with.
async fn authorize(app: &TestApp, user_id: &str) -> (url::Url, String) {
    let started = no_redirects()
        .get(app.url(&format!("/oauth/authorize?user_id={user_id}")))
        .send()
        .await
        .expect("authorize");
    assert_eq!(started.status(), 302);
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let login = started.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (login, cookie)
}

#[tokio::test]
async fn finding_8_expired_oauth_states_are_pruned_on_a_timer() {
    let sim = simulator().await;
    let app = dexcom_app(
        &sim,
        &[
            ("OAUTH_STATE_TTL_SECONDS", "1"),
            ("OAUTH_STATE_PRUNE_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let series = "oauth_states_pruned_total";
    let before = metric(&scrape(&app.client, &app.base).await, series).unwrap_or(0.0);
    // Twenty abandoned authorizations (five per user, under the per-user cap):
    // nobody comes back to /oauth/callback with them.
    for i in 0..20 {
        authorize(&app, &format!("walker{}", i % 4)).await;
    }
    eventually(
        "every expired state is deleted from the store",
        Duration::from_secs(20),
        || async { oauth_states(&app.db_path, None) == 0 },
    )
    .await;
    let after = metric(&scrape(&app.client, &app.base).await, series).unwrap_or(0.0);
    assert!(
        after - before >= 20.0,
        "the pruner deleted them ({before} -> {after})"
    );
}

#[tokio::test]
async fn finding_8_authorize_in_a_loop_keeps_only_the_newest_ten_states() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[]).await;
    authorize(&app, "other").await;
    let mut newest = None;
    for _ in 0..25 {
        newest = Some(authorize(&app, "looper").await);
    }
    assert_eq!(oauth_states(&app.db_path, Some("looper")), 10);
    assert_eq!(
        oauth_states(&app.db_path, Some("other")),
        1,
        "another user's are untouched"
    );
    // The newest one still completes.
    let (login, cookie) = newest.unwrap();
    let back = consent(&login, "looper")
        .await
        .expect("the simulator consents");
    let done = no_redirects()
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(done.status(), 200);
}

// --- Shares ---

async fn grant(app: &TestApp, patient: &str, grantee: &str, role: &str) -> reqwest::Response {
    app.post_json(
        &format!("/api/users/{patient}/shares"),
        &json!({"grantee_id": grantee, "role": role}),
    )
    .await
}

#[tokio::test]
async fn finding_8_shares_per_patient_are_capped_even_under_concurrency() {
    let app = Arc::new(TestApp::spawn_with(&[("SHARES_MAX_PER_PATIENT", "3")]).await);
    // Twenty grants at once: exactly three get in.
    let tries = (0..20).map(|i| {
        let app = app.clone();
        tokio::spawn(async move { grant(&app, "pat", &format!("g{i:02}"), "caregiver").await })
    });
    let mut statuses = Vec::new();
    for t in tries {
        let r = t.await.unwrap();
        if r.status() == 409 {
            let body = expect_error(r, 409, "CONFLICT").await;
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("most grants allowed (3)"), "{message}");
            statuses.push(409);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        17,
        "{statuses:?}"
    );
    let listed = get_json(&app.client, &app.url("/api/users/pat/shares")).await;
    let held: Vec<String> = listed["data"]["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["grantee_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held.len(), 3);
    // At the cap, an existing grantee's grant is still replaced ...
    assert_eq!(
        grant(&app, "pat", &held[0], "clinician").await.status(),
        201
    );
    // ... a new grantee waits for a revocation.
    expect_error(
        grant(&app, "pat", "newcomer", "caregiver").await,
        409,
        "CONFLICT",
    )
    .await;
    let revoked = app
        .client
        .delete(app.url(&format!("/api/users/pat/shares/{}", held[1])))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        grant(&app, "pat", "newcomer", "caregiver").await.status(),
        201
    );
    // Another patient has a cap of their own.
    assert_eq!(
        grant(&app, "pat2", "newcomer", "caregiver").await.status(),
        201
    );
}

fn grantees_of(page: &Value) -> Vec<String> {
    page["data"]["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| s["grantee_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn finding_8_share_list_is_paginated_in_grantee_order() {
    let app = TestApp::spawn_with(&[("SHARES_MAX_PER_PATIENT", "200")]).await;
    for i in (0..120).rev() {
        assert_eq!(
            grant(&app, "pat", &format!("g{i:03}"), "caregiver")
                .await
                .status(),
            201
        );
    }
    grant(&app, "other", "g999", "caregiver").await;
    // Default: the first 100, with a link to the rest.
    let first = get_json(&app.client, &app.url("/api/users/pat/shares")).await;
    let expected: Vec<String> = (0..120).map(|i| format!("g{i:03}")).collect();
    assert_eq!(grantees_of(&first), expected[..100]);
    assert_eq!(first["data"]["pagination"]["limit"], 100);
    // Pages of 50 by the absolute `next` links: every grant once, in order.
    let mut seen = Vec::new();
    let mut url = app.url("/api/users/pat/shares?limit=50");
    let mut cursors = Vec::new();
    loop {
        let page = get_json(&app.client, &url).await;
        seen.extend(grantees_of(&page));
        let pagination = &page["data"]["pagination"];
        assert_eq!(pagination["limit"], 50);
        match pagination["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&app.base), "absolute: {next}");
                cursors.push(pagination["next_cursor"].as_str().unwrap().to_owned());
                url = next.to_owned();
            }
            None => {
                assert!(pagination["next_cursor"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(cursors.len(), 2, "120 grants: pages of 50, 50 and 20");
    // Bad limits and cursors are validation errors; a cursor stays with its patient.
    for query in [
        "limit=0".to_owned(),
        "limit=1001".to_owned(),
        "limit=ten".to_owned(),
        "cursor=not-a-cursor".to_owned(),
    ] {
        let r = app.get(&format!("/api/users/pat/shares?{query}")).await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
    }
    let r = app
        .get(&format!("/api/users/other/shares?cursor={}", cursors[0]))
        .await;
    expect_error(r, 400, "VALIDATION_ERROR").await;
    // The OpenAPI document (which the API fuzzer follows) declares the paging
    // parameters and the 409 of a grant over the cap.
    let doc = get_json(&app.client, &app.url("/openapi.json")).await;
    let shares = &doc["paths"]["/api/users/{userId}/shares"];
    let params: Vec<&str> = shares["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"limit") && params.contains(&"cursor"),
        "{params:?}"
    );
    assert!(shares["post"]["responses"]["409"].is_object());
}

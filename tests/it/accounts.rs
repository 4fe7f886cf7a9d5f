//! Built-in accounts over HTTP: sign-up, login, refresh with rotation and reuse
//! detection, logout and `me` on SQLite and PostgreSQL; the access token works
//! on the data routes; duplicate emails; bad and hostile input answered with
//! pointers and nothing stored or echoed; login floods throttled with
//! Retry-After; unknown email and wrong password alike in answer and time;
//! the registration policy; accounts off without AUTH_JWT_SECRET.

use std::time::{Duration, Instant};

use cgm_hub::domain::Email;
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "accounts-test-secret-that-is-long-enough";
const PASSWORD: &str = "correct horse battery staple";

/// Real bearer checks (no AUTH_DISABLED), HS256 with SECRET, issuer and
/// audience set, and a cheap Argon2 cost unless the test sets its own.
fn vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("AUTH_ISSUER", "cgm-hub-test"),
        ("AUTH_AUDIENCE", "cgm-hub-api"),
        ("ARGON2_MEMORY_KIB", "8192"),
        ("ARGON2_ITERATIONS", "1"),
    ];
    for (k, val) in extra {
        v.retain(|(name, _)| name != k);
        v.push((k, val));
    }
    v
}

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(&vars(extra)).await
}

fn email() -> String {
    format!("Person.{}@Example.org", unique())
}

async fn register(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        &json!({"email": email, "password": password, "full_name": "Pat Person", "timezone": "Europe/Berlin"}),
    )
    .await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn data(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

fn assert_session(session: &Value, email: &str) {
    assert_eq!(session["token_type"], "Bearer", "{session}");
    assert_eq!(session["expires_in"], 900, "{session}");
    assert!(session["access_token"].as_str().unwrap().len() > 40);
    assert_eq!(session["refresh_token"].as_str().unwrap().len(), 43);
    assert_eq!(session["user"]["email"], email.trim());
    assert_eq!(session["user"]["roles"], json!(["patient"]));
    assert!(session["user"].get("password_hash").is_none());
}

/// Register, use the token, me, login, refresh (and its reuse), logout.
async fn the_whole_flow(app: &TestApp) {
    let email = email();
    let session = data(register(app, &email, PASSWORD).await, 201).await;
    assert_session(&session, &email);
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let access = session["access_token"].as_str().unwrap().to_owned();

    // The access token is an ordinary bearer token of this user.
    let at = Utc::now() - chrono::Duration::minutes(3);
    let r = app
        .client
        .post(app.url(&format!("/api/bg/{id}/readings")))
        .bearer_auth(&access)
        .json(&reading_json(at, 123))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = app
        .client
        .get(app.url(&format!("/api/bg/{id}/latest")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(data(r, 200).await["glucose_value"], 123);
    // ... and of nobody else.
    let r = app
        .client
        .get(app.url("/api/bg/someone-else/latest"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "FORBIDDEN").await;

    // me: the account and the profile its sign-up set.
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let me = data(r, 200).await;
    assert_eq!(me["user"]["id"], id.as_str());
    assert_eq!(me["user"]["full_name"], "Pat Person");
    assert_eq!(me["user"]["email_verified"], false);
    assert_eq!(me["profile"]["timezone"], "Europe/Berlin");
    expect_error(app.get("/api/v1/auth/me").await, 401, "AUTH_ERROR").await;

    // The same email in other case: 409, in the one envelope.
    expect_error(
        register(app, &email.to_uppercase(), "another fine passphrase").await,
        409,
        "CONFLICT",
    )
    .await;

    // Login (email case-folded) gives a fresh session of the same account.
    let second = data(login(app, &email.to_lowercase(), PASSWORD).await, 200).await;
    assert_eq!(second["user"]["id"], id.as_str());

    // Refresh rotates: the first refresh token works once.
    let r1 = second["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = data(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
            .await,
        200,
    )
    .await;
    let r2 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(refreshed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Reuse of r1 revokes the family: r2 is dead too.
    expect_error(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r1}))
            .await,
        401,
        "AUTH_ERROR",
    )
    .await;
    expect_error(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r2}))
            .await,
        401,
        "AUTH_ERROR",
    )
    .await;
    // The sign-up's own session is another family, untouched ...
    let first_refresh = session["refresh_token"].as_str().unwrap();
    let again = data(
        app.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": first_refresh}),
        )
        .await,
        200,
    )
    .await;
    // ... until logout, which is 204 and ends it.
    let r3 = again["refresh_token"].as_str().unwrap();
    let r = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": r3}))
        .await;
    assert_eq!(r.status(), 204);
    expect_error(
        app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": r3}))
            .await,
        401,
        "AUTH_ERROR",
    )
    .await;
    // Logging out twice, or with an unknown token, is still 204.
    let r = app
        .post_json("/api/v1/auth/logout", &json!({"refresh_token": r3}))
        .await;
    assert_eq!(r.status(), 204);

    // The audit trail has the sign-up, logins, refreshes and me (written
    // behind the responses, by the audit writer).
    let target = user(&id);
    eventually(
        "the account's audit entries",
        Duration::from_secs(10),
        || {
            let (store, target) = (app.store.clone(), target.clone());
            async move {
                let stored = store
                    .query_audit(cgm_hub::records::audit::AuditQuery {
                        target_user: Some(target),
                        from: None,
                        until: None,
                        after_seq: None,
                        limit: 1000,
                    })
                    .await
                    .unwrap();
                let actions: Vec<&str> = stored.iter().map(|e| e.entry.action).collect();
                ["register", "login", "refresh_session", "read_account"]
                    .iter()
                    .all(|a| actions.contains(a))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn register_login_refresh_logout_and_me_on_sqlite() {
    let app = spawn(&[]).await;
    the_whole_flow(&app).await;
}

#[tokio::test]
async fn register_login_refresh_logout_and_me_on_postgres() {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let app = spawn(&[
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ])
    .await;
    the_whole_flow(&app).await;
}

/// Every bad field named by its pointer, nothing stored, no secret echoed.
#[tokio::test]
async fn bad_and_hostile_input_is_refused_with_pointers_and_nothing_stored() {
    let app = spawn(&[]).await;
    let pointer = |e: &Value| -> Vec<String> {
        e["details"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["pointer"].as_str().unwrap().to_owned())
            .collect()
    };
    let fine = email();
    let long_email = format!("{}@example.com", "a".repeat(300));
    let long_password = "p".repeat(257);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"email": fine, "password": "password1"}),
            vec!["/password"],
        ),
        (
            json!({"email": fine, "password": "Iloveyou!"}),
            vec!["/password"],
        ),
        (
            json!({"email": fine, "password": "short"}),
            vec!["/password"],
        ),
        (
            json!({"email": fine, "password": long_password}),
            vec!["/password"],
        ),
        (
            json!({"email": long_email, "password": PASSWORD}),
            vec!["/email"],
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            vec!["/email"],
        ),
        (
            json!({"email": "' OR 1=1 --@x.com", "password": PASSWORD}),
            vec!["/email"],
        ),
        (
            json!({"email": "a@b.com'; DROP TABLE accounts; --", "password": PASSWORD}),
            vec!["/email"],
        ),
        (
            json!({"email": {"$gt": ""}, "password": PASSWORD}),
            vec!["/email"],
        ),
        (
            json!({"email": fine, "password": {"$ne": null}}),
            vec!["/password"],
        ),
        (json!({"password": PASSWORD}), vec!["/email"]),
        (
            json!({"email": fine, "password": PASSWORD, "timezone": "Nowhere/Land"}),
            vec!["/timezone"],
        ),
    ];
    for (body, pointers) in cases {
        let r = app.post_json("/api/v1/auth/register", &body).await;
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PASSWORD),
            "the password is not echoed: {text}"
        );
        assert!(!text.contains("DROP TABLE"), "{text}");
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["error"]["code"], "VALIDATION_ERROR", "{body}: {text}");
        assert_eq!(pointer(&e["error"]), pointers, "{body}");
    }
    // Not JSON, or a field the API does not know: 400.
    let r = app.post_raw("/api/v1/auth/register", "{not json").await;
    expect_error(r, 400, "VALIDATION_ERROR").await;
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": fine, "password": PASSWORD, "roles": ["admin"]}),
        )
        .await;
    expect_error(r, 400, "VALIDATION_ERROR").await;
    // None of it stored.
    assert!(app
        .store
        .account_by_email(&Email::parse(&fine).unwrap())
        .await
        .unwrap()
        .is_none());

    // Login: hostile input is 422 with pointers; a well-formed unknown one 401.
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": {"$ne": null}, "password": {"$ne": null}}),
        )
        .await;
    let e = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert_eq!(pointer(&e), ["/email", "/password"]);
    let r = login(&app, "admin'--@example.com", "' OR '1'='1").await;
    expect_error(r, 401, "AUTH_ERROR").await;
    let r = login(&app, &fine, &"x".repeat(300)).await;
    let e = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert_eq!(pointer(&e), ["/password"]);
    let r = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": 42}))
        .await;
    let e = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert_eq!(pointer(&e), ["/refresh_token"]);
    let r = app
        .post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": "' OR 1=1 --"}),
        )
        .await;
    expect_error(r, 401, "AUTH_ERROR").await;
}

#[tokio::test]
async fn a_login_flood_on_one_account_gets_429_with_retry_after() {
    let app = spawn(&[("LOGIN_ACCOUNT_FREE_FAILURES", "2")]).await;
    let victim = email();
    assert_eq!(register(&app, &victim, PASSWORD).await.status(), 201);
    // Delays double from 1 s after the second failure: some attempt within
    // ten lands inside a block, however slowly this machine runs them.
    let mut throttled = None;
    for _ in 0..10 {
        let r = login(&app, &victim, "wrong password!").await;
        match r.status().as_u16() {
            401 => continue,
            429 => {
                throttled = Some(r);
                break;
            }
            other => panic!("status {other}"),
        }
    }
    let r = throttled.expect("a 429 within ten failed logins");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry),
        "Retry-After {retry} within the 60 s cap"
    );
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;
    // Another account from the same client is not held up by it.
    let other = email();
    assert_eq!(register(&app, &other, PASSWORD).await.status(), 201);
    assert_eq!(login(&app, &other, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_spray_across_emails_from_one_ip_gets_429() {
    let app = spawn(&[("LOGIN_IP_FREE_FAILURES", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = login(&app, &email(), "some password").await;
        let status = r.status().as_u16();
        statuses.push(status);
        if status == 429 {
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
}

/// The median time of a login with an unknown email and of one with a wrong
/// password differ by less than 10 ms (both verify one Argon2id hash at the
/// default cost). Samples are interleaved, in alternating order, so that load
/// on the machine falls on both alike.
#[tokio::test]
async fn unknown_email_and_wrong_password_take_about_as_long() {
    // The default Argon2 cost (19 MiB, 4 passes).
    let app = spawn(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "4"),
        ("LOGIN_ACCOUNT_FREE_FAILURES", "1000"),
        ("LOGIN_IP_FREE_FAILURES", "100000"),
    ])
    .await;
    let known = email();
    assert_eq!(register(&app, &known, PASSWORD).await.status(), 201);
    let timed = |email: String| {
        let app = &app;
        async move {
            let start = Instant::now();
            let r = login(app, &email, "not the password").await;
            let took = start.elapsed();
            let body = expect_error(r, 401, "AUTH_ERROR").await;
            (took, body["message"].as_str().unwrap().to_owned())
        }
    };
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    let mut messages = std::collections::BTreeSet::new();
    for round in 0..31 {
        let (a, b) = if round % 2 == 0 {
            let a = timed(email()).await;
            (a, timed(known.clone()).await)
        } else {
            let b = timed(known.clone()).await;
            (timed(email()).await, b)
        };
        unknown.push(a.0);
        wrong.push(b.0);
        messages.insert(a.1);
        messages.insert(b.1);
    }
    assert_eq!(messages.len(), 1, "one message for both: {messages:?}");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (u, w) = (median(&mut unknown), median(&mut wrong));
    let gap = u.abs_diff(w);
    assert!(
        gap < Duration::from_millis(10),
        "median unknown email {u:?}, wrong password {w:?}"
    );
}

#[tokio::test]
async fn registration_follows_the_policy() {
    let app = spawn(&[("REGISTRATION", "closed")]).await;
    let r = register(&app, &email(), PASSWORD).await;
    expect_error(r, 403, "FORBIDDEN").await;
    // By invitation: without a token, a pointer to it (tests/it/invitations.rs
    // has the rest).
    let app = spawn(&[("REGISTRATION", "invite")]).await;
    let r = register(&app, &email(), PASSWORD).await;
    let body = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert!(body.to_string().contains("/invitation_token"), "{body}");
}

#[tokio::test]
async fn accounts_are_off_without_an_hs256_secret() {
    let app = TestApp::spawn().await; // AUTH_DISABLED, no AUTH_JWT_SECRET
    let r = register(&app, &email(), PASSWORD).await;
    expect_error(r, 503, "SERVICE_UNAVAILABLE").await;
    let r = login(&app, &email(), PASSWORD).await;
    expect_error(r, 503, "SERVICE_UNAVAILABLE").await;
}

/// Runs `cgm-hub users create ARGS` with `stdin` on standard input.
fn users_create(db: &str, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cgm-hub"))
        .args(["users", "create"])
        .args(args)
        .env_clear()
        .envs([
            ("SQLITE_PATH", db),
            ("ARGON2_MEMORY_KIB", "8192"),
            ("ARGON2_ITERATIONS", "1"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run cgm-hub");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The first admin comes from the command line (password on standard input),
/// whatever REGISTRATION says, and logs in over HTTP with both roles.
#[tokio::test]
async fn the_cli_creates_an_admin_who_can_log_in_while_registration_is_closed() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("accounts.db").display().to_string();
    // A store that exists (as `serve` or `migrate` leaves it).
    let migrated = run_cgm_hub(dir.path(), &["migrate"], &[("SQLITE_PATH", db.as_str())]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let admin = email();
    let out = users_create(
        &db,
        &["--email", &admin, "--admin", "--json"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["roles"], json!(["patient", "admin"]));
    // A breached password, or the same email again: refused.
    let weak = users_create(&db, &["--email", &email()], "password1\n");
    assert_eq!(weak.status.code(), Some(2));
    let again = users_create(
        &db,
        &["--email", &admin.to_lowercase()],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let app = spawn(&[("SQLITE_PATH", db.as_str()), ("REGISTRATION", "closed")]).await;
    let session = data(login(&app, &admin, PASSWORD).await, 200).await;
    assert_eq!(session["user"]["id"], created["id"]);
    assert_eq!(session["user"]["roles"], json!(["patient", "admin"]));
    expect_error(register(&app, &email(), PASSWORD).await, 403, "FORBIDDEN").await;
    // An admin token reads the audit trail, which only admins may.
    let r = app
        .client
        .get(app.url("/api/audit?limit=5"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

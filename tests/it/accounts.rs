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
    // Both paths once untimed: the first unknown email also makes the dummy hash.
    timed(email()).await;
    timed(known.clone()).await;
    // Paired rounds: the two logins of a round run back to back, so a load
    // that comes and goes (other tests on a 2-core machine) touches both
    // alike; the median of the paired differences is what the two paths cost
    // apart. The order within a round alternates.
    let mut gaps = Vec::new();
    let mut messages = std::collections::BTreeSet::new();
    for round in 0..41 {
        let (a, b) = if round % 2 == 0 {
            let a = timed(email()).await;
            (a, timed(known.clone()).await)
        } else {
            let b = timed(known.clone()).await;
            (timed(email()).await, b)
        };
        gaps.push(a.0.as_secs_f64() - b.0.as_secs_f64());
        messages.insert(a.1);
        messages.insert(b.1);
    }
    assert_eq!(messages.len(), 1, "one message for both: {messages:?}");
    gaps.sort_by(f64::total_cmp);
    let median_gap = gaps[gaps.len() / 2];
    assert!(
        median_gap.abs() < 0.010,
        "median of unknown-email minus wrong-password times: {:.1} ms (all: {gaps:?})",
        median_gap * 1000.0
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

// --- Browser sessions: the refresh token in an HttpOnly cookie, CSRF checked ---

/// The Set-Cookie values of a response, by cookie name.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .map(|v| (v.split('=').next().unwrap().to_owned(), v))
        .collect()
}

fn set_cookie<'a>(cookies: &'a [(String, String)], name: &str) -> &'a str {
    &cookies
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
        .1
}

/// The value a Set-Cookie gives its cookie.
fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

/// A browser's refresh or logout: the two cookies, and the CSRF header when given.
async fn with_cookies(
    app: &TestApp,
    path: &str,
    refresh: &str,
    csrf: &str,
    header: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).header(
        "cookie",
        format!("refresh_token={refresh}; csrf_token={csrf}"),
    );
    if let Some(header) = header {
        request = request.header("x-csrf-token", header);
    }
    request.send().await.unwrap()
}

async fn browser_login(
    app: &TestApp,
    email: &str,
) -> (Value, String, String, Vec<(String, String)>) {
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PASSWORD, "session": "cookie"}),
        )
        .await;
    let cookies = set_cookies(&r);
    let session = data(r, 200).await;
    let refresh = cookie_value(set_cookie(&cookies, "refresh_token"));
    let csrf = cookie_value(set_cookie(&cookies, "csrf_token"));
    (session, refresh, csrf, cookies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_session_refreshes_with_the_cookie_and_the_csrf_header_only() {
    let app = spawn(&[]).await;
    let email = email();
    data(register(&app, &email, PASSWORD).await, 201).await;

    // Login asking for a cookie: the refresh token is in the cookie, not the body.
    let (session, refresh, csrf, cookies) = browser_login(&app, &email).await;
    assert!(session.get("refresh_token").is_none(), "{session}");
    assert!(session["access_token"].as_str().unwrap().len() > 40);
    assert_eq!(refresh.len(), 43);
    assert_eq!(
        set_cookie(&cookies, "refresh_token"),
        format!(
            "refresh_token={refresh}; Path=/api/v1/auth; Max-Age=2592000; HttpOnly; SameSite=Lax"
        ),
        "development: no Secure"
    );
    assert_eq!(
        set_cookie(&cookies, "csrf_token"),
        format!("csrf_token={csrf}; Path=/; Max-Age=2592000; SameSite=Strict"),
        "readable by the web app's scripts"
    );
    assert_eq!(csrf.len(), 43);

    // Without the header, with a wrong one, or from another origin: 403 and nothing rotated.
    let r = with_cookies(&app, "/api/v1/auth/refresh", &refresh, &csrf, None).await;
    assert!(set_cookies(&r).is_empty());
    let body = expect_error(r, 403, "CSRF_ERROR").await;
    assert!(!body.to_string().contains(&refresh), "{body}");
    let wrong = format!("{}x", &csrf[..42]);
    let r = with_cookies(&app, "/api/v1/auth/refresh", &refresh, &csrf, Some(&wrong)).await;
    expect_error(r, 403, "CSRF_ERROR").await;
    let r = with_cookies(&app, "/api/v1/auth/refresh", &refresh, &csrf, Some("")).await;
    expect_error(r, 403, "CSRF_ERROR").await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header(
            "cookie",
            format!("refresh_token={refresh}; csrf_token={csrf}"),
        )
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "CSRF_ERROR").await;
    // A logout refused for CSRF revokes nothing either.
    let r = with_cookies(&app, "/api/v1/auth/logout", &refresh, &csrf, None).await;
    expect_error(r, 403, "CSRF_ERROR").await;

    // With the header: 200, a rotated refresh cookie and a new CSRF cookie.
    let r = with_cookies(&app, "/api/v1/auth/refresh", &refresh, &csrf, Some(&csrf)).await;
    let cookies = set_cookies(&r);
    let session = data(r, 200).await;
    assert!(session.get("refresh_token").is_none(), "{session}");
    assert!(session["access_token"].as_str().unwrap().len() > 40);
    let rotated = cookie_value(set_cookie(&cookies, "refresh_token"));
    let csrf2 = cookie_value(set_cookie(&cookies, "csrf_token"));
    assert_ne!(rotated, refresh);
    assert_eq!(rotated.len(), 43);

    // Logout with the cookie: 204, both cookies cleared, the session ended.
    let r = with_cookies(&app, "/api/v1/auth/logout", &rotated, &csrf2, Some(&csrf2)).await;
    assert_eq!(r.status(), 204);
    let cleared = set_cookies(&r);
    assert_eq!(
        set_cookie(&cleared, "refresh_token"),
        "refresh_token=; Path=/api/v1/auth; Max-Age=0; HttpOnly; SameSite=Lax"
    );
    assert_eq!(
        set_cookie(&cleared, "csrf_token"),
        "csrf_token=; Path=/; Max-Age=0; SameSite=Strict"
    );
    let r = with_cookies(&app, "/api/v1/auth/refresh", &rotated, &csrf2, Some(&csrf2)).await;
    expect_error(r, 401, "AUTH_ERROR").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_token_clients_need_no_csrf_header_and_get_no_cookie() {
    let app = spawn(&[]).await;
    let email = email();
    let session = data(register(&app, &email, PASSWORD).await, 201).await;
    let token = session["refresh_token"].as_str().unwrap().to_owned();
    // A stray cookie does not make a body-token request a browser one.
    let r = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("cookie", "refresh_token=stale; csrf_token=x")
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&r).is_empty());
    let session = data(r, 200).await;
    assert_session(&session, &email);
    // Neither body nor cookie: the body's field is required.
    let r = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["details"]["errors"][0]["pointer"], "/refresh_token");
    // An unknown session kind is named.
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": PASSWORD, "session": "jar"}),
        )
        .await;
    let body = expect_error(r, 422, "VALIDATION_ERROR").await;
    assert_eq!(body["details"]["errors"][0]["pointer"], "/session");
    // Sign-up can ask for a cookie too.
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": format!("b{}", email), "password": PASSWORD, "session": "cookie"}),
        )
        .await;
    let cookies = set_cookies(&r);
    let session = data(r, 201).await;
    assert!(session.get("refresh_token").is_none());
    set_cookie(&cookies, "refresh_token");
    set_cookie(&cookies, "csrf_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_session_cookies_are_secure_outside_development() {
    let app = spawn(&[
        ("SERVICE_ENV", "production"),
        ("REGISTRATION", "open"),
        (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ])
    .await;
    let email = email();
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": PASSWORD, "session": "cookie"}),
        )
        .await;
    let cookies = set_cookies(&r);
    data(r, 201).await;
    for name in ["refresh_token", "csrf_token"] {
        assert!(
            set_cookie(&cookies, name).ends_with("; Secure"),
            "{cookies:?}"
        );
    }
    let (_, refresh, csrf, _) = browser_login(&app, &email).await;
    let r = with_cookies(&app, "/api/v1/auth/logout", &refresh, &csrf, Some(&csrf)).await;
    assert_eq!(r.status(), 204);
    assert!(set_cookie(&set_cookies(&r), "refresh_token").ends_with("; Secure"));
}

// --- Disabled accounts ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_cannot_log_in_refresh_or_use_its_access_token() {
    let app = spawn(&[]).await;
    let email = email();
    let session = data(register(&app, &email, PASSWORD).await, 201).await;
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap().to_owned();

    // What `cgm-hub users disable` does (the service's store call; the CLI
    // adds only the lookup by email).
    let user = cgm_hub::domain::UserId::parse(&id).unwrap();
    assert!(app.store.disable_account(&user, Utc::now()).await.unwrap());

    // Login: the same 401 as a wrong password.
    let wrong = expect_error(
        login(&app, &email, "not the password at all").await,
        401,
        "AUTH_ERROR",
    )
    .await;
    let disabled = expect_error(login(&app, &email, PASSWORD).await, 401, "AUTH_ERROR").await;
    assert_eq!(disabled, wrong);
    // Refresh: 401, nothing leaked.
    let r = app
        .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await;
    let body = expect_error(r, 401, "AUTH_ERROR").await;
    assert!(!body.to_string().contains("disabled"), "{body}");
    // The access token: refused on every route, like a revoked token.
    for path in [format!("/api/bg/{id}/latest"), "/api/v1/auth/me".to_owned()] {
        let r = app
            .client
            .get(app.url(&path))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        let body = expect_error(r, 401, "AUTH_ERROR").await;
        assert!(!body.to_string().contains(&email.to_lowercase()), "{body}");
        assert!(!body.to_string().contains("disabled"), "{body}");
    }
    // Another account's token still works (no blanket refusal).
    let other = data(
        register(&app, &email.replace("Person", "Other"), PASSWORD).await,
        201,
    )
    .await;
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(other["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `cgm-hub users disable`: exit 1 for an email without an account, 0 (with
/// the id) for one; the account then cannot log in. `users enable` undoes it.
#[tokio::test]
async fn the_cli_disables_an_account() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("accounts.db").display().to_string();
    let migrated = run_cgm_hub(dir.path(), &["migrate"], &[("SQLITE_PATH", db.as_str())]);
    assert!(migrated.status.success());
    let person = email();
    let out = users_create(
        &db,
        &["--email", &person, "--json"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sqlite = [("SQLITE_PATH", db.as_str())];
    let unknown = run_cgm_hub(
        dir.path(),
        &["users", "disable", "--email", "nobody@example.org"],
        &sqlite,
    );
    assert_eq!(unknown.status.code(), Some(1));
    let out = run_cgm_hub(
        dir.path(),
        &["users", "disable", "--email", &person, "--json"],
        &sqlite,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let disabled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(disabled, json!({"id": created["id"], "disabled": true}));
    let app = spawn(&[("SQLITE_PATH", db.as_str())]).await;
    expect_error(login(&app, &person, PASSWORD).await, 401, "AUTH_ERROR").await;

    // `users enable` (beside the running service): the account logs in again.
    let unknown = run_cgm_hub(
        dir.path(),
        &["users", "enable", "--email", "nobody@example.org"],
        &sqlite,
    );
    assert_eq!(unknown.status.code(), Some(1));
    let out = run_cgm_hub(
        dir.path(),
        &["users", "enable", "--email", &person, "--json"],
        &sqlite,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enabled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(enabled, json!({"id": created["id"], "disabled": false}));
    let session = data(login(&app, &person, PASSWORD).await, 200).await;
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A token used (and its account's status cached as active) before the
/// disabling is refused once ACCOUNT_STATUS_CACHE_SECONDS has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_access_token_is_refused_within_the_status_cache_delay() {
    let app = spawn(&[("ACCOUNT_STATUS_CACHE_SECONDS", "1")]).await;
    let session = data(register(&app, &email(), PASSWORD).await, 201).await;
    let id = session["user"]["id"].as_str().unwrap().to_owned();
    let access = session["access_token"].as_str().unwrap().to_owned();
    let me = || async {
        app.client
            .get(app.url("/api/v1/auth/me"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(me().await, 200);
    let user = cgm_hub::domain::UserId::parse(&id).unwrap();
    assert!(app.store.disable_account(&user, Utc::now()).await.unwrap());
    // The cache holds "active" for at most 1 s; 20 s leaves room for a loaded machine.
    eventually(
        "the disabled account's token is refused",
        Duration::from_secs(20),
        || async { me().await == 401 },
    )
    .await;
}

//! Password reset and email verification over a real SMTP server (the sink
//! of `scripts/smtp-sink.sh`): the whole reset flow (request, the mailed
//! token, confirm, old password and old sessions dead), the same 202 in about
//! the same time for an unknown email, used, expired and wrong-purpose
//! tokens, the verification mailed at sign-up, and both features off without
//! mail outside development.

use std::time::{Duration, Instant};

use cgm_hub::records::account_tokens::{AccountToken, TokenPurpose};
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "account-mail-test-secret-that-is-long-enough";
const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a brand new passphrase for pat";

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let mut v = vec![
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("ARGON2_MEMORY_KIB", "8192"),
        ("ARGON2_ITERATIONS", "1"),
    ];
    v.extend_from_slice(extra);
    TestApp::spawn_with(&v).await
}

async fn with_sink() -> Option<(SmtpSink, TestApp)> {
    let sink = SmtpSink::start()?;
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let app = spawn(&[
        ("SMTP_URL", smtp.as_str()),
        ("MAIL_FROM", "cgm-hub <hub@example.org>"),
        ("PUBLIC_BASE_URL", "https://hub.example.org"),
    ])
    .await;
    Some((sink, app))
}

fn email() -> String {
    format!("Pat.{}@Example.org", unique())
}

async fn data(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

async fn register(app: &TestApp, email: &str) -> Value {
    let r = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    data(r, 201).await
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

/// The mail to `to` whose subject has `subject`, once it arrived.
async fn mail(sink: &SmtpSink, to: &str, subject: &str) -> String {
    eventually_ok(subject, Duration::from_secs(10), || async {
        sink.messages()
            .into_iter()
            .find(|m| m.contains(to) && m.contains(subject))
            .ok_or_else(|| "no mail yet".to_owned())
    })
    .await
}

/// The token after `marker` in a mailed link.
fn token_after(message: &str, marker: &str) -> String {
    let text = decoded(message);
    let at = text.find(marker).unwrap_or_else(|| panic!("{message}")) + marker.len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn confirm(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset/confirm",
        &json!({"token": token, "password": password}),
    )
    .await
}

/// The details of an error (what `expect_error` returns).
fn pointers(error: &Value) -> String {
    error["details"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_by_mail_sets_the_password_and_ends_every_session() {
    let Some((sink, app)) = with_sink().await else {
        return;
    };
    let email = email();
    let session = register(&app, &email).await;
    let old_refresh = session["refresh_token"].as_str().unwrap().to_owned();
    let second = data(login(&app, &email, PASSWORD).await, 200).await;
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();

    // The same answer for the account's email and for an unknown one.
    let stranger = format!("nobody.{}@example.org", unique());
    let known = data(
        app.post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": email.to_uppercase()}),
        )
        .await,
        202,
    )
    .await;
    let unknown = data(
        app.post_json("/api/v1/auth/password-reset", &json!({"email": stranger}))
            .await,
        202,
    )
    .await;
    assert_eq!(known, unknown);

    let message = mail(&sink, &email, "Reset your cgm-hub password").await;
    assert!(
        message.contains("From: cgm-hub <hub@example.org>"),
        "{message}"
    );
    assert!(
        decoded(&message).contains("https://hub.example.org/reset-password?token="),
        "{message}"
    );
    let token = token_after(&message, "reset-password?token=");
    assert_eq!(token.len(), 43, "{message}");

    // A breached new password is refused and does not spend the token.
    let body = expect_error(
        confirm(&app, &token, "password123").await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(pointers(&body).contains("/password"), "{body}");
    let r = confirm(&app, &token, NEW_PASSWORD).await;
    assert_eq!(r.status(), 204);

    // The old password fails, the new one works.
    expect_error(login(&app, &email, PASSWORD).await, 401, "AUTH_ERROR").await;
    data(login(&app, &email, NEW_PASSWORD).await, 200).await;
    // Every session from before the reset is over.
    for refresh in [&old_refresh, &second_refresh] {
        let r = app
            .post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh}))
            .await;
        expect_error(r, 401, "AUTH_ERROR").await;
    }
    // The token works once.
    let body = expect_error(
        confirm(&app, &token, "yet another passphrase").await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("used already"), "{body}");
    assert!(pointers(&body).contains("/token"), "{body}");
    data(login(&app, &email, NEW_PASSWORD).await, 200).await;
    // Nothing was mailed to the unknown email (its request ran beside the
    // known one's, whose mail has arrived).
    assert!(
        !sink.messages().iter().any(|m| m.contains(&stranger)),
        "a mail went to an unknown email"
    );
    // The reset was audited with the account as actor.
    let user = cgm_hub::domain::UserId::parse(session["user"]["id"].as_str().unwrap()).unwrap();
    eventually(
        "the reset in the audit trail",
        Duration::from_secs(10),
        || async {
            app.store
                .query_audit(cgm_hub::records::audit::AuditQuery {
                    target_user: Some(user.clone()),
                    from: None,
                    until: None,
                    after_seq: None,
                    limit: 1000,
                })
                .await
                .unwrap()
                .iter()
                .any(|r| r.entry.action == "reset_password" && r.entry.status == 204)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_mailed_at_sign_up_verifies_the_email_once() {
    let Some((sink, app)) = with_sink().await else {
        return;
    };
    let first = email();
    let session = register(&app, &first).await;
    assert_eq!(session["user"]["email_verified"], false);
    let access = session["access_token"].as_str().unwrap().to_owned();
    let message = mail(&sink, &first, "Confirm your email for cgm-hub").await;
    assert!(
        decoded(&message).contains("https://hub.example.org/verify-email?token="),
        "{message}"
    );
    let token = token_after(&message, "verify-email?token=");
    // A verification token is no reset token.
    expect_error(
        confirm(&app, &token, NEW_PASSWORD).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;

    let verified = data(
        app.post_json("/api/v1/auth/verify-email", &json!({"token": token}))
            .await,
        200,
    )
    .await;
    assert_eq!(verified["user"]["email_verified"], true, "{verified}");
    assert_eq!(verified["user"]["id"], session["user"]["id"]);
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(data(r, 200).await["user"]["email_verified"], true);
    // Once only.
    let body = expect_error(
        app.post_json("/api/v1/auth/verify-email", &json!({"token": token}))
            .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("used already"), "{body}");
    // Verified already: no new link.
    let r = app
        .client
        .post(app.url("/api/v1/auth/verify-email/resend"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "CONFLICT").await;

    // Resend for an unverified account mails a second link.
    let other = email();
    let session = register(&app, &other).await;
    mail(&sink, &other, "Confirm your email for cgm-hub").await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/verify-email/resend"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    data(r, 202).await;
    eventually(
        "a second verification mail",
        Duration::from_secs(10),
        || async {
            sink.messages()
                .iter()
                .filter(|m| m.contains(&other) && m.contains("Confirm your email"))
                .count()
                == 2
        },
    )
    .await;
}

/// Tokens put straight into the store: an expired one, and unknown tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unknown_tokens_are_refused() {
    // Development without SMTP_URL: the features are on, links only logged.
    let app = spawn(&[]).await;
    let email = email();
    let session = register(&app, &email).await;
    let user = cgm_hub::domain::UserId::parse(session["user"]["id"].as_str().unwrap()).unwrap();
    let raw = format!("expired-token-{}", unique());
    let now = Utc::now();
    for purpose in [TokenPurpose::PasswordReset, TokenPurpose::VerifyEmail] {
        app.store
            .put_account_token(AccountToken {
                token_hash: cgm_hub::digest::sha256_hex(
                    format!("{raw}{}", purpose.as_str()).as_bytes(),
                ),
                purpose,
                account: user.clone(),
                created_at: now - chrono::Duration::hours(49),
                expires_at: now - chrono::Duration::seconds(1),
                used: false,
            })
            .await
            .unwrap();
    }
    let body = expect_error(
        confirm(&app, &format!("{raw}password_reset"), NEW_PASSWORD).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("expired"), "{body}");
    let body = expect_error(
        app.post_json(
            "/api/v1/auth/verify-email",
            &json!({"token": format!("{raw}verify_email")}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("expired"), "{body}");
    for token in ["no-such-token", &"x".repeat(512)] {
        let body = expect_error(
            confirm(&app, token, NEW_PASSWORD).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert!(body.to_string().contains("unknown"), "{body}");
    }
    // Malformed bodies: pointers, nothing else.
    let body = expect_error(
        app.post_json(
            "/api/v1/auth/password-reset/confirm",
            &json!({"token": "", "password": 5}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(
        pointers(&body).contains("/token") && pointers(&body).contains("/password"),
        "{body}"
    );
    let body = expect_error(
        app.post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": {"$gt": ""}}),
        )
        .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(pointers(&body).contains("/email"), "{body}");
    // The password is unchanged.
    data(login(&app, &email, PASSWORD).await, 200).await;
    // In development without mail a reset request is taken (the link is logged).
    data(
        app.post_json("/api/v1/auth/password-reset", &json!({"email": email}))
            .await,
        202,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mail_reset_and_verification_are_off_outside_development() {
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
    // Sign-up works; there is just no verification mail.
    let session = register(&app, &email).await;
    for (path, body) in [
        ("/api/v1/auth/password-reset", json!({"email": email})),
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": "t", "password": NEW_PASSWORD}),
        ),
        ("/api/v1/auth/verify-email", json!({"token": "t"})),
    ] {
        let body = expect_error(app.post_json(path, &body).await, 503, "SERVICE_UNAVAILABLE").await;
        assert!(body.to_string().contains("SMTP_URL"), "{path}: {body}");
    }
    // An unknown email gets the very same 503.
    let unknown = expect_error(
        app.post_json(
            "/api/v1/auth/password-reset",
            &json!({"email": format!("nobody.{}@example.org", unique())}),
        )
        .await,
        503,
        "SERVICE_UNAVAILABLE",
    )
    .await;
    assert!(
        unknown.to_string().contains("password reset is off"),
        "{unknown}"
    );
    let r = app
        .client
        .post(app.url("/api/v1/auth/verify-email/resend"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    expect_error(r, 503, "SERVICE_UNAVAILABLE").await;
}

/// The reset request's answer does not depend on whether the email has an
/// account: the median of paired back-to-back differences is under 10 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_request_takes_about_as_long_for_an_unknown_email() {
    let app = spawn(&[("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "10000")]).await;
    let mut known_emails = Vec::new();
    for _ in 0..3 {
        let e = email();
        register(&app, &e).await;
        known_emails.push(e);
    }
    let time = |email: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let r = app
                .post_json("/api/v1/auth/password-reset", &json!({"email": email}))
                .await;
            assert_eq!(r.status(), 202);
            started.elapsed()
        }
    };
    // A warm-up of both paths, then the median of paired back-to-back
    // differences: load on a shared machine moves both of a pair alike.
    time(known_emails[0].clone()).await;
    time(format!("nobody.{}@example.org", unique())).await;
    let mut gaps = Vec::new();
    for i in 0..31 {
        // A known email mails at most once a minute; each sample its own
        // attempt at the lookup path regardless.
        let k = time(known_emails[i % 3].clone()).await.as_secs_f64();
        let u = time(format!("nobody.{}@example.org", unique()))
            .await
            .as_secs_f64();
        gaps.push(k - u);
    }
    gaps.sort_by(f64::total_cmp);
    let median_gap = gaps[gaps.len() / 2];
    assert!(
        median_gap.abs() < 0.010,
        "median of known minus unknown times: {:.1} ms (all: {gaps:?})",
        median_gap * 1000.0
    );
}

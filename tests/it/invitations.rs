//! Invitations and shares by email over HTTP: the story (a patient
//! shares with a caregiver's email that has no account; the caregiver signs up
//! with the invitation and reads the patient's readings), invite-only
//! sign-up with and without a token, admin-only invitations, and tokens that
//! are used, expired or for another email.

use std::time::Duration;

use cgm_hub::records::roles::Role;
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "invitations-test-secret-that-is-long-enough";
const PASSWORD: &str = "correct horse battery staple";

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

fn email() -> String {
    format!("Invitee.{}@Example.org", unique())
}

fn admin_token() -> String {
    cgm_hub::auth::jwt::mint_hs256(
        SECRET,
        &format!("admin-{}", unique()),
        &[Role::Admin],
        Duration::from_secs(300),
        None,
        None,
    )
    .unwrap()
}

async fn data(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

async fn register(app: &TestApp, email: &str, token: Option<&str>) -> reqwest::Response {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(token) = token {
        body["invitation_token"] = json!(token);
    }
    app.post_json("/api/v1/auth/register", &body).await
}

async fn invite(app: &TestApp, bearer: &str, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/invitations"))
        .bearer_auth(bearer)
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap()
}

fn pointer_of(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|e| e["field"].as_str().or(e["pointer"].as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The story, by email, with no account yet for the caregiver.
#[tokio::test]
async fn a_share_by_email_waits_for_the_caregiver_to_sign_up() {
    let app = spawn(&[("REGISTRATION", "invite")]).await;
    // The patient's account comes from an admin's invitation.
    let patient_email = email();
    let invited = data(invite(&app, &admin_token(), &patient_email).await, 201).await;
    assert_eq!(invited["email"], patient_email);
    assert_eq!(invited["mail"], "off");
    let token = invited["invitation_token"].as_str().unwrap();
    let patient = data(register(&app, &patient_email, Some(token)).await, 201).await;
    let patient_id = patient["user"]["id"].as_str().unwrap().to_owned();
    let patient_access = patient["access_token"].as_str().unwrap().to_owned();
    let at = Utc::now() - chrono::Duration::minutes(2);
    let r = app
        .client
        .post(app.url(&format!("/api/bg/{patient_id}/readings")))
        .bearer_auth(&patient_access)
        .json(&reading_json(at, 141))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Shared by email: nobody has it yet, so the share is pending.
    let caregiver_email = email();
    let r = app
        .client
        .post(app.url(&format!("/api/users/{patient_id}/shares")))
        .bearer_auth(&patient_access)
        .json(&json!({"grantee_email": caregiver_email.to_uppercase(), "role": "caregiver"}))
        .send()
        .await
        .unwrap();
    let pending = data(r, 202).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["role"], "caregiver");
    let share_token = pending["invitation_token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url(&format!("/api/users/{patient_id}/shares")))
        .bearer_auth(&patient_access)
        .send()
        .await
        .unwrap();
    assert_eq!(data(r, 200).await["shares"], json!([]));

    // The caregiver signs up with it (the email compared case-insensitively)...
    let caregiver = data(
        register(&app, &caregiver_email, Some(&share_token)).await,
        201,
    )
    .await;
    assert_eq!(caregiver["user"]["roles"], json!(["patient", "caregiver"]));
    let caregiver_id = caregiver["user"]["id"].as_str().unwrap();
    // ... the share exists ...
    let r = app
        .client
        .get(app.url(&format!("/api/users/{patient_id}/shares")))
        .bearer_auth(&patient_access)
        .send()
        .await
        .unwrap();
    let shares = data(r, 200).await["shares"].clone();
    assert_eq!(shares[0]["grantee_id"], caregiver_id, "{shares}");
    assert_eq!(shares[0]["role"], "caregiver");
    // ... and the caregiver reads the patient's readings with their own token.
    let r = app
        .client
        .get(app.url(&format!("/api/bg/{patient_id}/latest")))
        .bearer_auth(caregiver["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(data(r, 200).await["glucose_value"], 141);

    // A share by the email of an existing account is made at once (201).
    let r = app
        .client
        .post(app.url(&format!("/api/users/{patient_id}/shares")))
        .bearer_auth(&patient_access)
        .json(&json!({"grantee_email": caregiver_email, "role": "clinician"}))
        .send()
        .await
        .unwrap();
    let share = data(r, 201).await;
    assert_eq!(share["grantee_id"], caregiver_id);
    // Exactly one of grantee_id and grantee_email.
    for body in [
        json!({"grantee_email": caregiver_email, "grantee_id": caregiver_id, "role": "caregiver"}),
        json!({"role": "caregiver"}),
        json!({"grantee_email": "not-an-email", "role": "caregiver"}),
    ] {
        let r = app
            .client
            .post(app.url(&format!("/api/users/{patient_id}/shares")))
            .bearer_auth(&patient_access)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_error(r, 422, "VALIDATION_ERROR").await;
    }
}

#[tokio::test]
async fn invite_only_sign_up_needs_a_token_for_that_email_used_once() {
    let app = spawn(&[("REGISTRATION", "invite")]).await;
    let invitee = email();
    let body = expect_error(
        register(&app, &invitee, None).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("/invitation_token"), "{body}");
    let invited = data(invite(&app, &admin_token(), &invitee).await, 201).await;
    let token = invited["invitation_token"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<Utc> = invited["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "{invited}");

    // Another email with this token, an unknown token: refused, nothing made.
    for (who, token) in [
        (email(), token.as_str()),
        (invitee.clone(), "made-up-token"),
    ] {
        let body = expect_error(
            register(&app, &who, Some(token)).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert!(body.to_string().contains("/invitation_token"), "{body}");
    }
    let session = data(register(&app, &invitee, Some(&token)).await, 201).await;
    assert_eq!(session["user"]["roles"], json!(["patient"]));
    // Used: a second sign-up with it (another email would be refused anyway).
    let body = expect_error(
        register(&app, &invitee, Some(&token)).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("used"), "{body}");
    let _ = pointer_of(&body);
}

#[tokio::test]
async fn only_admins_invite() {
    let app = spawn(&[]).await;
    let patient = data(register(&app, &email(), None).await, 201).await;
    let r = invite(&app, patient["access_token"].as_str().unwrap(), &email()).await;
    expect_error(r, 403, "FORBIDDEN").await;
    let r = app
        .post_json("/api/v1/auth/invitations", &json!({"email": email()}))
        .await;
    expect_error(r, 401, "AUTH_ERROR").await;
    let r = invite(&app, &admin_token(), "nope").await;
    expect_error(r, 422, "VALIDATION_ERROR").await;
}

/// Open registration takes a token too; an expired one is refused.
#[tokio::test]
async fn an_expired_invitation_is_refused() {
    let app = spawn(&[("INVITATION_TTL_HOURS", "1")]).await;
    let invitee = email();
    let invited = data(invite(&app, &admin_token(), &invitee).await, 201).await;
    let token = invited["invitation_token"].as_str().unwrap().to_owned();
    // Age the invitation in the store (the TTL is at least an hour).
    let hash = cgm_hub::digest::sha256_hex(token.as_bytes());
    let mut stored = app.store.get_invitation(&hash).await.unwrap().unwrap();
    stored.expires_at = Utc::now() - chrono::Duration::seconds(1);
    stored.token_hash = cgm_hub::digest::sha256_hex(b"aged");
    app.store.put_invitation(stored).await.unwrap();
    let body = expect_error(
        register(&app, &invitee, Some("aged")).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body.to_string().contains("expired"), "{body}");
    // The live one works under open registration.
    data(register(&app, &invitee, Some(&token)).await, 201).await;
}

/// The token in a mailed link (`...invitation_token=TOKEN`).
fn token_in(message: &str) -> Option<String> {
    let text = decoded(message);
    let at = text.find("invitation_token=")? + "invitation_token=".len();
    Some(
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

/// With SMTP_URL, a share by email mails the link (to the sink) and the
/// answer carries no token; the caregiver signs up with the mailed one and
/// reads the patient's readings.
#[tokio::test]
async fn a_pending_share_is_mailed_and_completed_with_the_mailed_token() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let app = spawn(&[
        ("SMTP_URL", smtp.as_str()),
        ("MAIL_FROM", "cgm-hub <hub@example.org>"),
        ("PUBLIC_BASE_URL", "https://hub.example.org"),
    ])
    .await;
    let patient = data(register(&app, &email(), None).await, 201).await;
    let patient_id = patient["user"]["id"].as_str().unwrap().to_owned();
    let patient_access = patient["access_token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .post(app.url(&format!("/api/bg/{patient_id}/readings")))
        .bearer_auth(&patient_access)
        .json(&reading_json(Utc::now() - chrono::Duration::minutes(2), 99))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let caregiver_email = email();
    let r = app
        .client
        .post(app.url(&format!("/api/users/{patient_id}/shares")))
        .bearer_auth(&patient_access)
        .json(&json!({"grantee_email": caregiver_email, "role": "caregiver"}))
        .send()
        .await
        .unwrap();
    let pending = data(r, 202).await;
    assert_eq!(pending["mail"], "sent");
    assert!(pending["invitation_token"].is_null(), "{pending}");

    let message = eventually_ok("the invitation mail", Duration::from_secs(10), || async {
        sink.messages()
            .into_iter()
            .find(|m| m.contains(&caregiver_email))
            .ok_or_else(|| "no mail yet".to_owned())
    })
    .await;
    assert!(
        message.contains("From: cgm-hub <hub@example.org>"),
        "{message}"
    );
    assert!(
        decoded(&message).contains("https://hub.example.org/signup?invitation_token="),
        "{message}"
    );
    let token = token_in(&message).unwrap();
    assert_eq!(token.len(), 43, "{message}");

    let caregiver = data(register(&app, &caregiver_email, Some(&token)).await, 201).await;
    let r = app
        .client
        .get(app.url(&format!("/api/bg/{patient_id}/latest")))
        .bearer_auth(caregiver["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(data(r, 200).await["glucose_value"], 99);
}

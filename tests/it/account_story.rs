//! The accounts issue's "done when", in one story over HTTP: a person signs
//! up, logs in, connects Dexcom (the simulator's OAuth consent), the sync the
//! connection starts brings readings, they read them, share with a
//! caregiver's email that has no account yet, the caregiver signs up with the
//! mailed invitation and reads the patient's readings, and a stranger with an
//! account of their own cannot.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "account-story-test-secret-that-is-long-enough";

async fn data(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

async fn sign_up(app: &TestApp, email: &str, password: &str, invitation: Option<&str>) -> Value {
    let mut body = json!({"email": email, "password": password});
    if let Some(token) = invitation {
        body["invitation_token"] = json!(token);
    }
    data(app.post_json("/api/v1/auth/register", &body).await, 201).await
}

async fn readings(app: &TestApp, patient: &str, bearer: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/bg/{patient}")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_connects_dexcom_and_shares_with_a_caregiver_who_signs_up() {
    let sim = simulator().await;
    // With mail when the SMTP sink can run; otherwise the invitation token
    // comes in the share's answer (mail off), and the story is the same.
    let sink = SmtpSink::start();
    let smtp = sink
        .as_ref()
        .map(|s| format!("smtp://127.0.0.1:{}", s.port));
    let mut vars = vec![
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("ARGON2_MEMORY_KIB", "8192"),
        ("ARGON2_ITERATIONS", "1"),
        ("DEXCOM_BACKFILL_DAYS", "1"),
        ("REGISTRATION", "open"),
    ];
    if let Some(smtp) = &smtp {
        vars.push(("SMTP_URL", smtp.as_str()));
    }
    let app = dexcom_app(&sim, &vars).await;

    // 1. Sign up, then log in.
    let patient_email = format!("Pat.{}@Example.org", unique());
    let password = "my sugar is my business";
    let signed_up = sign_up(&app, &patient_email, password, None).await;
    let patient = signed_up["user"]["id"].as_str().unwrap().to_owned();
    let session = data(
        app.post_json(
            "/api/v1/auth/login",
            &json!({"email": patient_email, "password": password}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(session["user"]["id"], patient);
    let access = session["access_token"].as_str().unwrap().to_owned();

    // 2. Connect Dexcom as a browser would, with the account's token.
    let browser = no_redirects();
    let started = browser
        .get(app.url(&format!("/oauth/authorize?user_id={patient}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 302);
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let login: url::Url = started.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let back = cgm_hub::simulator::dexcom::browser::consent(&login, &patient)
        .await
        .unwrap();
    let connected = browser
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let connected = data(connected, 200).await;
    assert_eq!(
        connected["connection"]["status"], "connected",
        "{connected}"
    );

    // 3. The sync the connection started brings readings; the patient sees them.
    let page = eventually_ok("the synced readings", Duration::from_secs(20), || async {
        let r = readings(&app, &patient, &access).await;
        let page = data(r, 200).await;
        match page["readings"].as_array() {
            Some(list) if !list.is_empty() => Ok(page),
            _ => Err(format!("no readings yet: {page}")),
        }
    })
    .await;
    let first = &page["readings"][0];
    assert_eq!(first["source"], "dexcom", "{first}");
    let r = app
        .client
        .get(app.url(&format!("/api/bg/{patient}/latest")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let latest = data(r, 200).await;
    assert!(latest["glucose_value"].is_number(), "{latest}");

    // 4. Share by email with a caregiver who has no account yet.
    let caregiver_email = format!("Carer.{}@Example.org", unique());
    let r = app
        .client
        .post(app.url(&format!("/api/users/{patient}/shares")))
        .bearer_auth(&access)
        .json(&json!({"grantee_email": caregiver_email, "role": "caregiver"}))
        .send()
        .await
        .unwrap();
    let pending = data(r, 202).await;
    assert_eq!(pending["status"], "pending");
    let invitation = match &sink {
        Some(sink) => {
            assert_eq!(pending["mail"], "sent");
            let message = eventually_ok("the invitation mail", Duration::from_secs(10), || async {
                sink.messages()
                    .into_iter()
                    .find(|m| m.contains(&caregiver_email) && m.contains("invitation"))
                    .ok_or_else(|| "no mail yet".to_owned())
            })
            .await;
            let text = decoded(&message);
            let at = text.find("invitation_token=").unwrap() + "invitation_token=".len();
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        }
        None => pending["invitation_token"].as_str().unwrap().to_owned(),
    };

    // 5. The caregiver signs up from the invitation and reads the patient's data.
    let caregiver = sign_up(
        &app,
        &caregiver_email,
        "caring is sharing data",
        Some(&invitation),
    )
    .await;
    assert_eq!(caregiver["user"]["roles"], json!(["patient", "caregiver"]));
    let carer_access = caregiver["access_token"].as_str().unwrap();
    let seen = data(readings(&app, &patient, carer_access).await, 200).await;
    assert_eq!(seen["readings"][0], page["readings"][0]);

    // 6. A stranger with an account of their own cannot.
    let stranger = sign_up(
        &app,
        &format!("Stranger.{}@Example.org", unique()),
        "nosy neighbour passphrase",
        None,
    )
    .await;
    let r = readings(&app, &patient, stranger["access_token"].as_str().unwrap()).await;
    expect_error(r, 403, "FORBIDDEN").await;
    // Nor without a token.
    let r = app
        .client
        .get(app.url(&format!("/api/bg/{patient}")))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "AUTH_ERROR").await;
}

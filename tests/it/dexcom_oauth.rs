//! Connecting a Dexcom account over real HTTP: our endpoints, the simulator's
//! login and token endpoints, and what ends up in the database.

use std::time::Duration;

use cgm_hub::records::connections::{PendingAuthorization, Provider};
use cgm_hub::sources::dexcom::oauth::state_hash;
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

/// Where the browser was sent back to, and the cookie it carries there.
struct Return {
    callback: String,
    cookie: String,
}

/// `/oauth/authorize` as a browser sees it: the login URL and the cookie set.
async fn start(app: &TestApp, user_id: &str) -> (url::Url, String) {
    let r = no_redirects()
        .get(app.url(&format!("/oauth/authorize?user_id={user_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("cgm_hub_oauth_"));
    assert!(set_cookie.contains("Path=/oauth/callback"));
    let login = r.headers()["location"].to_str().unwrap().parse().unwrap();
    (login, cookie)
}

/// Follows `/oauth/authorize` to the simulator's login and consents (or not)
/// as `user_id`.
async fn login(app: &TestApp, user_id: &str, consent: &str) -> Return {
    let (mut login, cookie) = start(app, user_id).await;
    login
        .query_pairs_mut()
        .append_pair("sim_user", user_id)
        .append_pair("sim_consent", consent);
    let back = no_redirects().get(login).send().await.unwrap();
    assert_eq!(back.status(), 302);
    Return {
        callback: back.headers()["location"].to_str().unwrap().to_owned(),
        cookie,
    }
}

/// The browser arriving at our callback with its cookie.
async fn come_back(app: &TestApp, r: &Return) -> reqwest::Response {
    app.client
        .get(&r.callback)
        .header("cookie", &r.cookie)
        .send()
        .await
        .unwrap()
}

/// The latest reading, once the initial backfill has stored one.
async fn wait_for_latest(app: &TestApp, user_id: &str) -> Value {
    let url = app.url(&format!("/api/bg/{user_id}/latest"));
    wait_for(&app.client, &url, Duration::from_secs(10), |b| {
        b["status"] == "success"
    })
    .await
}

async fn connection(app: &TestApp, user_id: &str) -> Value {
    let body = get_json(
        &app.client,
        &app.url(&format!("/api/users/{user_id}/connections")),
    )
    .await;
    body["data"]["connections"][0].clone()
}

/// The user's audit entries for connection changes, once `n` have been written
/// (the trail is written in the background).
async fn connection_audit(app: &TestApp, user_id: &str, n: usize) -> Vec<Value> {
    let of_connections = |body: &Value| -> Vec<Value> {
        body["data"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "manage_connections")
            .cloned()
            .collect()
    };
    let body = wait_for(
        &app.client,
        &app.url(&format!("/api/audit?user_id={user_id}")),
        Duration::from_secs(10),
        |body| of_connections(body).len() >= n,
    )
    .await;
    of_connections(&body)
}

#[tokio::test]
async fn full_flow_connects_backfills_and_keeps_tokens_sealed() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[("DEXCOM_BACKFILL_DAYS", "2")]).await;

    let (login, cookie) = start(&app, "alice").await;
    let params: std::collections::HashMap<_, _> = login.query_pairs().into_owned().collect();
    assert_eq!(params["client_id"], "cgm-hub-demo");
    assert_eq!(params["redirect_uri"], app.url("/oauth/callback"));
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["scope"], "offline_access");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"].len(), 43, "32 random bytes, base64url");

    let back = cgm_hub::simulator::dexcom::browser::consent(&login, "alice")
        .await
        .unwrap();
    let ret = Return {
        callback: back.to_string(),
        cookie,
    };
    let done = come_back(&app, &ret).await;
    assert_eq!(done.status(), 200);
    // The callback is on alice's trail, as alice (authenticated by the state
    // bound to her, not by a token), with the callback's request id.
    let entries = connection_audit(&app, "alice", 2).await;
    let callback = &entries[1];
    assert_eq!(callback["actor"], "alice");
    assert_eq!(callback["actor_roles"], json!([]));
    assert_eq!(callback["status"], 200);
    assert_eq!(callback["decision"], "allowed");
    assert_eq!(
        callback["request_id"].as_str(),
        done.headers()["x-request-id"].to_str().ok()
    );
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["data"]["connection"]["status"], "connected");
    assert_eq!(
        body["data"]["backfill"],
        json!({"status": "queued", "days": 2})
    );
    assert_eq!(sim.sim.stats().token_authorization_code, 1);

    let latest = wait_for_latest(&app, "alice").await;
    assert_eq!(latest["data"]["source"], "dexcom");
    let c = connection(&app, "alice").await;
    assert_eq!(c["status"], "connected");
    assert!(c["access_token_expires_at"].is_string());
    assert!(c.get("access_token").is_none() && c.get("tokens").is_none());

    // The same callback again: the state was single-use.
    let replay = come_back(&app, &ret).await;
    let error = expect_error(replay, 401, "AUTH_ERROR").await;
    assert!(error["message"].as_str().unwrap().contains("already used"));

    // No plaintext token anywhere in the database files.
    let stored = app
        .store
        .get_connection(&user("alice"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    let tokens = app
        .cipher
        .open(
            &user("alice"),
            Provider::Dexcom,
            stored.tokens.as_ref().unwrap(),
        )
        .unwrap();
    let mut files = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db_path.display());
        files.extend(std::fs::read(&path).unwrap_or_default());
    }
    assert!(files.len() > 4096, "read the database files");
    for secret in [tokens.access_token.expose(), tokens.refresh_token.expose()] {
        assert!(secret.len() >= 20);
        assert!(
            !files.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a plaintext token is in the database"
        );
    }
}

#[tokio::test]
async fn denied_consent_is_a_clear_error_and_is_recorded() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[]).await;
    let ret = login(&app, "bob", "deny").await;
    assert!(ret.callback.contains("error=access_denied"));
    let response = come_back(&app, &ret).await;
    let error = expect_error(response, 403, "FORBIDDEN").await;
    assert!(error["message"].as_str().unwrap().contains("access_denied"));
    let c = connection(&app, "bob").await;
    assert_eq!(c["status"], "disconnected");
    assert!(c["last_error"].as_str().unwrap().contains("access_denied"));
    // The refused attempt is on bob's trail too.
    let entries = connection_audit(&app, "bob", 2).await;
    assert_eq!(
        (
            &entries[1]["actor"],
            &entries[1]["decision"],
            &entries[1]["status"]
        ),
        (&json!("bob"), &json!("denied"), &json!(403))
    );
    assert_eq!(
        sim.sim.stats().token_authorization_code,
        0,
        "no code was exchanged"
    );
}

#[tokio::test]
async fn unknown_missing_and_expired_states_are_refused() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[]).await;
    for query in ["?code=abc&state=never-issued", "?code=abc", ""] {
        let r = app.get(&format!("/oauth/callback{query}")).await;
        expect_error(r, 401, "AUTH_ERROR").await;
    }
    app.store
        .put_pending_authorization(
            PendingAuthorization {
                state_hash: state_hash("stale-state"),
                user_id: user("carol"),
                provider: Provider::Dexcom,
                pkce_verifier: None,
                browser_hash: None,
                expires_at: Utc::now() - chrono::Duration::seconds(1),
            },
            10,
        )
        .await
        .unwrap();
    let r = app.get("/oauth/callback?code=abc&state=stale-state").await;
    expect_error(r, 401, "AUTH_ERROR").await;
    assert_eq!(sim.sim.stats().token_authorization_code, 0);
}

#[tokio::test]
async fn refresh_revocation_and_disconnect_over_http() {
    let sim = simulator().await;
    // Each refresh below must reach Dexcom, however soon after the last.
    let app = dexcom_app(
        &sim,
        &[
            ("DEXCOM_BACKFILL_DAYS", "1"),
            ("OAUTH_REFRESH_MIN_INTERVAL_SECONDS", "0"),
        ],
    )
    .await;
    let ret = login(&app, "dana", "allow").await;
    assert_eq!(come_back(&app, &ret).await.status(), 200);
    wait_for_latest(&app, "dana").await;
    let before = app
        .store
        .get_connection(&user("dana"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();

    let r = app
        .post_json("/oauth/refresh", &json!({"user_id": "dana"}))
        .await;
    assert_eq!(r.status(), 200);
    let after = app
        .store
        .get_connection(&user("dana"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert!(after.token_version > before.token_version);
    assert_ne!(after.tokens, before.tokens, "rotated tokens were stored");
    assert_eq!(sim.sim.stats().token_refresh, 1);

    expect_error(
        app.post_json("/oauth/refresh", &json!({"user_id": "nobody"}))
            .await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
    expect_error(
        app.post_json("/oauth/refresh", &json!({"user": "dana"}))
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;

    // Revoked at Dexcom: invalid_grant -> reauth_required, tokens dropped.
    sim.sim.revoke_user("dana");
    let r = app
        .post_json("/oauth/refresh", &json!({"user_id": "dana"}))
        .await;
    expect_error(r, 409, "CONFLICT").await;
    let c = connection(&app, "dana").await;
    assert_eq!(c["status"], "reauth_required");
    assert!(c["last_error"].as_str().unwrap().contains("invalid_grant"));
    let stored = app
        .store
        .get_connection(&user("dana"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.tokens.is_none());

    // Disconnect: status disconnected, readings kept.
    let r = app
        .client
        .delete(app.url("/api/users/dana/connections/dexcom"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(connection(&app, "dana").await["status"], "disconnected");
    assert_eq!(app.get("/api/bg/dana/latest").await.status(), 200);
    let r = app
        .client
        .delete(app.url("/api/users/erin/connections/dexcom"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "RESOURCE_NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url("/api/users/dana/connections/libre"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "RESOURCE_NOT_FOUND").await;
}

#[tokio::test]
async fn without_dexcom_settings_oauth_is_unavailable() {
    let app = TestApp::spawn().await;
    let r = app.get("/oauth/authorize?user_id=alice").await;
    let error = expect_error(r, 503, "SERVICE_UNAVAILABLE").await;
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("DEXCOM_CLIENT_ID"));
    expect_error(app.get("/oauth/authorize").await, 400, "VALIDATION_ERROR").await;
    let c = connection(&app, "alice").await;
    assert_eq!(
        c,
        json!({"provider": "dexcom", "status": "disconnected", "connected_at": null,
        "last_sync_at": null, "last_error": null, "access_token_expires_at": null, "updated_at": null})
    );
}

#[tokio::test]
async fn an_open_circuit_degrades_health_and_shows_in_metrics() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[("MAX_RETRIES", "0"), ("DEXCOM_BACKFILL_DAYS", "0")]).await;
    let ret = login(&app, "fay", "allow").await;
    assert_eq!(come_back(&app, &ret).await.status(), 200);
    let health = get_json(&app.client, &app.url("/health")).await;
    assert_eq!(health["checks"]["dexcom"]["status"], "ok");

    let mut faults = sim.sim.faults();
    faults.token_server_error_next = 100;
    sim.sim.set_faults(faults);
    for _ in 0..5 {
        let r = app
            .post_json("/oauth/refresh", &json!({"user_id": "fay"}))
            .await;
        expect_error(r, 502, "EXTERNAL_API_ERROR").await;
    }
    let calls = sim.sim.stats().token_errors;
    let r = app
        .post_json("/oauth/refresh", &json!({"user_id": "fay"}))
        .await;
    let error = expect_error(r, 502, "EXTERNAL_API_ERROR").await;
    assert!(error["message"].as_str().unwrap().contains("circuit"));
    assert_eq!(
        sim.sim.stats().token_errors,
        calls,
        "an open circuit makes no call"
    );

    let r = app.get("/health").await;
    assert_eq!(
        r.status(),
        200,
        "Dexcom being down does not make cgm-hub unhealthy"
    );
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["dexcom"]["status"], "degraded");
    let host = sim.base_url.trim_start_matches("http://");
    assert_eq!(health["checks"]["dexcom"]["circuits"][host], "open");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("dexcom_circuit_state{{host=\"{host}\"}} 2")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_login_link_completed_in_another_browser_connects_nothing() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[("DEXCOM_BACKFILL_DAYS", "0")]).await;
    // The attacker starts a flow for their own account and sends the login
    // link to a victim, whose browser has no (or another) cookie.
    let victim_own = login(&app, "victim", "allow").await;
    for cookie in ["", victim_own.cookie.as_str()] {
        let attacker = login(&app, "mallory", "allow").await;
        let r = app
            .client
            .get(&attacker.callback)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let error = expect_error(r, 401, "AUTH_ERROR").await;
        assert!(error["message"]
            .as_str()
            .unwrap()
            .contains("another browser"));
    }
    assert_eq!(connection(&app, "mallory").await["status"], "disconnected");
    assert_eq!(
        sim.sim.stats().token_authorization_code,
        0,
        "no code was exchanged"
    );
    // The victim's own flow, in the victim's browser, still works.
    assert_eq!(come_back(&app, &victim_own).await.status(), 200);
    // Once that last callback is on the trail, everything before it is too: the
    // refused callbacks are not on mallory's trail as mallory's own acts, only
    // the two authorizations are.
    connection_audit(&app, "victim", 2).await;
    let mallory = connection_audit(&app, "mallory", 2).await;
    let statuses: Vec<&Value> = mallory.iter().map(|e| &e["status"]).collect();
    assert_eq!(statuses, [&json!(302), &json!(302)]);
}

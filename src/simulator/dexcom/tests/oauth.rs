//! OAuth tests: login page and consent, code exchange with and without PKCE,
//! refresh rotation, revocation and expiry.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{Duration, Utc};

use super::super::tokens::s256;
use super::*;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[tokio::test]
async fn full_flow_login_code_token_egvs() {
    let h = Harness::new();
    let redirect = "http://localhost:8080/cb?keep=1";
    let state = "a b&c=d/é";
    let uri = format!(
        "/v2/oauth2/login?{}",
        serde_urlencoded::to_string([
            ("client_id", CLIENT_ID),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "offline_access"),
            ("state", state),
            ("sim_user", "demo-alice"),
        ])
        .expect("query")
    );
    let a = h.get(&uri, None).await;
    assert_eq!(a.status, StatusCode::FOUND);
    let location = a.location();
    assert_eq!(location.path(), "/cb");
    assert_eq!(query_param(&location, "keep").as_deref(), Some("1"));
    assert_eq!(query_param(&location, "state").as_deref(), Some(state));
    let code = query_param(&location, "code").expect("code");
    assert!(code.len() >= 32);

    let token = h
        .post_form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ])
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text());
    assert_eq!(
        token
            .headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let j = token.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 7200);
    let tokens = pair(&token);
    assert_ne!(tokens.access, tokens.refresh);

    let now = Utc::now();
    let egvs = h
        .egvs("v3", &tokens.access, now - Duration::hours(12), now)
        .await;
    assert_eq!(egvs.status, StatusCode::OK, "{}", egvs.text());
    let j = egvs.json();
    assert_eq!(j["recordType"], "egv");
    assert_eq!(j["recordVersion"], "3.0");
    let user_id = j["userId"].as_str().expect("userId");
    assert_eq!(user_id.len(), 64);
    assert!(user_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let recs = records(&j);
    assert!(
        recs.len() > 100,
        "12 h hold ~144 readings, got {}",
        recs.len()
    );
    let r = &recs[0];
    for key in [
        "recordId",
        "systemTime",
        "displayTime",
        "transmitterId",
        "transmitterTicks",
        "value",
        "status",
        "trend",
        "trendRate",
        "unit",
        "rateUnit",
        "displayDevice",
        "transmitterGeneration",
    ] {
        assert!(r.get(key).is_some(), "record lacks {key}: {r}");
    }
    assert_eq!(r["unit"], "mg/dL");
    assert_eq!(r["rateUnit"], "mg/dL/min");
    assert_eq!(r["transmitterId"], "8AB12C");
    assert_eq!(r["transmitterGeneration"], "g7");
    assert!(matches!(
        r["displayDevice"].as_str(),
        Some("iOS" | "android")
    ));
    assert!(uuid::Uuid::parse_str(r["recordId"].as_str().expect("id")).is_ok());
    // demo-alice lives at UTC-5: displayTime carries that offset, systemTime +00:00.
    assert!(r["systemTime"]
        .as_str()
        .is_some_and(|s| s.ends_with("+00:00")));
    assert!(r["displayTime"]
        .as_str()
        .is_some_and(|s| s.ends_with("-05:00")));
    let stats = h.sim.stats();
    assert_eq!(
        (stats.login, stats.token_authorization_code, stats.egvs),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn login_page_lists_users_and_deny_redirects_with_access_denied() {
    let h = Harness::new();
    let page = h.get(&Harness::login_uri(&[]), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for name in [
        "SandboxUser6",
        "SandboxUser7",
        "demo-alice",
        "demo-bob",
        "demo-carol",
    ] {
        assert!(
            html.contains(&format!("sim_user={name}\"")),
            "{name} missing: {html}"
        );
    }
    assert!(html.contains("&amp;sim_consent=deny\">Deny<"), "{html}");

    let deny = h
        .get(&Harness::login_uri(&[("sim_consent", "deny")]), None)
        .await;
    assert_eq!(deny.status, StatusCode::FOUND);
    let location = deny.location();
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&location, "error_description").is_some());
    assert_eq!(query_param(&location, "state").as_deref(), Some("st-1"));
    assert_eq!(query_param(&location, "code"), None);
}

#[tokio::test]
async fn login_rejects_invalid_requests_without_redirecting() {
    let h = Harness::new();
    let cases: [&[(&str, &str)]; 4] = [
        &[("client_id", "someone-else")],
        &[("response_type", "token")],
        &[("scope", "openid")],
        &[("redirect_uri", "not a url")],
    ];
    for case in cases {
        // Later duplicates win in the parsed query.
        let a = h.get(&Harness::login_uri(case), None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{case:?}");
        assert!(a.headers.get(header::LOCATION).is_none());
    }
    let bad_user = h
        .get(&Harness::login_uri(&[("sim_user", "no spaces")]), None)
        .await;
    assert_eq!(bad_user.status, StatusCode::BAD_REQUEST);
    let plain_pkce = h
        .get(
            &Harness::login_uri(&[
                ("sim_user", "u"),
                ("code_challenge", &s256(VERIFIER)),
                ("code_challenge_method", "plain"),
            ]),
            None,
        )
        .await;
    assert_eq!(plain_pkce.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pkce_verifier_must_match_the_challenge() {
    let h = Harness::new();
    let challenge = s256(VERIFIER);
    let pkce = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for verifier in [None, Some("wrong-verifier-wrong-verifier-wrong-verifier-x")] {
        let code = h.code("SandboxUser7", &pkce).await;
        let a = h.exchange(&code, verifier).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{verifier:?}");
        assert_eq!(a.json()["error"], "invalid_grant");
        // The failed attempt used the code up: the right verifier is too late.
        let again = h.exchange(&code, Some(VERIFIER)).await;
        assert_eq!(again.json()["error"], "invalid_grant");
    }
    let code = h.code("SandboxUser7", &pkce).await;
    let ok = h.exchange(&code, Some(VERIFIER)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(h.sim.stats().token_errors, 4);
}

#[tokio::test]
async fn code_is_single_use_and_reuse_revokes_its_tokens() {
    let h = Harness::new();
    let code = h.code("demo-bob", &[]).await;
    let first = h.exchange(&code, None).await;
    assert_eq!(first.status, StatusCode::OK);
    let tokens = pair(&first);
    let second = h.exchange(&code, None).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    assert!(second.json()["error_description"].is_string());
    let now = Utc::now();
    let data = h
        .egvs("v3", &tokens.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.refresh(&tokens.refresh).await.json()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn code_is_bound_to_its_redirect_uri() {
    let h = Harness::new();
    let code = h.code("demo-bob", &[]).await;
    let a = h
        .post_form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://evil.example/cb"),
        ])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn token_endpoint_checks_client_grant_type_and_content_type() {
    let h = Harness::new();
    let wrong = h
        .post_form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", "nope"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
        ])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid_client");

    // Credentials only in HTTP Basic are not what Dexcom takes.
    let basic = Request::post("/v2/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::AUTHORIZATION,
            "Basic Y2dtLWh1Yi1kZW1vOmNnbS1odWItZGVtby1zZWNyZXQ=",
        )
        .body(Body::from("grant_type=refresh_token&refresh_token=x"))
        .expect("request");
    let basic = h.send(basic).await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(basic.json()["error"], "invalid_client");

    let unsupported = h
        .post_form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "password"),
        ])
        .await;
    assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
    assert_eq!(unsupported.json()["error"], "unsupported_grant_type");

    let json_body = Request::post("/v2/oauth2/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let json_body = h.send(json_body).await;
    assert_eq!(json_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(json_body.json()["error"], "invalid_request");
    assert_eq!(h.sim.stats().token_errors, 4);
}

#[tokio::test]
async fn refresh_rotates_and_reusing_the_old_token_revokes_the_family() {
    let h = Harness::new();
    let first = h.connect("SandboxUser6").await;
    let a = h.refresh(&first.refresh).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let second = pair(&a);
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    let now = Utc::now();
    let ok = h
        .egvs("v3", &second.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    let reuse = h.refresh(&first.refresh).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    // Reuse detection: the newest pair of that family is dead too.
    assert_eq!(
        h.refresh(&second.refresh).await.json()["error"],
        "invalid_grant"
    );
    let dead = h
        .egvs("v3", &second.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);
    let stats = h.sim.stats();
    assert_eq!((stats.token_refresh, stats.token_errors), (1, 2));
}

#[tokio::test]
async fn other_connections_survive_a_family_revocation() {
    let h = Harness::new();
    let a = h.connect("SandboxUser6").await;
    let b = h.connect("SandboxUser6").await;
    let rotated = h.refresh(&a.refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_eq!(h.refresh(&a.refresh).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.refresh(&b.refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoked_user_gets_invalid_grant_and_401_until_it_logs_in_again() {
    let h = Harness::new();
    let tokens = h.connect("demo-carol").await;
    let bystander = h.connect("demo-alice").await;
    h.sim.revoke_user("demo-carol");
    let now = Utc::now();
    let data = h
        .egvs("v3", &tokens.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED);
    assert!(data.json()["fault"].is_object());
    assert!(data.headers.contains_key(header::WWW_AUTHENTICATE));
    let refresh = h.refresh(&tokens.refresh).await;
    assert_eq!(refresh.status, StatusCode::BAD_REQUEST);
    assert_eq!(refresh.json()["error"], "invalid_grant");
    let other = h
        .egvs("v3", &bystander.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let again = h.connect("demo-carol").await;
    let data = h
        .egvs("v3", &again.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(data.status, StatusCode::OK);
    assert_eq!(h.sim.stats().unauthorized, 1);
}

#[tokio::test]
async fn expired_access_token_gets_401_and_a_refresh_recovers() {
    let h = Harness::new();
    let tokens = h.connect("demo-alice").await;
    h.sim.expire_access_tokens();
    let now = Utc::now();
    let window = (now - Duration::hours(1), now);
    let expired = h.egvs("v3", &tokens.access, window.0, window.1).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    let fresh = pair(&h.refresh(&tokens.refresh).await);
    let ok = h.egvs("v3", &fresh.access, window.0, window.1).await;
    assert_eq!(ok.status, StatusCode::OK);
    let missing = h.get("/v3/users/self/egvs", None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.sim.stats().unauthorized, 2);
}

#[tokio::test]
async fn access_tokens_expire_after_their_ttl() {
    let h = Harness::with(SimConfig {
        access_token_ttl: std::time::Duration::from_millis(50),
        ..SimConfig::default()
    });
    let tokens = h.connect("demo-alice").await;
    let now = Utc::now();
    let before = h
        .egvs("v3", &tokens.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(before.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    let after = h
        .egvs("v3", &tokens.access, now - Duration::hours(1), now)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

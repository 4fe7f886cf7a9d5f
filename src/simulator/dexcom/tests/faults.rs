//! Fault injection and control-route tests, plus one run over real TCP with
//! reqwest through `spawn`.

use std::time::{Duration as StdDuration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{Duration, Utc};

use super::super::{spawn, Faults, SimStats};
use super::*;

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_exactly_n_times() {
    let h = Harness::new();
    let t = h.connect("demo-alice").await;
    h.sim.set_faults(Faults {
        rate_limit_next: 3,
        retry_after_seconds: 7,
        ..Faults::default()
    });
    let now = Utc::now();
    let uris = [
        "/v3/users/self/dataRange".to_owned(),
        "/v2/users/self/devices".to_owned(),
        format!(
            "/v3/users/self/egvs?startDate={}&endDate={}",
            naive(now - Duration::hours(1)),
            naive(now)
        ),
    ];
    for uri in &uris {
        let a = h.get(uri, Some(&t.access)).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{uri}");
        assert_eq!(
            a.headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        assert!(a.json()["fault"]["faultstring"].is_string());
    }
    for uri in &uris {
        assert_eq!(
            h.get(uri, Some(&t.access)).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    let stats = h.sim.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!((stats.egvs, stats.data_range, stats.devices), (1, 1, 1));
    assert_eq!(h.sim.faults().rate_limit_next, 0);
}

#[tokio::test]
async fn faults_fire_before_the_bearer_check() {
    let h = Harness::new();
    h.sim.set_faults(Faults {
        rate_limit_next: 1,
        server_error_next: 1,
        ..Faults::default()
    });
    let first = h.get("/v3/users/self/devices", None).await;
    assert_eq!(first.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        first.headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..]),
        "default Retry-After"
    );
    let second = h.get("/v3/users/self/devices", None).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    let third = h.get("/v3/users/self/devices", None).await;
    assert_eq!(third.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn server_error_fault_gives_503_n_times_then_data() {
    let h = Harness::new();
    let t = h.connect("demo-bob").await;
    h.sim.set_faults(Faults {
        server_error_next: 2,
        ..Faults::default()
    });
    let now = Utc::now();
    let window = (now - Duration::hours(2), now);
    for _ in 0..2 {
        let a = h.egvs("v3", &t.access, window.0, window.1).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.json()["fault"].is_object());
    }
    let ok = h.egvs("v3", &t.access, window.0, window.1).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(h.sim.stats().server_errors, 2);
}

#[tokio::test]
async fn token_server_error_fault_gives_500_then_recovers() {
    let h = Harness::new();
    let t = h.connect("demo-bob").await;
    h.sim.set_faults(Faults {
        token_server_error_next: 1,
        ..Faults::default()
    });
    let failed = h.refresh(&t.refresh).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.json()["error"], "server_error");
    // The failed call did not consume the refresh token.
    let ok = h.refresh(&t.refresh).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let stats = h.sim.stats();
    assert_eq!(
        (stats.server_errors, stats.token_refresh, stats.token_errors),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn slow_fault_delays_data_calls_only() {
    let h = Harness::new();
    h.sim.set_faults(Faults {
        slow_ms: 150,
        ..Faults::default()
    });
    let clock = Instant::now();
    let t = h.connect("demo-bob").await;
    assert!(
        clock.elapsed() < StdDuration::from_millis(150),
        "OAuth is not slowed"
    );
    let clock = Instant::now();
    let a = h.get("/v3/users/self/devices", Some(&t.access)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(clock.elapsed() >= StdDuration::from_millis(150));
}

#[tokio::test]
async fn control_routes_set_faults_revoke_and_report_stats() {
    let h = Harness::new();
    let put = Request::put("/sim/faults")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"rate_limit_next":1,"slow_ms":5}"#))
        .expect("request");
    let put = h.send(put).await;
    assert_eq!(put.status, StatusCode::OK);
    let want = Faults {
        rate_limit_next: 1,
        slow_ms: 5,
        ..Faults::default()
    };
    assert_eq!(
        serde_json::from_slice::<Faults>(&put.body).ok(),
        Some(want.clone())
    );
    let got = h.get("/sim/faults", None).await;
    assert_eq!(serde_json::from_slice::<Faults>(&got.body).ok(), Some(want));
    assert_eq!(h.sim.faults().rate_limit_next, 1);

    let t = h.connect("SandboxUser7").await;
    let revoke = Request::post("/sim/users/SandboxUser7/revoke")
        .body(Body::empty())
        .expect("request");
    assert_eq!(h.send(revoke).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.refresh(&t.refresh).await.json()["error"], "invalid_grant");

    let t = h.connect("SandboxUser7").await;
    let expire = Request::post("/sim/access-tokens/expire")
        .body(Body::empty())
        .expect("request");
    assert_eq!(h.send(expire).await.status, StatusCode::NO_CONTENT);
    // First call eats the rate limit, the second meets the expired token.
    let limited = h.get("/v3/users/self/devices", Some(&t.access)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let expired = h.get("/v3/users/self/devices", Some(&t.access)).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);

    let stats = h.get("/sim/stats", None).await.json();
    assert_eq!(stats["rate_limited"], 1);
    assert_eq!(stats["unauthorized"], 1);
    assert_eq!(stats["token_authorization_code"], 2);
    assert_eq!(stats["token_errors"], 1);
}

#[tokio::test]
async fn spawn_serves_the_full_flow_over_tcp() {
    let running = spawn(SimConfig::default()).await.expect("spawn");
    let base = running.base_url.clone();
    assert!(base.starts_with("http://127.0.0.1:"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .get(format!("{base}/v2/oauth2/login"))
        .query(&[
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "offline_access"),
            ("state", "xyz"),
            ("sim_user", "SandboxUser7"),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 302);
    let location = login
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Url::parse(v).ok())
        .expect("Location");
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
    let code = query_param(&location, "code").expect("code");
    let token: serde_json::Value = client
        .post(format!("{base}/v2/oauth2/token"))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    let access = token["access_token"].as_str().expect("access_token");
    let now = Utc::now();
    let egvs = client
        .get(format!("{base}/v3/users/self/egvs"))
        .query(&[
            ("startDate", naive(now - Duration::hours(3))),
            ("endDate", naive(now)),
        ])
        .bearer_auth(access)
        .send()
        .await
        .expect("egvs");
    assert_eq!(egvs.status().as_u16(), 200);
    let j: serde_json::Value = egvs.json().await.expect("egvs json");
    assert!(!records(&j).is_empty());
    let stats: SimStats = running.sim.stats();
    assert_eq!(stats.egvs, 1);

    running.shutdown().await.expect("clean shutdown");
    let after = client.get(format!("{base}/sim/stats")).send().await;
    assert!(after.is_err(), "no longer serving");
}

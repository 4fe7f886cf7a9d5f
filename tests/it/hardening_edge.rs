//! The request edge, hardened (docs/security.md): who the client is behind proxies,
//! IPv6 clients per /64, the OAuth cookie's `__Host-` prefix, forged tokens
//! refused before verification, storage errors kept out of bodies, `no-store`
//! on every route, and `/health` asking storage at most once a second.

use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::roles::Role;
use cgm_hub::simulator::dexcom::browser::consent;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

/// A per-IP limited route that needs nothing (without Dexcom it answers 503
/// after the limit is checked).
const ANONYMOUS: &str = "/oauth/callback";

/// The anonymous-tier answer to a request the proxy in front forwarded for `client`.
async fn forwarded_for(app: &TestApp, client: &str) -> u16 {
    app.client
        .get(app.url(ANONYMOUS))
        .header("x-forwarded-for", client)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An app whose anonymous tier allows two requests per client.
async fn behind_proxies(trusted: &str) -> TestApp {
    TestApp::spawn_with(&[
        ("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "2"),
        ("TRUSTED_PROXIES", trusted),
        ("TRUSTED_PROXY_HOPS", "1"),
    ])
    .await
}

#[tokio::test]
async fn trusted_proxies_forwarded_for_is_believed_only_from_a_trusted_peer() {
    // The test client (127.0.0.1) is not one of the proxies: whatever it writes
    // in X-Forwarded-For, it is limited as itself.
    let spoofed = behind_proxies("10.0.0.0/8").await;
    assert_ne!(forwarded_for(&spoofed, "198.51.100.1").await, 429);
    assert_ne!(forwarded_for(&spoofed, "198.51.100.2").await, 429);
    assert_eq!(
        forwarded_for(&spoofed, "198.51.100.3").await,
        429,
        "a new forged address each time does not buy a new allowance"
    );

    // The test client is the proxy: the address it forwards is the client.
    let proxied = behind_proxies("127.0.0.1/32").await;
    assert_ne!(forwarded_for(&proxied, "198.51.100.1").await, 429);
    assert_ne!(forwarded_for(&proxied, "198.51.100.1").await, 429);
    assert_eq!(forwarded_for(&proxied, "198.51.100.1").await, 429);
    assert_ne!(
        forwarded_for(&proxied, "198.51.100.2").await,
        429,
        "another client behind the proxy has its own allowance"
    );
}

#[tokio::test]
async fn ipv6_clients_are_rate_limited_per_64() {
    let app = behind_proxies("127.0.0.1/32").await;
    assert_ne!(forwarded_for(&app, "2001:db8:1:2::1").await, 429);
    assert_ne!(forwarded_for(&app, "2001:db8:1:2::2").await, 429);
    assert_eq!(
        forwarded_for(&app, "2001:db8:1:2:ffff:ffff:ffff:ffff").await,
        429,
        "another address of the same /64 shares its allowance"
    );
    assert_ne!(
        forwarded_for(&app, "2001:db8:1:3::1").await,
        429,
        "the next /64 is another client"
    );

    // An IPv4-mapped IPv6 address is the IPv4 client.
    assert_ne!(forwarded_for(&app, "::ffff:198.51.100.7").await, 429);
    assert_ne!(forwarded_for(&app, "198.51.100.7").await, 429);
    assert_eq!(forwarded_for(&app, "::ffff:198.51.100.7").await, 429);
}

/// The browser's visit to `/oauth/authorize`: the Set-Cookie it got, and where
/// the simulator's consent sends it back (as a path and query on our app).
async fn authorize(app: &TestApp, user_id: &str) -> (String, String) {
    let r = no_redirects()
        .get(app.url(&format!("/oauth/authorize?user_id={user_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let login: url::Url = r.headers()["location"].to_str().unwrap().parse().unwrap();
    let back = consent(&login, user_id)
        .await
        .expect("the simulator consents");
    assert_eq!(back.host_str(), Some("cgm.example.org"));
    let callback = format!("{}?{}", back.path(), back.query().unwrap_or_default());
    (set_cookie, callback)
}

#[tokio::test]
async fn oauth_binding_cookie_has_the_host_prefix_over_https() {
    let sim = simulator().await;
    // The browser comes back over https (a TLS-terminating proxy in front of
    // this app); the callback request itself is sent to the app directly.
    let app = dexcom_app(
        &sim,
        &[(
            "DEXCOM_REDIRECT_URI",
            "https://cgm.example.org/oauth/callback",
        )],
    )
    .await;

    let (set_cookie, callback) = authorize(&app, "alice").await;
    let pair = set_cookie.split(';').next().unwrap();
    assert!(pair.starts_with("__Host-cgm_hub_oauth_"), "{set_cookie}");
    let attributes: Vec<&str> = set_cookie.split(';').skip(1).map(str::trim).collect();
    for wanted in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(attributes.contains(&wanted), "{wanted} in {set_cookie}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "{set_cookie}"
    );
    let done = app
        .client
        .get(app.url(&callback))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "the prefixed cookie completes the flow");
    let cleared = done.headers()["set-cookie"].to_str().unwrap();
    let name = pair.split('=').next().unwrap();
    assert!(
        cleared.starts_with(&format!("{name}=;"))
            && cleared.contains("Max-Age=0")
            && cleared.contains("Secure")
            && cleared.contains("Path=/;"),
        "cleared as set: {cleared}"
    );

    // The same secret under the plain name (as a sibling subdomain or an http
    // page could plant it) does not stand in for the prefixed cookie.
    let (set_cookie, callback) = authorize(&app, "bob").await;
    let planted = set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-")
        .to_owned();
    let r = app
        .client
        .get(app.url(&callback))
        .header("cookie", planted)
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "AUTH_ERROR").await;
}

const SECRET: &str = "edge-test-secret-0123456789abcdef";

fn token(secret: &str, sub: &str) -> String {
    mint_hs256(
        secret,
        sub,
        &[Role::Patient],
        Duration::from_secs(3600),
        None,
        None,
    )
    .unwrap()
}

async fn latest_with(app: &TestApp, user: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/bg/{user}/latest")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forged_tokens_are_rate_limited_before_verification() {
    let app = TestApp::spawn_with(&[
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "3"),
    ])
    .await;
    // Alice's app has used its token before (so it was verified once).
    let alice = token(SECRET, "alice");
    expect_error(
        latest_with(&app, "alice", &alice).await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;

    // A flood of forged tokens from the same address: the anonymous allowance
    // (3) is spent on failed verifications, then they are refused.
    let forged = token("not-the-secret-0123456789abcdef!!", "alice");
    for _ in 0..3 {
        expect_error(latest_with(&app, "alice", &forged).await, 401, "AUTH_ERROR").await;
    }
    let r = latest_with(&app, "alice", &forged).await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;

    // A token never seen before is refused without being verified: a valid
    // one would otherwise have been let through (404, no reading yet).
    let r = latest_with(&app, "bob", &token(SECRET, "bob")).await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, 429, "RATE_LIMIT_EXCEEDED").await;

    // Alice's verified token costs no verification and counts against her own
    // allowance, which the forgeries in her name did not touch.
    let r = latest_with(&app, "alice", &alice).await;
    assert_eq!(r.headers()["x-ratelimit-limit"], "10000000");
    expect_error(r, 404, "RESOURCE_NOT_FOUND").await;
}

/// Words of PostgreSQL's and its driver's that must not reach a client (`/health`
/// names the backend, "postgres", on purpose).
fn assert_no_store_text(body: &str, also: &[&str]) {
    for word in [
        "127.0.0.1",
        "5432",
        "PostgreSQL",
        "database",
        "error returned",
        "lock",
    ]
    .iter()
    .chain(also)
    {
        assert!(!body.contains(word), "{word:?} in {body}");
    }
}

#[tokio::test]
async fn store_errors_stay_out_of_503_bodies() {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    // The app's sessions give up on a lock after 100 ms.
    let url = format!(
        "{}?options=-c%20search_path%3D{}%20-c%20lock_timeout%3D100",
        schema.url, schema.name
    );
    let app = TestApp::spawn_with(&[("STORAGE_BACKEND", "postgres"), ("DATABASE_URL", &url)]).await;
    let mut conn = schema.connection().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE readings, latest_readings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .expect("lock the readings");

    let r = app.get("/api/bg/alice/latest").await;
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert_no_store_text(&body, &[&schema.name, "postgres"]);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(body["error"]["details"]["request_id"], request_id.as_str());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&request_id),
        "{body}"
    );
}

/// A PostgreSQL database of one test's own, dropped (with its sessions) at the end.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> Self {
        use sqlx::Connection;
        // As PgSchema's: TEST_DATABASE_URL, or the local server.
        let admin_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("h_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        Self { admin_url, name }
    }

    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).unwrap();
        url.set_path(&self.name);
        url.to_string()
    }

    /// Ends every session on the database and refuses new ones.
    async fn refuse_connections(&self) {
        use sqlx::Connection;
        let admin = |sql: String| {
            let url = self.admin_url.clone();
            async move {
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn
            }
        };
        admin(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
            self.name
        ))
        .await;
        // A session that was being opened as the ALTER committed survives one round of
        // terminations: end them until none is left (new ones are refused now).
        eventually(
            "no session of the database is left",
            Duration::from_secs(30),
            || {
                let sql = format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                    self.name
                );
                let count = format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
                    self.name
                );
                let admin = &admin;
                async move {
                    let mut conn = admin(sql).await;
                    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                    left == 0
                }
            },
        )
        .await;
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = sql_while_dropping(&self.admin_url, drop) {
            eprintln!("test database {} left behind: {e}", self.name);
        }
    }
}

#[tokio::test]
async fn health_keeps_store_errors_out_of_its_body() {
    let database = PgDatabase::create().await;
    let url = database.url();
    let app = TestApp::spawn_with(&[("STORAGE_BACKEND", "postgres"), ("DATABASE_URL", &url)]).await;
    assert_eq!(app.get("/health").await.status(), 200);

    database.refuse_connections().await;
    // The answer of the check before may be served for up to a second more.
    let failed = std::sync::Mutex::new(None);
    let (app, seen) = (&app, &failed);
    eventually(
        "/health reports the storage failure",
        Duration::from_secs(10),
        move || async move {
            let r = app.get("/health").await;
            if r.status() != 503 {
                return false;
            }
            let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
            *seen.lock().unwrap() = Some((id, cache, r.text().await.unwrap()));
            true
        },
    )
    .await;
    let (request_id, cache_control, body) = failed.into_inner().unwrap().unwrap();
    assert_eq!(cache_control, "no-store");
    assert_no_store_text(&body, &[&database.name, "accepting connections"]);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["checks"]["storage"]["status"], "error");
    assert_eq!(body["request_id"], request_id.as_str());
}

#[tokio::test]
async fn health_checks_storage_at_most_once_a_second() {
    let dir = TempDir::new().unwrap();
    let client = reqwest::Client::new();
    // A process of its own, so that the metric counts this app's checks only.
    let app = Binary::start_healthy(&dir.path().join("app.db"), &client).await;
    let checks = |metrics: &str| {
        metric(metrics, "health_storage_checks_total").expect("the checks are counted")
    };
    let before = checks(&scrape(&client, &app.base).await);

    let url = format!("{}/health", app.base);
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..200).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    }))
    .await;
    let took = started.elapsed();
    for status in answers {
        assert_eq!(status.unwrap(), 200);
    }

    // What the cache guarantees: one check at a time, each answer reused for a second
    // after it, so at most one check per started second of the burst. Without the
    // cache this would be 200; a slow, loaded machine only widens the bound a little.
    let ran = checks(&scrape(&client, &app.base).await) - before;
    let bound = took.as_secs_f64().ceil() + 1.0;
    assert!(
        ran <= bound,
        "{ran} storage checks for 200 requests in {took:?} (at most {bound})"
    );
}

/// A concrete path of a route template.
fn concrete(path: &str) -> String {
    path.replace("{user_id}", "alice")
        .replace("{job_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{provider}", "dexcom")
        .replace("{grantee_id}", "bob")
}

#[tokio::test]
async fn every_route_answers_no_store() {
    let app = TestApp::spawn().await;
    let routes = cgm_hub::api::route_table();
    assert!(routes.len() > 10);
    for route in routes {
        let path = concrete(route.path);
        let mut request = app.client.request(route.method.clone(), app.url(&path));
        if route.method == Method::POST {
            request = request.json(&json!({}));
        }
        let r = request.send().await.unwrap();
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{} {path} answered {}",
            route.method,
            r.status()
        );
    }

    // Refusals too: no token, and over the limit.
    let app = TestApp::spawn_with(&[
        ("AUTH_DISABLED", "false"),
        ("AUTH_JWT_SECRET", SECRET),
        ("RATE_LIMIT_ANONYMOUS_PER_MINUTE", "1"),
    ])
    .await;
    for status in [401, 429] {
        let r = app.get("/api/bg/alice/latest").await;
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
}

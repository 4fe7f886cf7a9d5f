//! Tests of the Dexcom simulator through its router (and one over TCP), as a
//! client would see it. Shared helpers live here.

mod data;
mod faults;
mod oauth;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tower::ServiceExt;
use url::Url;

use super::{DexcomSimulator, SimConfig};

pub(super) const CLIENT_ID: &str = "cgm-hub-demo";
pub(super) const SECRET: &str = "cgm-hub-demo-secret";
pub(super) const REDIRECT: &str = "http://localhost:8080/oauth/dexcom/callback";

/// A simulator and its router.
pub(super) struct Harness {
    pub(super) sim: DexcomSimulator,
    pub(super) app: Router,
}

/// A token pair from the token endpoint.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) access: String,
    pub(super) refresh: String,
}

/// An answer: status, headers, body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(super) fn location(&self) -> Url {
        let raw = self
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{}: no Location: {}", self.status, self.text()));
        Url::parse(raw).expect("Location is a URL")
    }
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with(SimConfig::default())
    }

    pub(super) fn with(config: SimConfig) -> Self {
        let sim = DexcomSimulator::new(config);
        let app = sim.router();
        Self { sim, app }
    }

    pub(super) async fn send(&self, req: Request<Body>) -> Answer {
        let response = self
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub(super) async fn get(&self, uri: &str, token: Option<&str>) -> Answer {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(Body::empty()).expect("request")).await
    }

    pub(super) async fn post_form(&self, pairs: &[(&str, &str)]) -> Answer {
        let body = serde_urlencoded::to_string(pairs).expect("form");
        let req = Request::post("/v2/oauth2/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        self.send(req).await
    }

    /// The login URL with the standard parameters plus `extra`.
    pub(super) fn login_uri(extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "offline_access"),
            ("state", "st-1"),
        ];
        pairs.extend_from_slice(extra);
        format!(
            "/v2/oauth2/login?{}",
            serde_urlencoded::to_string(pairs).expect("query")
        )
    }

    /// Auto-consents as `user` and returns the code from the redirect.
    pub(super) async fn code(&self, user: &str, extra: &[(&str, &str)]) -> String {
        let mut all = vec![("sim_user", user)];
        all.extend_from_slice(extra);
        let a = self.get(&Self::login_uri(&all), None).await;
        assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
        query_param(&a.location(), "code").expect("code in redirect")
    }

    pub(super) async fn exchange(&self, code: &str, verifier: Option<&str>) -> Answer {
        let mut form = vec![
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.post_form(&form).await
    }

    pub(super) async fn refresh(&self, refresh_token: &str) -> Answer {
        self.post_form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("redirect_uri", REDIRECT),
        ])
        .await
    }

    /// Login, consent and code exchange for `user`.
    pub(super) async fn connect(&self, user: &str) -> Pair {
        let code = self.code(user, &[]).await;
        let a = self.exchange(&code, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        pair(&a)
    }

    /// `GET /{version}/users/self/egvs` for [start, end].
    pub(super) async fn egvs(
        &self,
        version: &str,
        token: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Answer {
        let uri = format!(
            "/{version}/users/self/egvs?startDate={}&endDate={}",
            naive(start),
            naive(end)
        );
        self.get(&uri, Some(token)).await
    }
}

/// The tokens of a successful token response.
pub(super) fn pair(a: &Answer) -> Pair {
    let j = a.json();
    let s = |k: &str| {
        j[k].as_str()
            .unwrap_or_else(|| panic!("no {k}: {j}"))
            .to_owned()
    };
    Pair {
        access: s("access_token"),
        refresh: s("refresh_token"),
    }
}

pub(super) fn query_param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Dexcom's query format, `YYYY-MM-DDThh:mm:ss` (UTC, no offset).
pub(super) fn naive(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The `records` of a v3 egvs body.
pub(super) fn records(j: &Value) -> &Vec<Value> {
    j["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {j}"))
}

/// `systemTime` of a record as an instant (with or without offset).
pub(super) fn system_time(record: &Value) -> DateTime<Utc> {
    let s = record["systemTime"].as_str().expect("systemTime");
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc())
        })
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

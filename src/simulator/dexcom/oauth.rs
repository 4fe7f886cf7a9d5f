//! Dexcom's OAuth 2 endpoints: the login/consent page (`/v2/oauth2/login`,
//! with a sandbox-style user picker and auto-consent) and `/v2/oauth2/token`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use url::Url;

use super::reply::{escape_html, html, json_value, no_store, oauth_error};
use super::stats::Counter;
use super::tokens::{CodeGrant, CodeRedemption, Issued};
use super::users::{picker_names, valid_name};
use super::DexcomSimulator;

/// `GET /v2/oauth2/login`: validates the authorization request, then
///
/// - with `sim_consent=deny`: redirects with `error=access_denied`;
/// - with `sim_user=NAME`: consents at once and redirects with a code;
/// - otherwise: shows a picker page linking to both choices.
///
/// Any `redirect_uri` that is an absolute http(s) URL is accepted (there is
/// no registration); PKCE is optional but, if used, must be S256. Invalid
/// requests get a 400 page and no redirect, as an authorization server must
/// not redirect to an unvalidated URI.
pub(super) async fn login(State(sim): State<DexcomSimulator>, RawQuery(raw): RawQuery) -> Response {
    sim.bump(Counter::Login);
    let raw = raw.unwrap_or_default();
    let params: HashMap<String, String> = match serde_urlencoded::from_str(&raw) {
        Ok(p) => p,
        Err(_) => return bad_login("The query string is not valid URL encoding."),
    };
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("client_id") != Some(sim.inner.config.client_id.as_str()) {
        return bad_login("Unknown client_id.");
    }
    let Some(redirect) = get("redirect_uri")
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
    else {
        return bad_login("redirect_uri must be an absolute http(s) URL.");
    };
    if get("response_type") != Some("code") {
        return bad_login("response_type must be code.");
    }
    if !get("scope").is_some_and(|s| s.split_whitespace().any(|x| x == "offline_access")) {
        return bad_login("scope must include offline_access.");
    }
    let challenge = get("code_challenge");
    if let Some(c) = challenge {
        if get("code_challenge_method") != Some("S256") || !valid_challenge(c) {
            return bad_login(
                "code_challenge must be 43 base64url characters with code_challenge_method=S256.",
            );
        }
    }
    let state = get("state");
    if get("sim_consent") == Some("deny") {
        return redirect_with(
            redirect,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied access."),
            ],
            state,
        );
    }
    let Some(sim_user) = get("sim_user") else {
        return picker(&raw);
    };
    if !valid_name(sim_user) {
        return bad_login("sim_user must be 1-64 characters of A-Z, a-z, 0-9, _ and -.");
    }
    let code = sim.tokens().issue_code(CodeGrant {
        client_id: sim.inner.config.client_id.clone(),
        redirect_uri: get("redirect_uri").unwrap_or_default().to_owned(),
        sim_user: sim_user.to_owned(),
        challenge: challenge.map(str::to_owned),
    });
    redirect_with(redirect, &[("code", &code)], state)
}

/// `POST /v2/oauth2/token` (form-encoded; client credentials as form fields).
pub(super) async fn token(
    State(sim): State<DexcomSimulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sim.inner.faults.take_token_fault() {
        sim.bump(Counter::ServerErrors);
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Simulated token endpoint failure.",
        );
    }
    let result = grant(&sim, &headers, &body);
    // Counted (and granted) now; answered after the simulated slowness.
    let counter = match &result {
        Ok((_, counter)) => *counter,
        Err(_) => Counter::TokenErrors,
    };
    sim.bump(counter);
    let delay = sim.inner.faults.token_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match result {
        Ok((issued, _)) => {
            let mut response = json_value(
                StatusCode::OK,
                &json!({
                    "access_token": issued.access_token,
                    "expires_in": sim.inner.config.access_token_ttl.as_secs(),
                    "token_type": "Bearer",
                    "refresh_token": issued.refresh_token,
                }),
            );
            no_store(&mut response);
            response
        }
        Err(e) => oauth_error(e.status, e.error, e.description),
    }
}

/// A token-endpoint refusal (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy)]
struct TokenError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
}

impl TokenError {
    fn invalid_request(description: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description,
        }
    }

    fn invalid_grant(description: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant",
            description,
        }
    }
}

/// Checks the request and performs the grant.
fn grant(
    sim: &DexcomSimulator,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Issued, Counter), TokenError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(TokenError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded.",
        ));
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body)
        .map_err(|_| TokenError::invalid_request("The body is not valid form encoding."))?;
    let get = |k: &str| form.get(k).map(String::as_str);
    let config = &sim.inner.config;
    if get("client_id") != Some(config.client_id.as_str())
        || get("client_secret") != Some(config.client_secret.as_str())
    {
        return Err(TokenError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "Unknown client or wrong client_secret (send both as form fields).",
        });
    }
    match get("grant_type") {
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                return Err(TokenError::invalid_request(
                    "code and redirect_uri are required.",
                ));
            };
            sim.tokens()
                .redeem_code(CodeRedemption {
                    code,
                    client_id: &config.client_id,
                    redirect_uri,
                    code_verifier: get("code_verifier"),
                })
                .map(|issued| (issued, Counter::TokenAuthorizationCode))
                .map_err(TokenError::invalid_grant)
        }
        Some("refresh_token") => {
            let Some(refresh_token) = get("refresh_token") else {
                return Err(TokenError::invalid_request("refresh_token is required."));
            };
            sim.tokens()
                .refresh(refresh_token)
                .map(|issued| (issued, Counter::TokenRefresh))
                .map_err(TokenError::invalid_grant)
        }
        Some(_) => Err(TokenError {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: "grant_type must be authorization_code or refresh_token.",
        }),
        None => Err(TokenError::invalid_request("grant_type is required.")),
    }
}

/// RFC 7636: an S256 challenge is 43 base64url characters.
fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 302 to `redirect` with `pairs` and `state` appended to its existing query.
fn redirect_with(mut redirect: Url, pairs: &[(&str, &str)], state: Option<&str>) -> Response {
    {
        let mut query = redirect.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(s) = state {
            query.append_pair("state", s);
        }
    }
    match HeaderValue::from_str(redirect.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => bad_login("redirect_uri cannot be used in a Location header."),
    }
}

/// The sandbox-style picker: one link per simulated user, plus "Deny".
fn picker(raw_query: &str) -> Response {
    let link = |extra: &str, label: &str| {
        format!(
            "<li><a href=\"{}\">{}</a></li>\n",
            escape_html(&format!("?{raw_query}&{extra}")),
            escape_html(label)
        )
    };
    let mut items = String::new();
    for name in picker_names() {
        let extra = serde_urlencoded::to_string([("sim_user", name.as_str())]).unwrap_or_default();
        items.push_str(&link(&extra, &name));
    }
    items.push_str(&link("sim_consent=deny", "Deny"));
    html(
        StatusCode::OK,
        "Dexcom simulator: choose a sandbox user",
        &format!(
            "<p>Pick the account that authorizes this application (no password needed).</p>\n<ul>\n{items}</ul>"
        ),
    )
}

fn bad_login(why: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "Dexcom simulator: invalid authorization request",
        &format!("<p>{}</p>", escape_html(why)),
    )
}

//! The OAuth endpoints: `/oauth/authorize` (redirect to Dexcom's login),
//! `/oauth/callback` (authenticated by its single-use state, since the browser
//! returning from Dexcom carries no bearer token) and `/oauth/refresh`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{self, Caller};
use super::body::RawBody;
use super::connections::ConnectionView;
use super::error::{json_body, query_params, ApiError, ErrorEnvelope};
use super::views::success;
use super::AppState;
use crate::auth::policy::Action;
use crate::domain::{FieldError, UserId};
use crate::sources::dexcom::oauth::STATE_TTL;
use crate::sources::dexcom::service::{browser_cookie_name, Callback, ConnectError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeQuery {
    user_id: Option<String>,
}

fn parse_user(raw: Option<&str>) -> Result<UserId, ApiError> {
    let raw = raw.ok_or_else(|| {
        let e = FieldError::new("user_id", "is required");
        ApiError::bad_request(e.to_string(), vec![e])
    })?;
    UserId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string(), vec![e]))
}

/// Starts connecting a user's Dexcom account: 302 to Dexcom's login.
#[utoipa::path(
    get, path = "/oauth/authorize", tag = "connections",
    params(("user_id" = String, Query, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 302, description = "To Dexcom's login with client_id, redirect_uri, response_type=code, scope=offline_access, state and a PKCE S256 challenge; sets the cookie that the callback must come back with"),
        (status = 400, description = "Missing or invalid user_id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 503, description = "Dexcom is not configured", body = ErrorEnvelope),
    )
)]
pub async fn authorize(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q: AuthorizeQuery = query_params(query.as_deref())?;
    let user = parse_user(q.user_id.as_deref())?;
    // A user connects only their own account (or an admin, anyone's).
    access::authorize(&state, &caller, Action::ManageConnections, &user).await?;
    let dexcom = state.dexcom()?;
    let started = dexcom.begin(&user).await?;
    // Ties the callback to this browser; Lax so that it rides along on the
    // top-level redirect back from Dexcom; scoped to the redirect URI's path
    // (which a proxy may prefix).
    let redirect = dexcom.redirect_uri();
    let cookie = format!(
        "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        started.cookie_name,
        started.browser_secret.expose(),
        redirect.path(),
        STATE_TTL.as_secs(),
        if redirect.scheme() == "https" {
            "; Secure"
        } else {
            ""
        }
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, started.login_url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// The value of the cookie named `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Connected {
    #[schema(example = "user123")]
    pub user_id: String,
    pub connection: ConnectionView,
    /// The initial history fetch that was queued.
    pub backfill: BackfillView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillView {
    #[schema(example = "queued")]
    pub status: &'static str,
    #[schema(example = 30)]
    pub days: u32,
}

/// Where Dexcom sends the browser back. Unknown query parameters are ignored
/// here (the provider decides what it appends).
#[utoipa::path(
    get, path = "/oauth/callback", tag = "connections", security(()),
    params(("code" = Option<String>, Query), ("state" = String, Query),
           ("error" = Option<String>, Query, description = "e.g. access_denied")),
    responses(
        (status = 200, description = "Connected; the initial backfill is queued", body = super::docs::ConnectedEnvelope),
        (status = 401, description = "Unknown, used or expired state, a browser other than the one that started, or a refused code", body = ErrorEnvelope),
        (status = 403, description = "The user denied access at Dexcom", body = ErrorEnvelope),
        (status = 502, description = "Dexcom's token endpoint failed", body = ErrorEnvelope),
        (status = 503, description = "Dexcom is not configured", body = ErrorEnvelope),
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q: CallbackQuery = query_params(query.as_deref())?;
    let dexcom = state.dexcom()?;
    let cookie_name = q.state.as_deref().map(browser_cookie_name);
    let browser = cookie_name.as_deref().and_then(|n| cookie(&headers, n));
    let completion = dexcom
        .complete(Callback {
            state: q.state,
            code: q.code,
            error: q.error,
            error_description: q.error_description,
            browser,
        })
        .await?;
    // A callback from a browser that did not start the flow is someone else's
    // (perhaps an attacker's): it is logged and counted, but not put on the
    // user's trail as the user's own act.
    let audited = !matches!(completion.outcome, Err(ConnectError::OtherBrowser));
    let allowed = completion.outcome.is_ok();
    let response = match completion.outcome {
        Ok(connection) => {
            let body = success(Connected {
                user_id: connection.user_id.to_string(),
                connection: ConnectionView::from(&connection),
                backfill: BackfillView {
                    status: "queued",
                    days: dexcom.backfill_days(),
                },
            });
            // The cookie has done its job.
            let clear = format!(
                "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
                cookie_name.unwrap_or_default(),
                dexcom.redirect_uri().path()
            );
            (
                [
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (header::SET_COOKIE, clear),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    };
    // A connection change on the user's trail. The actor is the user who started
    // the flow (the state and browser cookie stand in for their token); a state
    // that names nobody changed nothing and is only logged.
    if audited {
        access::record_state_bound(
            &state,
            &completion.user,
            Action::ManageConnections,
            allowed,
            &headers,
            response.status(),
        )
        .await;
    }
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    #[schema(example = "user123", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: String,
}

/// The connection after `POST /oauth/refresh`.
#[derive(Serialize, ToSchema)]
pub struct RefreshView {
    #[serde(flatten)]
    pub connection: ConnectionView,
    /// false: the token was fresh (more than its refresh margin, 5 minutes for
    /// Dexcom's tokens, from expiry), so no token call was made and
    /// `access_token_expires_at` is the current token's.
    pub refreshed: bool,
}

/// Refreshes a user's Dexcom token, unless it is still fresh.
#[utoipa::path(
    post, path = "/oauth/refresh", tag = "connections",
    request_body = RefreshInput,
    responses(
        (status = 200, description = "Refreshed, or not needed (`refreshed: false`: the token is fresh, no call to Dexcom); the connection as it is now", body = super::docs::RefreshEnvelope),
        (status = 400, description = "Invalid body", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 404, description = "No Dexcom connection", body = ErrorEnvelope),
        (status = 409, description = "Revoked at Dexcom: the user must reconnect", body = ErrorEnvelope),
        (status = 502, description = "Dexcom's token endpoint failed", body = ErrorEnvelope),
        (status = 503, description = "Dexcom is not configured, or another instance is refreshing", body = ErrorEnvelope),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let input: RefreshInput = json_body(&body)?;
    let user = parse_user(Some(&input.user_id))?;
    access::authorize(&state, &caller, Action::ManageConnections, &user).await?;
    let (connection, refreshed) = state.dexcom()?.refresh_if_due(&user).await?;
    Ok(success(RefreshView {
        connection: ConnectionView::from(&connection),
        refreshed,
    })
    .into_response())
}

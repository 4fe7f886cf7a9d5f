//! The OAuth endpoints: `/oauth/authorize` (redirect to the provider's login),
//! `/oauth/callback` (authenticated by its single-use state, since the browser
//! returning from the provider carries no bearer token) and `/oauth/refresh`.
//! Each takes an optional `provider` (default `dexcom`, so the contract's
//! paths keep working unchanged).

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
use crate::config::MAX_OAUTH_STATE_TTL as STATE_TTL;
use crate::domain::{FieldError, UserId};
use crate::records::audit::Action;
use crate::records::connections::Provider;
use crate::sources::connect::ConnectFault;
use crate::sources::dexcom::service::{browser_cookie_name, Callback, ConnectError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeQuery {
    user_id: Option<String>,
    provider: Option<String>,
}

/// The `provider` a request names; Dexcom when it names none.
pub(super) fn parse_provider(raw: Option<&str>) -> Result<Provider, ApiError> {
    match raw {
        None => Ok(Provider::Dexcom),
        Some(raw) => Provider::parse(raw).ok_or_else(|| {
            let e = FieldError::new("provider", "unknown provider");
            ApiError::bad_request(e.to_string(), vec![e])
        }),
    }
}

fn parse_user(raw: Option<&str>) -> Result<UserId, ApiError> {
    let raw = raw.ok_or_else(|| {
        let e = FieldError::new("user_id", "is required");
        ApiError::bad_request(e.to_string(), vec![e])
    })?;
    UserId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string(), vec![e]))
}

/// Starts connecting a user's account at a provider (Dexcom by default): 302
/// to its login.
#[utoipa::path(
    get, path = "/oauth/authorize", tag = "connections",
    params(("user_id" = String, Query, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("provider" = Option<String>, Query, description = "dexcom (the default)")),
    responses(
        (status = 302, description = "To Dexcom's login with client_id, redirect_uri, response_type=code, scope=offline_access, state and a PKCE S256 challenge; sets the cookie that the callback must come back with"),
        (status = 400, description = "Missing or invalid user_id, or an unknown provider", body = ErrorEnvelope),
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
    let provider = parse_provider(q.provider.as_deref())?;
    let started = start_connect(&state, &caller, &user, provider).await?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, started.login_url),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::SET_COOKIE, started.cookie),
        ],
    )
        .into_response())
}

/// A connection begun: where to send the browser, and the Set-Cookie value
/// that the browser must carry back to the callback.
pub struct ConnectStart {
    pub login_url: String,
    pub cookie: String,
}

/// Begins connecting `user`'s account at `provider`, if `caller` may (a user
/// connects only their own account, an admin anyone's): the login URL and the
/// cookie that ties the callback to the browser given it.
pub async fn start_connect(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    provider: Provider,
) -> Result<ConnectStart, ApiError> {
    access::authorize(state, caller, Action::ManageConnections, user).await?;
    let connector = state.connector(provider)?;
    let started = connector.begin(user).await?;
    // Ties the callback to this browser; Lax so that it rides along on the
    // top-level redirect back from the provider.
    let cookie = BrowserCookie::new(connector.redirect_uri(), &started.cookie_name)
        .set(started.browser_secret.expose(), STATE_TTL.as_secs());
    Ok(ConnectStart {
        login_url: started.login_url.to_string(),
        cookie,
    })
}

/// The cookie that ties a sign-in to the browser that started it. When the
/// browser comes back over https it is `__Host-` prefixed, hence `Secure`,
/// `Path=/` and without `Domain`: browsers then take it only from this very
/// host over https, so a sibling subdomain or a plain-http page cannot plant or
/// shadow it. Over http (development, the demo) browsers drop `Secure` cookies:
/// there it has the plain name, scoped to the redirect URI's path.
struct BrowserCookie<'a> {
    name: String,
    path: &'a str,
    secure: bool,
}

impl<'a> BrowserCookie<'a> {
    /// The cookie named `base` (one per sign-in) for the flow that comes back to `redirect`.
    fn new(redirect: &'a url::Url, base: &str) -> Self {
        if redirect.scheme() == "https" {
            Self {
                name: format!("__Host-{base}"),
                path: "/",
                secure: true,
            }
        } else {
            Self {
                name: base.to_owned(),
                path: redirect.path(),
                secure: false,
            }
        }
    }

    /// The Set-Cookie value giving it `value` for `max_age` seconds (0: delete).
    fn set(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            self.name,
            self.path,
            if self.secure { "; Secure" } else { "" }
        )
    }
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
    /// Set in a provider's redirect URI when it is not Dexcom.
    provider: Option<String>,
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

/// Where the provider (Dexcom by default) sends the browser back. Unknown
/// query parameters are ignored here (the provider decides what it appends).
#[utoipa::path(
    get, path = "/oauth/callback", tag = "connections", security(()),
    params(("code" = Option<String>, Query), ("state" = String, Query),
           ("error" = Option<String>, Query, description = "e.g. access_denied"),
           ("provider" = Option<String>, Query, description = "dexcom (the default); part of a provider's redirect URI")),
    responses(
        (status = 200, description = "Connected; the initial backfill is queued", body = super::docs::ConnectedEnvelope),
        (status = 400, description = "An unknown provider", body = ErrorEnvelope),
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
    let connector = state.connector(parse_provider(q.provider.as_deref())?)?;
    let browser_cookie = q
        .state
        .as_deref()
        .map(|state| BrowserCookie::new(connector.redirect_uri(), &browser_cookie_name(state)));
    let browser = browser_cookie
        .as_ref()
        .and_then(|c| cookie(&headers, &c.name));
    let completion = connector
        .complete(Callback {
            state: q.state,
            code: q.code,
            error: q.error,
            error_description: q.error_description,
            browser,
        })
        .await
        .map_err(ConnectFault::from)?;
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
                    days: connector.backfill_days(),
                },
            });
            // The cookie has done its job.
            let clear = browser_cookie.map(|c| c.set("", 0)).unwrap_or_default();
            (
                [
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (header::SET_COOKIE, clear),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => ApiError::from(ConnectFault::from(e)).into_response(),
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
    /// dexcom (the default)
    #[schema(example = "dexcom")]
    pub provider: Option<String>,
}

/// The connection after `POST /oauth/refresh`.
#[derive(Serialize, ToSchema)]
pub struct RefreshView {
    #[serde(flatten)]
    pub connection: ConnectionView,
    /// false: this user's token was refreshed less than
    /// OAUTH_REFRESH_MIN_INTERVAL_SECONDS (60) ago, so no token call was made and
    /// `access_token_expires_at` is that refresh's.
    pub refreshed: bool,
}

/// Refreshes a user's token at a provider (Dexcom by default) now, unless it
/// was refreshed moments ago.
#[utoipa::path(
    post, path = "/oauth/refresh", tag = "connections",
    request_body = RefreshInput,
    responses(
        (status = 200, description = "Refreshed, or refreshed less than OAUTH_REFRESH_MIN_INTERVAL_SECONDS ago (`refreshed: false`, no call to Dexcom); the connection as it is now", body = super::docs::RefreshEnvelope),
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
    let provider = parse_provider(input.provider.as_deref())?;
    access::authorize(&state, &caller, Action::ManageConnections, &user).await?;
    let connector = state.connector(provider)?;
    let (connection, refreshed) = if state.recent_refreshes.was_refreshed(&user, provider) {
        let connection = connector.current_connection(&user).await;
        (connection.map_err(ConnectFault::from)?, false)
    } else {
        let connection = connector
            .refresh_now(&user)
            .await
            .map_err(ConnectFault::from)?;
        state.recent_refreshes.record(&user, provider);
        (connection, true)
    };
    Ok(success(RefreshView {
        connection: ConnectionView::from(&connection),
        refreshed,
    })
    .into_response())
}

/// The (user, provider) tokens this process refreshed on request lately. The contract's
/// `POST /oauth/refresh` refreshes now; a second request moments later is answered with
/// the token just obtained, so a client in a loop costs one token call a minute, not one
/// per request. Only successful refreshes count: after a failure the next request calls
/// again (the circuit breaker guards Dexcom). Per process, like the rate limits.
pub struct RecentRefreshes {
    within: std::time::Duration,
    at: std::sync::Mutex<std::collections::HashMap<(UserId, Provider), std::time::Instant>>,
}

impl RecentRefreshes {
    pub fn new(within: std::time::Duration) -> Self {
        Self {
            within,
            at: Default::default(),
        }
    }

    fn was_refreshed(&self, user: &UserId, provider: Provider) -> bool {
        let at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        at.get(&(user.clone(), provider))
            .is_some_and(|t| t.elapsed() < self.within)
    }

    fn record(&self, user: &UserId, provider: Provider) {
        if self.within.is_zero() {
            return;
        }
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the old ones as we go: the map holds at most the users refreshed
        // within the interval (bounded by the per-user rate limit).
        at.retain(|_, t| t.elapsed() < self.within);
        at.insert((user.clone(), provider), std::time::Instant::now());
    }
}

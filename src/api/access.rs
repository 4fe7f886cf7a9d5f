//! Authentication and authorization at the HTTP edge: the middleware that turns
//! a bearer token into a `Principal`, the `Caller` extractor, and `authorize`,
//! which every data handler calls with its action and whose data it touches.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::IntoResponse;
use chrono::Utc;

use super::error::ApiError;
use super::rate_limit::Tier;
use super::AppContext;
use super::AppState;
use crate::auth::policy::{self, Basis};
use crate::auth::Principal;
use crate::domain::UserId;
use crate::records::audit::Action;
use crate::records::audit::AuditEntry;
use crate::records::roles::{Role, Roles};

/// The user every request acts as with AUTH_DISABLED (development only).
pub const DEV_ADMIN: &str = "dev-admin";

/// Authenticates the request (401 AUTH_ERROR if it cannot be), counts it
/// against its rate limit (per user; per client IP while unauthenticated, so
/// guessing tokens is limited too), and leaves the principal for `Caller`.
///
/// A token verified before is answered from the verifier's cache. Any other
/// token costs a signature check, so first the client's IP is asked whether its
/// failed authentications have used up its anonymous allowance: if so, 429
/// without verifying (docs/rate-limits.md). No claim of an unverified token is
/// read for this, so no one can spend another user's allowance.
pub async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    // One clock read: the token's expiry is checked against it and the audit
    // entry is stamped with it.
    let now = Utc::now();
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let cached = if state.auth_disabled {
        Some(dev_admin())
    } else {
        state
            .authenticator
            .cached_header_at(header, now.timestamp())
    };
    let (authenticated, verdict) = match cached {
        Some(principal) => {
            let verdict = state.rate_limits.check_user(&principal.user_id);
            (Ok(principal), verdict)
        }
        None => {
            let ip = client_ip(&state, &request);
            if let Some(verdict) = state.rate_limits.refused_before_verification(ip) {
                let mut response = ApiError::RateLimited {
                    retry_after: verdict.retry_after.unwrap_or(1),
                }
                .into_response();
                verdict.apply(response.headers_mut());
                return response;
            }
            let authenticated = state
                .authenticator
                .authenticate_header_at(header, now.timestamp())
                .await;
            let verdict = match &authenticated {
                Ok(p) => state.rate_limits.check_user(&p.user_id),
                Err(_) => state.rate_limits.check_failed_auth(ip),
            };
            (authenticated, verdict)
        }
    };
    run_authenticated(
        &state,
        now,
        authenticated.map_err(|e| e.to_string()),
        verdict,
        request,
        next,
    )
    .await
}

/// The rest of an authentication: 429 over the limit, 401 with `authenticated`'s
/// reason, or the request run with its principal (and its audit entry written).
async fn run_authenticated(
    state: &AppContext,
    now: chrono::DateTime<Utc>,
    authenticated: Result<Arc<Principal>, String>,
    verdict: super::rate_limit::Verdict,
    request: Request,
    next: Next,
) -> axum::response::Response {
    // Tokens of a disabled built-in account are refused like a bad token.
    let authenticated = match authenticated {
        Ok(p) if verdict.allowed() && state.accounts.refuses_access(&p.user_id).await => {
            Err("the token is not valid (revoked)".to_owned())
        }
        other => other,
    };
    let mut response = match authenticated {
        _ if !verdict.allowed() => ApiError::RateLimited {
            retry_after: verdict.retry_after.unwrap_or(1),
        }
        .into_response(),
        Err(e) => ApiError::Unauthorized(e).into_response(),
        Ok(principal) => {
            let request_id = request_id(request.headers());
            let access = RequestAccess {
                principal,
                decision: Cell::new(None),
            };
            // The principal and the decision slot live in a task-local for the
            // rest of the request (the handler runs in this task), rather than
            // in the request's extensions: no allocation, no map insert.
            let mut scoped = std::pin::pin!(ACCESS.scope(access, next.run(request)));
            let response = scoped.as_mut().await;
            let access = scoped.as_mut().take_value();
            if let Some(access) = access {
                if let Some((action, owner, decision)) = access.decision.take() {
                    state
                        .audit
                        .record(AuditEntry {
                            at: now,
                            actor: access.principal.user_id.clone(),
                            actor_roles: access.principal.roles,
                            action: action.as_str(),
                            target_user: owner,
                            decision,
                            status: response.status().as_u16(),
                            request_id,
                        })
                        .await;
                }
            }
            response
        }
    };
    verdict.apply(response.headers_mut());
    response
}

/// The stream route's authentication: a stream token in `?access_token=` (for
/// a browser's `EventSource`, which cannot send headers), verified against the
/// user in the path; without one, the bearer header as on every other route.
/// Only this route accepts the query parameter, and it accepts nothing else in
/// it (a bearer JWT there is refused).
pub async fn authenticate_stream(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let token = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    let Some(token) = token.filter(|_| !state.auth_disabled) else {
        return authenticate(State(state), request, next).await;
    };
    let now = Utc::now();
    let (mut parts, body) = request.into_parts();
    let user = match axum::extract::Path::<Vec<String>>::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|p| p.0.into_iter().next())
    {
        Some(raw) => match super::readings::path_user(&raw) {
            Ok(user) => user,
            Err(e) => return e.into_response(),
        },
        None => return ApiError::Internal("stream route without a user".into()).into_response(),
    };
    let request = Request::from_parts(parts, body);
    let ip = client_ip(&state, &request);
    if let Some(verdict) = state.rate_limits.refused_before_verification(ip) {
        let mut response = ApiError::RateLimited {
            retry_after: verdict.retry_after.unwrap_or(1),
        }
        .into_response();
        verdict.apply(response.headers_mut());
        return response;
    }
    let authenticated = state
        .stream_tokens
        .verify(&token, &user, now)
        .map(Arc::new)
        .map_err(|e| e.to_string());
    let verdict = match &authenticated {
        Ok(p) => state.rate_limits.check_user(&p.user_id),
        Err(_) => state.rate_limits.check_failed_auth(ip),
    };
    run_authenticated(&state, now, authenticated, verdict, request, next).await
}

pub(super) fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(&super::middleware::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// An audit entry for a request authenticated by something bound to `user` other
/// than a token (the OAuth callback's state): the actor is that user, without
/// roles; `allowed` says whether the request got what it asked for.
pub async fn record_state_bound(
    state: &AppContext,
    user: &UserId,
    action: Action,
    allowed: bool,
    headers: &axum::http::HeaderMap,
    status: axum::http::StatusCode,
) {
    state
        .audit
        .record(AuditEntry {
            at: Utc::now(),
            actor: user.clone(),
            actor_roles: Roles::default(),
            action: action.as_str(),
            target_user: user.clone(),
            decision: if allowed { "allowed" } else { "denied" },
            status: status.as_u16(),
            request_id: request_id(headers),
        })
        .await;
}

/// What an authenticated request carries from `authenticate` to its handler and
/// back: the principal, and what `authorize` decided (for the audit entry).
struct RequestAccess {
    principal: Arc<Principal>,
    decision: Cell<Option<(Action, UserId, &'static str)>>,
}

tokio::task_local! {
    static ACCESS: RequestAccess;
}

/// The per-IP limit for routes that take no token (the OAuth callback, docs).
pub async fn limit_anonymous(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    limit_ip(Tier::Anonymous, &state, request, next).await
}

/// The per-IP limit of webhook senders (who sign instead of sending a token).
pub async fn limit_webhook(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    limit_ip(Tier::Webhook, &state, request, next).await
}

async fn limit_ip(
    tier: Tier,
    state: &AppContext,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let verdict = state.rate_limits.check_ip(tier, client_ip(state, &request));
    let mut response = if verdict.allowed() {
        next.run(request).await
    } else {
        ApiError::RateLimited {
            retry_after: verdict.retry_after.unwrap_or(1),
        }
        .into_response()
    };
    verdict.apply(response.headers_mut());
    response
}

fn client_ip(state: &AppContext, request: &Request) -> std::net::IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    state.rate_limits.client_ip(peer, request.headers())
}

/// The principal every request acts as with AUTH_DISABLED, made once.
fn dev_admin() -> Arc<Principal> {
    static DEV: OnceLock<Arc<Principal>> = OnceLock::new();
    DEV.get_or_init(|| {
        Arc::new(Principal {
            user_id: UserId::parse(DEV_ADMIN).unwrap_or_else(|_| unreachable!("valid id")),
            roles: [Role::Admin].into(),
        })
    })
    .clone()
}

/// The authenticated principal of this request (from `authenticate`, which
/// must wrap the route).
pub struct Caller {
    pub principal: Arc<Principal>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, ApiError> {
        ACCESS
            .try_with(|access| Caller {
                principal: access.principal.clone(),
            })
            .map_err(|_| ApiError::Internal("route is missing the authentication layer".into()))
    }
}

/// May `caller` do `action` on `owner`'s data? 403 FORBIDDEN if not; the
/// answer is the same whether or not `owner` exists.
pub async fn authorize(
    state: &AppContext,
    caller: &Caller,
    action: Action,
    owner: &UserId,
) -> Result<Basis, ApiError> {
    let principal = &caller.principal;
    let share = if policy::needs_share(principal, action, owner) {
        state
            .store
            .get_share(owner, &principal.user_id)
            .await?
            .filter(|s| s.is_active(Utc::now()))
    } else {
        None
    };
    let decision = policy::decide(principal, action, owner, share.as_ref());
    // The first decision of a request is the one on record.
    let outcome = if decision.is_some() {
        "allowed"
    } else {
        "denied"
    };
    let _ = ACCESS.try_with(|access| {
        let first = access
            .decision
            .take()
            .unwrap_or((action, owner.clone(), outcome));
        access.decision.set(Some(first));
    });
    decision.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "not allowed: {} of this user",
            action.as_str().replace('_', " ")
        ))
    })
}

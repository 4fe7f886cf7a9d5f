//! Authentication and authorization at the HTTP edge: the middleware that turns
//! a bearer token into a `Principal`, the `Caller` extractor, and `authorize`,
//! which every data handler calls with its action and whose data it touches.

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
use crate::auth::audit::AuditEntry;
use crate::auth::policy::{self, Action, Basis};
use crate::auth::{Principal, Role, Roles};
use crate::domain::UserId;

/// The user every request acts as with AUTH_DISABLED (development only).
pub const DEV_ADMIN: &str = "dev-admin";

/// Authenticates the request (401 AUTH_ERROR if it cannot be), counts it
/// against its rate limit (per user; per client IP while unauthenticated, so
/// guessing tokens is limited too), and leaves the principal for `Caller`.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> axum::response::Response {
    let authenticated = if state.auth_disabled {
        Ok(dev_admin())
    } else {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.authenticator.authenticate_header_shared(header).await
    };
    let verdict = match &authenticated {
        Ok(p) => state.rate_limits.check_user(&p.user_id),
        Err(_) => state
            .rate_limits
            .check_ip(Tier::Anonymous, client_ip(&state, &request)),
    };
    let mut response = match authenticated {
        _ if !verdict.allowed() => ApiError::RateLimited {
            retry_after: verdict.retry_after.unwrap_or(1),
        }
        .into_response(),
        Err(e) => ApiError::Unauthorized(e.to_string()).into_response(),
        Ok(principal) => {
            let slot = AuditSlot(Arc::new(SlotInner {
                principal: principal.clone(),
                decision: OnceLock::new(),
            }));
            let request_id = request_id(request.headers());
            // One extension carries both the principal and the decision slot.
            request.extensions_mut().insert(slot.clone());
            let response = next.run(request).await;
            if let Some((action, owner, decision)) = slot.0.decision.get() {
                state
                    .audit
                    .record(AuditEntry {
                        at: Utc::now(),
                        actor: principal.user_id.clone(),
                        actor_roles: principal.roles,
                        action: action.as_str(),
                        target_user: owner.clone(),
                        decision,
                        status: response.status().as_u16(),
                        request_id,
                    })
                    .await;
            }
            response
        }
    };
    verdict.apply(response.headers_mut());
    response
}

fn request_id(headers: &axum::http::HeaderMap) -> String {
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

/// The request's principal, and what `authorize` decided for its audit entry.
#[derive(Clone)]
pub struct AuditSlot(Arc<SlotInner>);

pub struct SlotInner {
    principal: Arc<Principal>,
    decision: OnceLock<(Action, UserId, &'static str)>,
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

/// The authenticated principal of this request, and where its authorization
/// decision is noted for the audit trail.
pub struct Caller {
    pub principal: Arc<Principal>,
    audit: AuditSlot,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let slot = parts
            .extensions
            .get::<AuditSlot>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal("route is missing the authentication layer".into())
            })?;
        Ok(Caller {
            principal: slot.0.principal.clone(),
            audit: slot,
        })
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
    let _ = caller.audit.0.decision.set((
        action,
        owner.clone(),
        if decision.is_some() {
            "allowed"
        } else {
            "denied"
        },
    ));
    decision.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "not allowed: {} of this user",
            action.as_str().replace('_', " ")
        ))
    })
}

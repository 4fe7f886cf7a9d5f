//! The HTTP API: routes, shared state, and the middleware every request passes.

pub mod access;
mod audit;
mod connections;
mod cursor;
mod docs;
pub mod error;
mod health;
mod jobs;
mod middleware;
pub mod oauth;
pub mod rate_limit;
mod readings;
mod shares;
mod views;
mod webhook;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::jwt::Authenticator;
use crate::pipeline::Pipeline;
use crate::sources::dexcom::service::DexcomService;
use crate::store::Store;

pub use docs::ApiDoc;
pub use error::ApiError;

/// Request-size limits, from settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_records: usize,
}

/// Shared by every request; cloned per request, hence one `Arc`.
pub type AppState = Arc<AppContext>;

pub struct AppContext {
    pub store: Arc<dyn Store>,
    pub pipeline: Pipeline,
    pub event_bus: Arc<dyn crate::events::EventBus>,
    /// Publishes the stores' outbox to `event_bus` (started by `App::serve`).
    pub relay: Arc<crate::events::relay::Relay>,
    pub metrics: PrometheusHandle,
    pub limits: Limits,
    pub public_base_url: Option<Arc<str>>,
    /// Development only: every request acts as admin (until access control lands,
    /// API routes are refused when this is off).
    pub auth_disabled: bool,
    /// Set once Dexcom is configured (at build, or when `serve --demo` has
    /// started its simulator); until then the OAuth routes answer 503.
    pub dexcom: std::sync::OnceLock<Arc<DexcomService>>,
    /// Verifies bearer tokens (HS256 secret and/or JWKS).
    pub authenticator: Authenticator,
    pub rate_limits: rate_limit::RateLimits,
    /// The audit trail's writer.
    pub audit: crate::auth::audit::AuditLog,
    /// Served over TLS: responses carry Strict-Transport-Security.
    pub tls: bool,
    /// Browser origins allowed by CORS (none: no CORS headers).
    pub cors_allowed_origins: Vec<String>,
    /// WEBHOOK_SIGNING_SECRET; webhooks answer 503 without it.
    pub webhook_secret: Option<crate::config::Secret<String>>,
    /// Where verified webhook deliveries are stored and processed.
    pub inbox: Arc<crate::sources::webhook::worker::WebhookInbox>,
}

impl AppContext {
    pub fn dexcom(&self) -> Result<&Arc<DexcomService>, ApiError> {
        self.dexcom.get().ok_or_else(|| {
            ApiError::Unavailable(
                "Dexcom is not configured: set DEXCOM_CLIENT_ID, DEXCOM_CLIENT_SECRET and \
                 DEXCOM_REDIRECT_URI (or run serve --demo)"
                    .into(),
            )
        })
    }

    /// Base of absolute links: PUBLIC_BASE_URL, else the request's Host.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.public_base_url {
            return base.to_string();
        }
        // Only a plausible host[:port] is echoed into links; set PUBLIC_BASE_URL in
        // production rather than trusting the client's Host header.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/bg/{user_id}", get(readings::range))
        .route("/api/bg/{user_id}/latest", get(readings::latest))
        .route(
            "/api/bg/{user_id}/readings",
            axum::routing::post(readings::write),
        )
        .route("/api/users/{user_id}/connections", get(connections::list))
        .route(
            "/api/users/{user_id}/connections/{provider}",
            axum::routing::delete(connections::disconnect),
        )
        .route(
            "/api/users/{user_id}/shares",
            get(shares::list).post(shares::create),
        )
        .route(
            "/api/users/{user_id}/shares/{grantee_id}",
            axum::routing::delete(shares::revoke),
        )
        .route("/api/bg/{user_id}/sync", axum::routing::post(jobs::sync))
        .route("/api/jobs/{job_id}", get(jobs::get))
        .route("/api/users/{user_id}/jobs", get(jobs::list))
        .route("/api/audit", get(audit::list))
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/refresh", axum::routing::post(oauth::refresh))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ));

    let router = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .merge(
            Router::new()
                .route(
                    "/api/bg/{user_id}/webhook",
                    axum::routing::post(webhook::receive),
                )
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    access::limit_webhook,
                )),
        )
        .merge(
            Router::new()
                .route("/oauth/callback", get(oauth::callback))
                .merge(docs::routes())
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    access::limit_anonymous,
                )),
        )
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn(middleware::observe));
    let router = middleware::with_security_headers(router, state.tls);
    let router = match middleware::cors(&state.cors_allowed_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    middleware::with_outer_layers(router.with_state(state))
}

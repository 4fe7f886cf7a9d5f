//! The HTTP API: routes, shared state, and the middleware every request passes.

pub mod access;
mod accounts;
mod alerts;
pub mod analytics;
mod audit;
mod body;
mod browser_session;
pub mod client_ip;
mod connections;
mod cursor;
mod daily;
mod docs;
pub mod error;
mod glucolens;
mod health;
mod jobs;
mod journal;
mod journal_v1;
mod meals;
mod middleware;
mod notifications;
pub mod oauth;
mod profile;
pub mod rate_limit;
mod readings;
mod shares;
mod stream;
mod tasks;
mod views;
mod webhook;
pub mod write_quota;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::MethodRouter;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::jwt::Authenticator;
use crate::pipeline::Pipeline;
use crate::records::connections::Provider;
use crate::sources::dexcom::service::DexcomService;
use crate::store::Store;
use crate::sync::engine::SyncEngine;

pub use docs::{gate_errors, openapi_path, ApiDoc};
pub use error::ApiError;
pub use jobs::{sync_range, JobView};
pub use stream::render as render_live_item;

/// Request-size and resource limits, from settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_records: usize,
    /// For a whole request body (RawBody).
    pub body_read_timeout: std::time::Duration,
    pub webhook: crate::config::WebhookSettings,
    /// Most grants one patient may hold (SHARES_MAX_PER_PATIENT).
    pub max_shares_per_patient: usize,
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
    /// Development only (AUTH_DISABLED): every request acts as admin, with no
    /// bearer token checked.
    pub auth_disabled: bool,
    /// Dexcom's connect flows (OAuth, refresh, disconnect), when Dexcom is
    /// configured (or `serve --demo` points it at its simulator); without it
    /// the OAuth routes answer 503.
    pub dexcom: Option<Arc<DexcomService>>,
    /// The sync engine over every configured source (None: no source is
    /// configured, and sync requests answer 503).
    pub sync: Option<Arc<SyncEngine>>,
    /// Verifies bearer tokens (HS256 secret and/or JWKS).
    pub authenticator: Authenticator,
    pub rate_limits: rate_limit::RateLimits,
    /// Readings per user id per hour (WRITE_QUOTA_READINGS_PER_HOUR).
    pub write_quota: write_quota::WriteQuota,
    /// The audit trail's writer.
    pub audit: crate::auth::audit::AuditLog,
    /// Served over TLS: responses carry Strict-Transport-Security.
    pub tls: bool,
    /// Browser origins allowed by CORS (none: no CORS headers).
    pub cors_allowed_origins: Vec<String>,
    /// WEBHOOK_SIGNING_SECRET; webhooks answer 503 without it.
    pub webhook_secret: Option<crate::secret::Secret<String>>,
    /// Where verified webhook deliveries are stored and processed.
    pub inbox: Arc<crate::sources::webhook::worker::WebhookInbox>,
    /// Users whose token `POST /oauth/refresh` refreshed moments ago.
    pub recent_refreshes: oauth::RecentRefreshes,
    /// One permit per webhook body being read (WEBHOOK_MAX_CONCURRENT_BODIES).
    pub webhook_bodies: Arc<tokio::sync::Semaphore>,
    /// `/health`'s storage check, run at most once a second.
    pub health: health::HealthCache,
    /// Runs general background tasks (`crate::tasks`): kinds register their
    /// handler here; started and stopped with the other background work.
    pub tasks: Arc<crate::tasks::TaskRunner<crate::tasks::StoreQueue>>,
    /// Recent users' CGM samples and window statistics for the analytics
    /// routes, checked against the store's day marks on every request.
    pub glucose_windows: crate::store::samples::GlucoseWindows,
    /// Notification endpoints: creating them (checked, secret sealed) and
    /// delivering alert events to them on a runner of their own.
    pub notifications: Arc<crate::notifications::Notifications>,
    /// The live streams this instance holds (`GET /api/users/{id}/stream`) and
    /// the event subscriber that feeds them.
    pub live: Arc<crate::events::live::LiveStreams>,
    /// Mints and verifies the stream tokens of browsers' `EventSource`s.
    pub stream_tokens: crate::auth::stream_token::StreamTokens,
    /// Built-in accounts (`/api/v1/auth/*`); off (503) without AUTH_JWT_SECRET.
    pub accounts: Arc<crate::accounts::AccountService>,
}

impl AppContext {
    pub fn dexcom(&self) -> Result<&Arc<DexcomService>, ApiError> {
        self.dexcom.as_ref().ok_or_else(not_configured)
    }

    /// The connect flows of `provider` (503 when it is not configured). A
    /// source connected by OAuth adds its arm here.
    pub fn connector(&self, provider: Provider) -> Result<&Arc<DexcomService>, ApiError> {
        match provider {
            Provider::Dexcom => self.dexcom(),
        }
    }

    /// The sync engine, when any source is configured.
    pub fn sync_engine(&self) -> Result<&Arc<SyncEngine>, ApiError> {
        self.sync.as_ref().ok_or_else(not_configured)
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
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}

/// No source is configured: the operator's fix, named.
fn not_configured() -> ApiError {
    ApiError::Unavailable(
        "Dexcom is not configured: set DEXCOM_CLIENT_ID, DEXCOM_CLIENT_SECRET and \
         DEXCOM_REDIRECT_URI (or run serve --demo)"
            .into(),
    )
}

/// What stands in front of a route: it decides the middleware, and so the error
/// responses every route of the kind can give (the OpenAPI test checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Operations endpoints: no credentials, no rate limit.
    Open,
    /// A bearer JWT (or AUTH_DISABLED), rate limited per user or per IP.
    Bearer,
    /// An HMAC signature checked by the handler, rate limited per IP.
    Webhook,
    /// No credentials (the OAuth callback is authenticated by its state), rate limited per IP.
    Anonymous,
    /// A bearer JWT in the header, or a stream token in `?access_token=` (the
    /// live stream only), rate limited like `Bearer`.
    Stream,
}

/// One route of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: axum::http::Method,
    pub path: &'static str,
    pub gate: Gate,
}

/// Every route with its handler: the router is built from this list alone, so the
/// list the OpenAPI test reads (`route_table`) is the router. (Plus `/docs` and
/// `/openapi.json`, which serve the document itself.)
fn routes() -> Vec<(Route, MethodRouter<AppState>)> {
    use axum::http::Method;
    use Gate::*;
    vec![
        route(Method::GET, "/health", Open, health::health),
        route(Method::GET, "/metrics", Open, health::metrics),
        route(Method::GET, "/api/bg/{user_id}", Bearer, readings::range),
        route(
            Method::GET,
            "/api/bg/{user_id}/latest",
            Bearer,
            readings::latest,
        ),
        route(
            Method::POST,
            "/api/bg/{user_id}/readings",
            Bearer,
            readings::write,
        ),
        route(Method::POST, "/api/bg/{user_id}/sync", Bearer, jobs::sync),
        route(
            Method::GET,
            "/api/bg/{user_id}/stats",
            Bearer,
            analytics::stats,
        ),
        route(Method::GET, "/api/bg/{user_id}/agp", Bearer, analytics::agp),
        route(
            Method::GET,
            "/api/bg/{user_id}/summary.fhir",
            Bearer,
            analytics::summary_fhir,
        ),
        route(
            Method::POST,
            "/api/bg/{user_id}/webhook",
            Webhook,
            webhook::receive,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/connections",
            Bearer,
            connections::list,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/connections/{provider}",
            Bearer,
            connections::disconnect,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/shares",
            Bearer,
            shares::list,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/shares",
            Bearer,
            shares::create,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/shares/{grantee_id}",
            Bearer,
            shares::revoke,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/profile",
            Bearer,
            profile::get,
        ),
        route(
            Method::PUT,
            "/api/users/{user_id}/profile",
            Bearer,
            profile::put,
        ),
        route(Method::GET, "/api/bg/{user_id}/daily", Bearer, daily::daily),
        route(
            Method::GET,
            "/api/users/{user_id}/alert-settings",
            Bearer,
            alerts::get_settings,
        ),
        route(
            Method::PUT,
            "/api/users/{user_id}/alert-settings",
            Bearer,
            alerts::put_settings,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/alerts",
            Bearer,
            alerts::list,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/alerts/{alert_id}/ack",
            Bearer,
            alerts::acknowledge,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/notification-endpoints",
            Bearer,
            notifications::create,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/notification-endpoints",
            Bearer,
            notifications::list,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/notification-endpoints/{endpoint_id}",
            Bearer,
            notifications::delete,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/stream",
            Stream,
            stream::stream,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/stream-token",
            Bearer,
            stream::token,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/meals",
            Bearer,
            journal::create_meal,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/meals",
            Bearer,
            journal::list_meals,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/meals/insights",
            Bearer,
            meals::get_insights,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/meals/{entry_id}",
            Bearer,
            journal::get_meal,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/meals/{entry_id}/response",
            Bearer,
            meals::get_response,
        ),
        route(
            Method::PATCH,
            "/api/users/{user_id}/meals/{entry_id}",
            Bearer,
            journal::patch_meal,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/meals/{entry_id}",
            Bearer,
            journal::delete_meal,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/sleep",
            Bearer,
            journal::create_sleep,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/sleep",
            Bearer,
            journal::list_sleep,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/sleep/{entry_id}",
            Bearer,
            journal::get_sleep,
        ),
        route(
            Method::PATCH,
            "/api/users/{user_id}/sleep/{entry_id}",
            Bearer,
            journal::patch_sleep,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/sleep/{entry_id}",
            Bearer,
            journal::delete_sleep,
        ),
        route(
            Method::POST,
            "/api/users/{user_id}/activities",
            Bearer,
            journal::create_activity,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/activities",
            Bearer,
            journal::list_activities,
        ),
        route(
            Method::GET,
            "/api/users/{user_id}/activities/{entry_id}",
            Bearer,
            journal::get_activity,
        ),
        route(
            Method::PATCH,
            "/api/users/{user_id}/activities/{entry_id}",
            Bearer,
            journal::patch_activity,
        ),
        route(
            Method::DELETE,
            "/api/users/{user_id}/activities/{entry_id}",
            Bearer,
            journal::delete_activity,
        ),
        route(Method::GET, "/api/jobs/{job_id}", Bearer, jobs::get),
        route(Method::GET, "/api/users/{user_id}/jobs", Bearer, jobs::list),
        route(Method::GET, "/api/tasks/{task_id}", Bearer, tasks::get),
        route(Method::GET, "/api/audit", Bearer, audit::list),
        route(Method::GET, "/oauth/authorize", Bearer, oauth::authorize),
        route(Method::POST, "/oauth/refresh", Bearer, oauth::refresh),
        route(Method::GET, "/oauth/callback", Anonymous, oauth::callback),
        route(
            Method::POST,
            "/api/v1/auth/register",
            Anonymous,
            accounts::register,
        ),
        route(
            Method::POST,
            "/api/v1/auth/login",
            Anonymous,
            accounts::login,
        ),
        route(
            Method::POST,
            "/api/v1/auth/refresh",
            Anonymous,
            accounts::refresh,
        ),
        route(
            Method::POST,
            "/api/v1/auth/logout",
            Anonymous,
            accounts::logout,
        ),
        route(Method::GET, "/api/v1/auth/me", Bearer, accounts::me),
        route(
            Method::POST,
            "/api/v1/auth/password-reset",
            Anonymous,
            accounts::password_reset,
        ),
        route(
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            Anonymous,
            accounts::password_reset_confirm,
        ),
        route(
            Method::POST,
            "/api/v1/auth/verify-email",
            Anonymous,
            accounts::verify_email,
        ),
        route(
            Method::POST,
            "/api/v1/auth/verify-email/resend",
            Bearer,
            accounts::verify_email_resend,
        ),
        route(
            Method::POST,
            "/api/v1/auth/invitations",
            Bearer,
            accounts::invite,
        ),
        // GlucoLens and Nutri: the caller's own data (src/api/glucolens.rs).
        route(
            Method::POST,
            "/api/v1/glucose/readings",
            Bearer,
            glucolens::post_reading,
        ),
        route(
            Method::GET,
            "/api/v1/glucose/readings",
            Bearer,
            glucolens::list_readings,
        ),
        route(
            Method::POST,
            "/api/v1/glucose/bulk",
            Bearer,
            glucolens::post_bulk,
        ),
        route(
            Method::GET,
            "/api/v1/glucose/latest",
            Bearer,
            glucolens::latest,
        ),
        route(
            Method::GET,
            "/api/v1/glucose/daily-summary",
            Bearer,
            glucolens::daily_summary,
        ),
        route(
            Method::GET,
            "/api/v1/dashboard/summary",
            Bearer,
            glucolens::dashboard,
        ),
        route(
            Method::POST,
            "/api/v1/integrations/cgm/connect",
            Bearer,
            glucolens::cgm_connect,
        ),
        route(
            Method::POST,
            "/api/v1/integrations/cgm/sync",
            Bearer,
            glucolens::cgm_sync,
        ),
        // The journal's GlucoLens and Nutri paths (src/api/journal_v1.rs).
        route(Method::POST, "/api/v1/meals", Bearer, journal_v1::post_meal),
        route(
            Method::POST,
            "/api/v1/sleep",
            Bearer,
            journal_v1::post_sleep,
        ),
        route(
            Method::POST,
            "/api/v1/activities",
            Bearer,
            journal_v1::post_activity,
        ),
        route(
            Method::POST,
            "/api/v1/integrations/apple-health",
            Bearer,
            journal_v1::apple_health,
        ),
        route(
            Method::GET,
            "/api/v1/glucose/meal-response/{meal_id}",
            Bearer,
            glucolens::meal_response,
        ),
        route(
            Method::GET,
            "/api/v1/glucose/insights",
            Bearer,
            glucolens::insights,
        ),
    ]
}

/// A route and its handler, the method named once (for the table and the router).
fn route<H, T>(
    method: axum::http::Method,
    path: &'static str,
    gate: Gate,
    handler: H,
) -> (Route, MethodRouter<AppState>)
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    let filter = axum::routing::MethodFilter::try_from(method.clone())
        .expect("the table names methods axum routes");
    (
        Route { method, path, gate },
        axum::routing::on(filter, handler),
    )
}

/// Every route of the router (without the documentation's own two).
pub fn route_table() -> Vec<Route> {
    routes().into_iter().map(|(route, _)| route).collect()
}

pub fn router(state: AppState) -> Router {
    let (mut open, mut bearer, mut webhook, mut anonymous, mut stream) = Default::default();
    for (route, handler) in routes() {
        let gated: &mut Router<AppState> = match route.gate {
            Gate::Open => &mut open,
            Gate::Bearer => &mut bearer,
            Gate::Webhook => &mut webhook,
            Gate::Anonymous => &mut anonymous,
            Gate::Stream => &mut stream,
        };
        *gated = std::mem::take(gated).route(route.path, handler);
    }
    use axum::middleware::from_fn_with_state as layer;
    let router = open
        .merge(bearer.route_layer(layer(state.clone(), access::authenticate)))
        .merge(stream.route_layer(layer(state.clone(), access::authenticate_stream)))
        .merge(webhook.route_layer(layer(state.clone(), access::limit_webhook)))
        .merge(
            anonymous
                .merge(docs::routes())
                .route_layer(layer(state.clone(), access::limit_anonymous)),
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
    // Outside the request-id layers: a 5xx body quotes the id they put on the response.
    middleware::with_outer_layers(router.with_state(state)).layer(
        tower::util::MapResponseLayer::new(
            error::with_request_id as fn(axum::response::Response) -> axum::response::Response,
        ),
    )
}

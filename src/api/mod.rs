//! The HTTP API: routes, shared state, and the middleware every request passes.

mod cursor;
mod docs;
pub mod error;
mod health;
mod middleware;
mod readings;
mod views;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::pipeline::Pipeline;
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
    pub event_bus_name: &'static str,
    pub metrics: PrometheusHandle,
    pub limits: Limits,
    pub public_base_url: Option<Arc<str>>,
    /// Development only: every request acts as admin (until access control lands,
    /// API routes are refused when this is off).
    pub auth_disabled: bool,
}

impl AppContext {
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_auth,
        ));

    let router = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .merge(docs::routes())
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state);
    middleware::with_outer_layers(router)
}

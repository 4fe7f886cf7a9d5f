//! Cross-cutting request handling: request ids, access logs, metrics, panics,
//! fallbacks, and the interim authentication gate.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, MakeSpan, TraceLayer};
use tower_http::LatencyUnit;
use tracing::{Level, Span};

use super::error::ApiError;
use super::AppState;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every request gets a span with its id (echoed from the client or generated),
/// method, route and, once a handler parses it, the user id.
#[derive(Clone)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %request.uri().path(),
            user_id = tracing::field::Empty,
        )
    }
}

/// Outermost layers, in order: set request id → echo it on the response (also on
/// a panic's 500) → trace → catch panic.
pub fn with_outer_layers(router: axum::Router) -> axum::Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                X_REQUEST_ID.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(RequestSpan)
                    .on_request(())
                    .on_response(
                        DefaultOnResponse::new()
                            .level(Level::INFO)
                            .latency_unit(LatencyUnit::Micros),
                    )
                    .on_failure(DefaultOnFailure::new().level(Level::ERROR)),
            )
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response<Body> {
    ApiError::Internal("handler panicked".into()).into_response()
}

/// Request count and latency per route template (never per raw path, which would
/// make one time series per user).
pub async fn record_metrics(request: Request, next: Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed: Duration = started.elapsed();
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    response
}

/// Until access control lands, API routes are open only with AUTH_DISABLED=true
/// (which settings allow only in development); otherwise they are refused.
pub async fn require_auth(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    if state.auth_disabled {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "bearer authentication is not available in this build; \
             run with SERVICE_ENV=development AUTH_DISABLED=true"
                .into(),
        )
        .into_response()
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

pub async fn method_not_allowed() -> axum::response::Response {
    let mut response = ApiError::Validation {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route".into(),
        errors: vec![],
    }
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

//! Cross-cutting request handling: request ids, access logs, metrics, panics,
//! fallbacks, and the interim authentication gate.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, Method, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

use super::error::{ApiError, ErrorDetail};
use crate::domain::UserId;

pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Outermost layers, in order: refuse an unsafe client request id → set request id
/// (the client's, or a new UUID) → echo it on the response (also on a panic's 500) →
/// catch panic.
pub fn with_outer_layers(router: axum::Router) -> axum::Router {
    router.layer(
        ServiceBuilder::new()
            .map_request(screen_request_id)
            .layer(SetRequestIdLayer::new(
                X_REQUEST_ID.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// Headers every response carries: no MIME sniffing, no framing, no referrer,
/// no caching (`no-store`: responses carry health data, and no browser, proxy or
/// CDN may keep a copy; `GET latest` still answers `If-None-Match` with 304), and
/// HSTS when the service itself terminates TLS. tower's `MapResponseLayer` with a
/// plain function rather than axum's `map_response`, which would box a future per
/// request.
pub fn with_security_headers<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    tls: bool,
) -> axum::Router<S> {
    // One function over the response, not a layer per header: a layer's future
    // wrapper per header was measurable on `GET latest` (docs/performance.md).
    let set: fn(axum::response::Response) -> axum::response::Response = if tls {
        |response| with_headers(response, true)
    } else {
        |response| with_headers(response, false)
    };
    router.layer(tower::util::MapResponseLayer::new(set))
}

/// The headers of [`with_security_headers`], each unless the handler set its own.
fn with_headers(mut response: axum::response::Response, tls: bool) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let headers = response.headers_mut();
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if tls {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
    response
}

/// CORS for the configured browser origins (none configured: no CORS headers,
/// so browsers on other origins cannot read responses).
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    let name = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                name("x-request-id"),
                name("idempotency-key"),
            ])
            .expose_headers([
                name("x-request-id"),
                name("x-ratelimit-limit"),
                name("x-ratelimit-remaining"),
                name("x-ratelimit-reset"),
                header::RETRY_AFTER,
                header::ETAG,
                header::LAST_MODIFIED,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Longest client request id kept.
const MAX_CLIENT_REQUEST_ID: usize = 64;

/// A client's X-Request-Id that was not kept, shortened to printable characters, for the
/// access log to link with the id the service generated instead.
#[derive(Debug, Clone)]
pub struct ClientRequestId(pub String);

/// A client's X-Request-Id is logged for every request and stored in the audit trail,
/// so only one of 1–64 of `[A-Za-z0-9._:-]` is kept. Any other (too long, other
/// characters, sent twice) is removed, and `SetRequestIdLayer` generates a UUID.
fn screen_request_id(mut request: Request) -> Request {
    let mut sent = request.headers().get_all(&X_REQUEST_ID).iter();
    let Some(first) = sent.next() else {
        return request;
    };
    if sent.next().is_none() && is_safe_request_id(first.as_bytes()) {
        return request;
    }
    let shown = first
        .as_bytes()
        .iter()
        .take(MAX_CLIENT_REQUEST_ID)
        .map(|&b| if is_safe_byte(b) { char::from(b) } else { '_' })
        .collect();
    request.headers_mut().remove(&X_REQUEST_ID);
    request.extensions_mut().insert(ClientRequestId(shown));
    request
}

fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=MAX_CLIENT_REQUEST_ID).contains(&id.len()) && id.iter().all(|&b| is_safe_byte(b))
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:-".contains(&b)
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    ApiError::Internal("handler panicked".into()).into_response()
}

/// Whose data a request touched, filled in by the `UserPath` extractor so that the
/// access log can name the user.
#[derive(Clone, Default)]
pub struct RequestUser(Arc<OnceLock<UserId>>);

impl RequestUser {
    pub fn set(&self, user: &UserId) {
        let _ = self.0.set(user.clone());
    }
}

/// One structured access-log line per request (request id, method, route, path,
/// status, latency, user id), the error behind any 5xx, and Prometheus request
/// counts and latency per route template (never per raw path, which would make one
/// time series per user).
///
/// Written as one event rather than tower-http's TraceLayer span + event: under
/// load, formatting span fields for every request was a quarter of the cost of
/// `GET latest` (docs/performance.md). A DEBUG span still carries the request id
/// into handler logs when LOG_LEVEL=DEBUG.
pub async fn observe(mut request: Request, next: Next) -> axum::response::Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let client_request_id = request
        .extensions()
        .get::<ClientRequestId>()
        .map(|c| c.0.clone());
    let user = RequestUser::default();
    request.extensions_mut().insert(user.clone());

    let span = tracing::debug_span!("request", request_id = %request_id, method, path = %path);
    let response = next.run(request).instrument(span).await;

    let elapsed = started.elapsed();
    let status = response.status();
    let user_id = user.0.get().map(UserId::as_str);
    if let Some(ErrorDetail(detail)) = response.extensions().get::<ErrorDetail>() {
        if status.is_server_error() {
            tracing::error!(request_id, client_request_id, user_id, method, path, status = status.as_u16(), error = %detail, "request failed");
        }
    }
    tracing::info!(
        target: "access",
        request_id,
        method,
        route,
        path,
        status = status.as_u16(),
        latency_us = elapsed.as_micros() as u64,
        user_id,
        client_request_id,
        "request"
    );
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    response
}

/// A fixed set of method labels, so clients cannot create new time series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn screened(ids: &[&str]) -> (Option<String>, Option<String>) {
        let mut request = Request::new(Body::empty());
        for id in ids {
            request
                .headers_mut()
                .append(&X_REQUEST_ID, id.parse().expect("header value"));
        }
        let request = screen_request_id(request);
        let kept = request
            .headers()
            .get(&X_REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_owned());
        let client = request
            .extensions()
            .get::<ClientRequestId>()
            .map(|c| c.0.clone());
        (kept, client)
    }

    #[test]
    fn safe_request_ids_are_kept() {
        for id in [
            "a",
            "req-1",
            "trace:0af7651916cd43dd.span_1",
            &"x".repeat(64),
        ] {
            assert_eq!(screened(&[id]), (Some(id.to_owned()), None), "{id}");
        }
        assert_eq!(screened(&[]), (None, None));
    }

    #[test]
    fn unsafe_request_ids_are_replaced_and_shown_shortened() {
        let long = "y".repeat(65);
        assert_eq!(screened(&[&long]), (None, Some("y".repeat(64))));
        assert_eq!(screened(&["a b\"c"]), (None, Some("a_b_c".to_owned())));
        assert_eq!(screened(&[""]), (None, Some(String::new())));
        assert_eq!(
            screened(&["one", "two"]),
            (None, Some("one".to_owned())),
            "two ids: neither is kept"
        );
    }
}

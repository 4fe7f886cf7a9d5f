//! Liveness/readiness (`/health`) and Prometheus metrics (`/metrics`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ErrorDetail;
use super::AppState;
use crate::sources::dexcom::outbound::CircuitState;
use crate::store::Store;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A storage check answers every `/health` for this long after it finished.
const CHECK_FRESH_FOR: Duration = Duration::from_secs(1);

/// The last storage check, shared by every `/health` request, so that however
/// many arrive, storage is asked at most once a second and `/health` cannot be
/// used to load the database: one check at a time, and requests that arrive
/// during a check wait for it and share its answer.
#[derive(Default)]
pub struct HealthCache {
    last: tokio::sync::Mutex<Option<(Instant, StorageCheck)>>,
}

#[derive(Clone)]
enum StorageCheck {
    Ok {
        latency_ms: f64,
    },
    /// The cause, for the log only: it may name hosts or carry driver messages.
    Failed(Arc<str>),
}

impl HealthCache {
    async fn storage(&self, store: &dyn Store) -> StorageCheck {
        let mut last = self.last.lock().await;
        if let Some((finished, check)) = last.as_ref() {
            if finished.elapsed() < CHECK_FRESH_FOR {
                return check.clone();
            }
        }
        metrics::counter!("health_storage_checks_total").increment(1);
        let started = Instant::now();
        let check = match tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => StorageCheck::Ok {
                latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            },
            Ok(Err(e)) => StorageCheck::Failed(e.to_string().into()),
            Err(_) => StorageCheck::Failed(format!("no answer within {CHECK_TIMEOUT:?}").into()),
        };
        // Fresh from when it finished: requests that queued behind a slow check
        // take its answer rather than each starting another.
        *last = Some((Instant::now(), check.clone()));
        check
    }
}

/// 200 when storage answers (with `checks.dexcom.status` "degraded" while a
/// Dexcom circuit is open), 503 with per-dependency checks when it does not.
/// A failed storage check's cause is logged with the request id, which the body
/// gives instead of the cause.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Healthy"), (status = 503, description = "A dependency failed")))]
pub async fn health(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let backend = state.store.backend();
    let (storage, failure) = match state.health.storage(state.store.as_ref()).await {
        StorageCheck::Ok { latency_ms } => (
            json!({"status": "ok", "backend": backend, "latency_ms": latency_ms}),
            None,
        ),
        StorageCheck::Failed(cause) => (
            json!({"status": "error", "backend": backend,
                   "error": "storage did not answer; the service log has the cause under this request id"}),
            Some(cause),
        ),
    };
    // An open Dexcom circuit shows as a degraded check, but the service stays
    // 200 "ok": stored data is still served, and a readiness probe that took
    // every instance out of service (or restarted it) would not fix Dexcom.
    let dexcom = match &state.dexcom {
        None => json!({"status": "not_configured"}),
        Some(d) => {
            let circuits = d.client().outbound().circuit_states();
            let open = circuits.iter().any(|(_, s)| *s != CircuitState::Closed);
            json!({
                "status": if open { "degraded" } else { "ok" },
                "circuits": circuits.iter().map(|(h, s)| (h.clone(), json!(s.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
            })
        }
    };
    // A broker outage is degraded, not down: events wait in the outbox and
    // are published once the broker is back; readings are still stored and served.
    let event_bus = match state.event_bus.check() {
        Ok(()) => json!({"status": "ok", "backend": state.event_bus.name()}),
        Err(e) => json!({"status": "degraded", "backend": state.event_bus.name(), "error": e}),
    };
    let mut body = json!({
        "status": if failure.is_none() { "ok" } else { "error" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "storage": storage,
            "event_bus": event_bus,
            "dexcom": dexcom,
        }
    });
    let Some(cause) = failure else {
        return (StatusCode::OK, Json(body)).into_response();
    };
    body["request_id"] = json!(super::access::request_id(&headers));
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    // The access log writes it with the request id (`middleware::observe`).
    response
        .extensions_mut()
        .insert(ErrorDetail(format!("storage health check failed: {cause}")));
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render_metrics(&state.metrics),
    )
}

//! Liveness/readiness (`/health`) and Prometheus metrics (`/metrics`).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::sources::dexcom::outbound::CircuitState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when storage answers (with `checks.dexcom.status` "degraded" while a
/// Dexcom circuit is open), 503 with per-dependency checks when it does not.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses((status = 200, description = "Healthy"), (status = 503, description = "A dependency failed")))]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let started = Instant::now();
    let storage = match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => json!({"status": "ok", "backend": state.store.backend(),
                             "latency_ms": started.elapsed().as_secs_f64() * 1000.0}),
        Ok(Err(e)) => {
            json!({"status": "error", "backend": state.store.backend(), "error": e.to_string()})
        }
        Err(_) => {
            json!({"status": "error", "backend": state.store.backend(), "error": "timed out"})
        }
    };
    let healthy = storage["status"] == "ok";
    // An open Dexcom circuit shows as a degraded check, but the service stays
    // 200 "ok": stored data is still served, and a readiness probe that took
    // every instance out of service (or restarted it) would not fix Dexcom.
    let dexcom = match state.dexcom.get() {
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
    let body = json!({
        "status": if healthy { "ok" } else { "error" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "storage": storage,
            "event_bus": event_bus,
            "dexcom": dexcom,
        }
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
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

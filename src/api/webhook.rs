//! `POST /api/bg/{userId}/webhook`: a signed delivery is verified, written to
//! the durable inbox, and only then answered 202; the inbox worker processes it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::record_state_bound;
use super::body::read_body;
use super::error::{ApiError, ErrorEnvelope};
use super::readings::UserPath;
use super::views::success;
use super::AppState;
use crate::digest::sha256_hex;
use crate::records::audit::Action;
use crate::records::inbox::{Accepted, NewDelivery};
use crate::sources::webhook::signature::{
    SignatureError, SignedHeaders, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use crate::sources::webhook::worker::{metric_kind, Body};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryReceipt {
    pub delivery_id: Uuid,
    /// `accepted`, or `duplicate` when this signed delivery was received before
    /// (the first one's id is returned; it is processed once).
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// The body's `type`; unknown types are accepted and recorded as ignored.
    #[schema(example = "egvs")]
    pub r#type: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A refused signature: counted, logged, 401.
fn refuse(user: &crate::domain::UserId, e: SignatureError) -> ApiError {
    metrics::counter!("webhook_deliveries_received_total", "outcome" => "bad_signature")
        .increment(1);
    tracing::warn!(user_id = %user, error = %e, "webhook delivery refused");
    ApiError::Unauthorized(e.to_string())
}

/// Receives a signed delivery for a user.
#[utoipa::path(
    post, path = "/api/bg/{userId}/webhook", tag = "webhooks", security(()),
    params(
        ("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("X-Webhook-Timestamp" = String, Header, description = "Unix seconds; at most 300 s from now"),
        ("X-Webhook-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of \"<timestamp>.<raw body>\" under WEBHOOK_SIGNING_SECRET>"),
    ),
    request_body(content = serde_json::Value, description = "`{\"type\":\"egvs.available\",\"startDate\",\"endDate\"}` (a window to fetch from Dexcom), `{\"type\":\"egvs\",\"records\":[<Dexcom v3 EGV records>]}` (readings inline), or any other type (recorded as ignored)"),
    responses(
        (status = 202, description = "Durably recorded; processed asynchronously", body = super::docs::DeliveryEnvelope),
        (status = 400, description = "Invalid user id, or the body is not a JSON object with a string `type`", body = ErrorEnvelope),
        (status = 401, description = "Missing, malformed, stale or wrong signature (headers are checked before the body is read)", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive within WEBHOOK_BODY_TIMEOUT_SECONDS", body = ErrorEnvelope),
        (status = 413, description = "The body is over WEBHOOK_MAX_BODY_BYTES", body = ErrorEnvelope),
        (status = 422, description = "A known type with invalid fields", body = ErrorEnvelope),
        (status = 429, description = "Over the per-IP webhook limit, or WEBHOOK_MAX_CONCURRENT_BODIES bodies are being read", body = ErrorEnvelope),
        (status = 503, description = "WEBHOOK_SIGNING_SECRET is not set", body = ErrorEnvelope),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    request: Request,
) -> Result<Response, ApiError> {
    let received_at = Utc::now();
    let secret = state.webhook_secret.as_ref().ok_or_else(|| {
        ApiError::Unavailable("webhooks are not configured: set WEBHOOK_SIGNING_SECRET".into())
    })?;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    // The headers first: a request without a well-formed, recent signature is refused
    // before a byte of its body is read.
    let signed = SignedHeaders::parse(
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
        received_at.timestamp(),
    )
    .map_err(|e| refuse(&user, e))?;
    let body = {
        // Bodies from unauthenticated senders are read a bounded number at a time.
        let _reading = state.webhook_bodies.try_acquire().map_err(|_| {
            metrics::counter!("webhook_deliveries_received_total", "outcome" => "busy")
                .increment(1);
            ApiError::RateLimited { retry_after: 1 }
        })?;
        let limits = state.limits.webhook;
        let max_bytes = limits.max_body_bytes.min(state.limits.max_body_bytes);
        read_body(&headers, body, max_bytes, limits.body_timeout).await?
    };
    signed
        .verify(secret.expose().as_bytes(), &body)
        .map_err(|e| refuse(&user, e))?;
    let parsed = Body::parse(&body).map_err(|errors| {
        metrics::counter!("webhook_deliveries_received_total", "outcome" => "invalid").increment(1);
        let not_an_object = errors
            .iter()
            .any(|e| e.pointer.is_empty() || e.pointer == "/type");
        if not_an_object {
            ApiError::bad_request("the body is not a JSON object", errors)
        } else {
            ApiError::unprocessable("the delivery has invalid fields", errors)
        }
    })?;
    let kind = parsed.kind().to_owned();
    let accepted = state
        .store
        .put_delivery(NewDelivery {
            id: Uuid::new_v4(),
            user_id: user.clone(),
            // The decoded MAC, whatever the digest's case: one signed delivery is accepted
            // once across all users' paths.
            signature_hash: sha256_hex(signed.replay_key().as_bytes()),
            kind: kind.clone(),
            body: body.to_vec(),
            received_at,
        })
        .await?;
    state.inbox.wake();
    let status = match accepted {
        Accepted::New(_) => "accepted",
        Accepted::Replay(_) => "duplicate",
    };
    metrics::counter!("webhook_deliveries_received_total", "outcome" => status, "type" => metric_kind(&kind))
        .increment(1);
    record_state_bound(
        &state,
        &user,
        Action::DeliverWebhook,
        true,
        &headers,
        StatusCode::ACCEPTED,
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        success(DeliveryReceipt {
            delivery_id: accepted.id(),
            status,
            r#type: kind,
        }),
    )
        .into_response())
}

//! `POST /api/bg/{userId}/webhook`: a signed delivery is verified, written to
//! the durable inbox, and only then answered 202; the inbox worker processes it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::record_state_bound;
use super::body::RawBody;
use super::error::{ApiError, ErrorEnvelope};
use super::readings::UserPath;
use super::views::success;
use super::AppState;
use crate::auth::policy::Action;
use crate::digest::sha256_hex;
use crate::sources::webhook::inbox::{Accepted, NewDelivery};
use crate::sources::webhook::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
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
        (status = 401, description = "Missing, malformed, stale or wrong signature", body = ErrorEnvelope),
        (status = 422, description = "A known type with invalid fields", body = ErrorEnvelope),
        (status = 429, description = "Over the per-IP webhook limit", body = ErrorEnvelope),
        (status = 503, description = "WEBHOOK_SIGNING_SECRET is not set", body = ErrorEnvelope),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let received_at = Utc::now();
    let secret = state.webhook_secret.as_ref().ok_or_else(|| {
        ApiError::Unavailable("webhooks are not configured: set WEBHOOK_SIGNING_SECRET".into())
    })?;
    let signature_value = header(&headers, SIGNATURE_HEADER);
    if let Err(e) = signature::verify(
        secret.expose().as_bytes(),
        header(&headers, TIMESTAMP_HEADER),
        signature_value,
        &body,
        received_at.timestamp(),
    ) {
        metrics::counter!("webhook_deliveries_received_total", "outcome" => "bad_signature")
            .increment(1);
        tracing::warn!(user_id = %user, error = %e, "webhook delivery refused");
        return Err(ApiError::Unauthorized(e.to_string()));
    }
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
            signature_hash: sha256_hex(signature_value.unwrap_or_default().as_bytes()),
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

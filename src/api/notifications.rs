//! `POST/GET /api/users/{userId}/notification-endpoints` and `DELETE
//! .../notification-endpoints/{endpointId}`: where a user wants alert events
//! (their own, and those of patients who share with them) POSTed, signed.
//! The secret is write-only: sealed at rest, never in an answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{authorize, Caller};
use super::body::RawBody;
use super::error::{json_body, ApiError, ErrorEnvelope};
use super::readings::{path_user, UserPath};
use super::views::success;
use super::AppState;
use crate::domain::FieldError;
use crate::notifications::EndpointInput;
use crate::records::audit::Action;
use crate::records::notifications::{EndpointId, NotificationEndpoint};

/// An endpoint to create.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct EndpointInputDoc {
    /// https:// (http:// only when SERVICE_ENV=development), at most 2048
    /// characters, no user name or password; its host must not resolve to a
    /// loopback, private, link-local, unique-local, multicast, unspecified or
    /// metadata address (outside development).
    #[schema(example = "https://example.com/cgm-alerts")]
    url: String,
    /// 16-256 characters: the HMAC-SHA256 key deliveries are signed with.
    /// Write-only: never returned.
    #[schema(example = "a-long-random-shared-secret")]
    secret: String,
    /// A non-empty subset of alert.raised, alert.acknowledged, alert.resolved.
    #[schema(example = json!(["alert.raised", "alert.resolved"]))]
    events: Vec<String>,
}

/// An endpoint as stored (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: uuid::Uuid,
    pub user_id: String,
    pub url: String,
    #[schema(example = json!(["alert.raised"]))]
    pub events: Vec<&'static str>,
    pub created_at: DateTime<Utc>,
}

impl From<&NotificationEndpoint> for EndpointView {
    fn from(e: &NotificationEndpoint) -> Self {
        Self {
            id: e.id.0,
            user_id: e.user_id.to_string(),
            url: e.url.clone(),
            events: e.events.iter().map(|e| e.as_str()).collect(),
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
}

/// Adds an endpoint: alert events of the user, and of every patient who
/// shares with them, are POSTed to it, signed with its secret.
#[utoipa::path(
    post, path = "/api/users/{userId}/notification-endpoints", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = EndpointInputDoc,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The endpoint (without its secret)", body = super::docs::EndpointEnvelope),
        (status = 400, description = "Malformed body (not JSON, a field of the wrong type, an unknown field) or user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
        (status = 409, description = "The user holds NOTIFICATION_ENDPOINTS_MAX_PER_USER endpoints already", body = ErrorEnvelope),
        (status = 422, description = "Invalid url, secret or events; each error names its field", body = ErrorEnvelope),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ManageNotificationEndpoints, &user).await?;
    let input: EndpointInput = json_body(&body)?;
    let endpoint = state.notifications.create(&user, input).await?;
    tracing::info!(user_id = %user, endpoint_id = %endpoint.id, "notification endpoint created");
    Ok((StatusCode::CREATED, success(EndpointView::from(&endpoint))).into_response())
}

/// A user's endpoints, oldest first (secrets are never shown).
#[utoipa::path(
    get, path = "/api/users/{userId}/notification-endpoints", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = super::docs::EndpointListEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadNotificationEndpoints, &user).await?;
    let endpoints = state.store.list_notification_endpoints(&user).await?;
    Ok(success(EndpointList {
        endpoints: endpoints.iter().map(EndpointView::from).collect(),
    })
    .into_response())
}

/// Removes an endpoint; deliveries still queued for it are dropped.
#[utoipa::path(
    delete, path = "/api/users/{userId}/notification-endpoints/{endpointId}", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("endpointId" = String, Path, format = "uuid")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Invalid user or endpoint id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
        (status = 404, description = "No such endpoint of this user", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path((raw_user, raw_id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    authorize(&state, &caller, Action::ManageNotificationEndpoints, &user).await?;
    let id = EndpointId::parse(&raw_id)
        .ok_or_else(|| ApiError::from(FieldError::new("endpoint_id", "must be a UUID")))?;
    if !state.store.delete_notification_endpoint(&user, id).await? {
        return Err(ApiError::NotFound("notification endpoint".into()));
    }
    tracing::info!(user_id = %user, endpoint_id = %id, "notification endpoint deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

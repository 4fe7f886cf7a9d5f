//! `GET /api/users/{userId}/connections` and `DELETE .../connections/{provider}`:
//! a user's source connections, without anything secret.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::access::{authorize, Caller};
use super::error::{ApiError, ErrorEnvelope};
use super::readings::path_user;
use super::views::success;
use super::AppState;
use crate::records::audit::Action;
use crate::records::connections::{Connection, Provider};
use crate::sync::provider::provider_name;

/// A connection as clients see it: status and history, never tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    #[schema(example = "dexcom")]
    pub provider: &'static str,
    /// connected, reauth_required or disconnected
    #[schema(example = "connected")]
    pub status: &'static str,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// Why the connection is not (or was not) working.
    pub last_error: Option<String>,
    /// When the current access token expires (not the token itself).
    pub access_token_expires_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            provider: c.provider.as_str(),
            status: c.status.as_str(),
            connected_at: c.connected_at,
            last_sync_at: c.last_sync_at,
            last_error: c.last_error.clone(),
            access_token_expires_at: c.access_expires_at,
            updated_at: Some(c.updated_at),
        }
    }
}

impl ConnectionView {
    /// A provider the user never connected.
    fn never(provider: Provider) -> Self {
        Self {
            provider: provider.as_str(),
            status: "disconnected",
            connected_at: None,
            last_sync_at: None,
            last_error: None,
            access_token_expires_at: None,
            updated_at: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// One entry per provider, including those never connected.
    pub connections: Vec<ConnectionView>,
}

/// A user's source connections.
#[utoipa::path(
    get, path = "/api/users/{userId}/connections", tag = "connections",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "Every provider with its status", body = super::docs::ConnectionListEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    super::readings::UserPath(user): super::readings::UserPath,
    caller: Caller,
) -> Result<axum::Json<super::views::Success<ConnectionList>>, ApiError> {
    authorize(&state, &caller, Action::ReadConnections, &user).await?;
    let stored = state.store.list_connections(&user).await?;
    let connections = Provider::ALL
        .into_iter()
        .map(|p| {
            stored
                .iter()
                .find(|c| c.provider == p)
                .map_or_else(|| ConnectionView::never(p), ConnectionView::from)
        })
        .collect();
    Ok(success(ConnectionList { connections }))
}

/// Disconnects a provider: tokens deleted, polling stops, readings kept.
#[utoipa::path(
    delete, path = "/api/users/{userId}/connections/{provider}", tag = "connections",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("provider" = String, Path, description = "dexcom")),
    responses(
        (status = 200, description = "Disconnected (also when it already was)", body = super::docs::ConnectionEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 404, description = "Unknown provider, or never connected", body = ErrorEnvelope),
        (status = 503, description = "The provider is not configured", body = ErrorEnvelope),
    )
)]
pub async fn disconnect(
    State(state): State<AppState>,
    Path((raw_user, raw_provider)): Path<(String, String)>,
    request_user: Option<axum::Extension<super::middleware::RequestUser>>,
    caller: Caller,
) -> Result<axum::Json<super::views::Success<ConnectionView>>, ApiError> {
    let user = path_user(&raw_user)?;
    if let Some(axum::Extension(r)) = request_user {
        r.set(&user);
    }
    authorize(&state, &caller, Action::ManageConnections, &user).await?;
    let provider = Provider::parse(&raw_provider)
        .ok_or_else(|| ApiError::NotFound(format!("provider {raw_provider:?}")))?;
    let connection = state
        .connector(provider)?
        .disconnect(&user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{} connection", provider_name(provider))))?;
    Ok(success(ConnectionView::from(&connection)))
}

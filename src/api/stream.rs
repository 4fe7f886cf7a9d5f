//! The per-user live stream (contract: "Alerts and live streams"):
//! `GET /api/users/{userId}/stream`, Server-Sent Events of the user's readings
//! and alerts with `Last-Event-ID` replay, and `POST .../stream-token`, the
//! short-lived token a browser's `EventSource` passes instead of a header.
//! The registry, fan-out and replay live in `events::live`; this is the HTTP
//! side: who may stream, the SSE framing, keep-alives, and the limits' errors.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::alerts::AlertView;
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::readings::UserPath;
use super::views::{success, ReadingView};
use super::AppState;
use crate::domain::FieldError;
use crate::events::live::{EventKey, LiveItem, OpenError};
use crate::records::audit::Action;

/// Renders a stream item as its HTTP endpoint does: a reading as `GET /api/bg`
/// returns it, an alert as `GET /api/users/{id}/alerts` does.
pub fn render(item: &LiveItem) -> String {
    let json = match item {
        LiveItem::Reading(r) => serde_json::to_string(&ReadingView::from(r)),
        LiveItem::Alert(a) => serde_json::to_string(&AlertView::from(a)),
    };
    // Plain structs of strings and numbers: serializing cannot fail.
    json.unwrap_or_default()
}

/// Query parameters of the stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// The `id` of the last event received, for a client that cannot set the
    /// `Last-Event-ID` header (a browser opening a new `EventSource`); the
    /// header wins when both are present.
    last_event_id: Option<String>,
    /// A stream token from `POST /api/users/{userId}/stream-token` (for
    /// `EventSource`, which cannot send an Authorization header). Bearer JWTs
    /// are not accepted here. Read by `access::authenticate_stream`; listed
    /// here so that it is not an unknown parameter.
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// The user's readings and alerts as Server-Sent Events.
#[utoipa::path(
    get, path = "/api/users/{userId}/stream", tag = "alerts",
    params(
        ("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the events after it (up to 24 h back) are replayed first"),
        StreamParams,
    ),
    security(("bearer" = []), ("stream_token" = [])),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `event: reading` (data: the reading as `GET /api/bg` returns it) and `event: alert` (data: the alert as `GET /api/users/{userId}/alerts` returns it), each with an `id:`; a `: keep-alive` comment at least every STREAM_KEEPALIVE_SECONDS (15 s). The stream ends when the server shuts down or the client reads too slowly (more than STREAM_BUFFER_EVENTS behind); reconnect with `Last-Event-ID`.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid user id, unknown query parameter, or a Last-Event-ID this server did not send", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials: a missing, malformed, expired or other user's stream token, or a bearer JWT in access_token", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data (the owner, an admin, a service, or a caregiver or clinician with an active share)", body = ErrorEnvelope),
        (status = 429, description = "This user has STREAM_MAX_PER_USER streams open on this instance already (RATE_LIMIT_EXCEEDED), or over the rate limit", body = ErrorEnvelope),
        (status = 503, description = "This instance holds STREAM_MAX_TOTAL streams, or is shutting down", body = ErrorEnvelope),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadStream, &user).await?;
    let params: StreamParams = query_params(query.as_deref())?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some((v.to_str().unwrap_or("\u{fffd}").to_owned(), "last_event_id")),
        None => params.last_event_id.map(|v| (v, "last_event_id")),
    };
    let after = match last {
        None => None,
        Some((raw, field)) => Some(raw.trim().parse::<EventKey>().map_err(|e| {
            ApiError::bad_request(
                "invalid Last-Event-ID",
                vec![FieldError::new(field, e.to_string())],
            )
        })?),
    };
    // Registered before the replay is read, so nothing stored meanwhile is
    // missed; what both deliver is sent once (the replay's copy).
    let live = state.live.open(&user).map_err(|e| match e {
        OpenError::PerUser(_) => ApiError::QuotaExceeded {
            retry_after: 5,
            message: e.to_string(),
        },
        OpenError::Total(_) | OpenError::ShuttingDown => ApiError::Unavailable(e.to_string()),
    })?;
    let replayed = match after {
        Some(after) => state.live.replay(&user, after, Utc::now()).await?,
        None => Vec::new(),
    };
    let seen: HashSet<EventKey> = replayed.iter().map(|e| e.key).collect();
    let live = stream::unfold(live, |mut live| async move {
        let next = live.receiver.recv().await?;
        Some((next, live))
    })
    .filter(move |e| std::future::ready(!seen.contains(&e.key)));
    let events = stream::iter(replayed).chain(live).map(|e| {
        Ok::<_, Infallible>(
            SseEvent::default()
                .event(e.name)
                .id(e.key.to_string())
                .data(&e.data),
        )
    });
    let keepalive = KeepAlive::new()
        .interval(state.live.settings().keepalive)
        .text("keep-alive");
    let mut response = Sse::new(events).keep_alive(keepalive).into_response();
    // Proxies that buffer responses (nginx) would hold events back; and like
    // every answer of this API it is stored by no cache (axum's SSE says
    // only `no-cache`).
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A stream token.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenView {
    /// Pass as `?access_token=` on this user's stream (only there).
    pub token: String,
    /// Seconds until it expires (STREAM_TOKEN_TTL_SECONDS).
    #[schema(example = 300)]
    pub expires_in: u64,
}

/// A short-lived token for a browser's `EventSource` to open this user's stream.
#[utoipa::path(
    post, path = "/api/users/{userId}/stream-token", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A token for `GET /api/users/{userId}/stream?access_token=`, bound to the caller and this user, valid for `expires_in` seconds (checked when a stream opens: an open stream outlives its token)", body = super::docs::StreamTokenEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadStream, &user).await?;
    let token = state
        .stream_tokens
        .mint(&caller.principal, &user, Utc::now());
    let mut response = success(StreamTokenView {
        token,
        expires_in: state.stream_tokens.ttl().as_secs(),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

//! `GET /api/bg/{userId}/latest`: the newest reading, with ETag, Last-Modified and 304.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::UserPath;
use crate::api::access::{authorize, Caller};
use crate::api::docs;
use crate::api::error::{ApiError, ErrorEnvelope};
use crate::api::views::{success, ReadingView};
use crate::api::AppState;
use crate::domain::{StoredReading, UserId};
use crate::records::audit::Action;

/// The newest reading of a user.
#[utoipa::path(
    get, path = "/api/bg/{userId}/latest", tag = "readings",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("If-None-Match" = Option<String>, Header, description = "ETag from an earlier response")),
    responses(
        (status = 200, description = "The newest reading, with ETag, Last-Modified and Cache-Control", body = docs::LatestEnvelope),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 404, description = "No reading yet", body = ErrorEnvelope),
    )
)]
pub async fn latest(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    latest_of(&state, &caller, &user, &headers).await
}

/// The newest reading of `user` as `caller` may see it, with its validators
/// and a 304 when the client's copy is current.
pub async fn latest_of(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    authorize(state, caller, Action::ReadReadings, user).await?;
    let reading = state
        .store
        .latest_reading(user)
        .await?
        .ok_or_else(|| ApiError::NotFound("reading".into()))?;
    let etag = format!(
        "\"{}-{}\"",
        reading.reading.timestamp.unix_seconds(),
        reading.version
    );
    // HTTP dates have whole seconds; Last-Modified is never later than the change.
    let last_modified = httpdate::fmt_http_date(reading.updated_at.into());
    let mut response = if not_modified(headers, &etag, &reading) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        success(ReadingView::from(&reading)).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, header_value(&etag));
    h.insert(header::LAST_MODIFIED, header_value(&last_modified));
    // Health data: never stored by a cache. The client keeps the ETag itself
    // and sends it back in If-None-Match for a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// RFC 9110 §13.1: If-None-Match wins over If-Modified-Since; weak comparison.
fn not_modified(headers: &HeaderMap, etag: &str, reading: &StoredReading) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| {
            // At HTTP's one-second precision: a change within the same second as
            // the client's copy is not visible this way, which is why the ETag
            // (checked first, exact) exists.
            let since: chrono::DateTime<Utc> = since.into();
            reading.updated_at.timestamp() <= since.timestamp()
        })
}

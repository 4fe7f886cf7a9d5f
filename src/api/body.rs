//! Request bodies as handlers take them: read with a size limit and a time limit, and
//! every failure (too large, too slow, cut off) answered with the one error envelope.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;

use super::{ApiError, AppState};

/// The whole request body, at most MAX_BODY_BYTES, arrived within
/// HTTP_BODY_READ_TIMEOUT_SECONDS. Take `Result<RawBody, ApiError>` to decide when a bad
/// body is reported (for example only after authorization).
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_body(
            &parts.headers,
            body,
            state.limits.max_body_bytes,
            state.limits.body_read_timeout,
        )
        .await
        .map(RawBody)
    }
}

/// Bytes of an oversized body that are read and thrown away before the 413, so that a
/// sender a little over the limit reads the answer: a server that closes a connection
/// with unread bytes in its socket makes the kernel send a reset, and the client loses
/// the response. Nothing of it is kept in memory.
const DRAIN_ALLOWANCE: usize = 1 << 20;

/// Reads a body of at most `limit` bytes within `timeout`. What is held in memory is at
/// most `limit` plus one chunk: past the limit the rest is read only to be thrown away
/// (at most [`DRAIN_ALLOWANCE`] bytes), and a declared Content-Length beyond that is
/// refused before any of the body is read.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit.saturating_add(DRAIN_ALLOWANCE) as u64) {
        return Err(too_large(limit));
    }
    match tokio::time::timeout(timeout, collect(body, limit)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::Validation {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
            errors: vec![],
        }),
    }
}

async fn collect(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("could not read the request body: {e}"), vec![])
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        received = received.saturating_add(chunk.len());
        if received > limit {
            // Over: keep nothing more, drain a little so the 413 is read, then stop.
            (first, joined) = (None, Vec::new());
            if received > limit.saturating_add(DRAIN_ALLOWANCE) {
                break;
            }
            continue;
        }
        // Most bodies arrive as one chunk: keep it without copying.
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            None => joined.extend_from_slice(&chunk),
            Some(earlier) => {
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&chunk);
            }
        }
    }
    if received > limit {
        return Err(too_large(limit));
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::Validation {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than {limit} bytes"),
        errors: vec![],
    }
}

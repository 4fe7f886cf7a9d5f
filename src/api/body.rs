//! The raw request body as handlers take it: axum's own rejections (plain text, such
//! as a body over MAX_BODY_BYTES) become the one error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::{ApiError, AppState};

/// The whole request body. Take `Result<RawBody, ApiError>` to decide when a bad
/// body is reported (for example only after authorization).
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!(
                        "request body is larger than {} bytes",
                        state.limits.max_body_bytes
                    )
                } else {
                    rejection.body_text()
                };
                Err(ApiError::Validation {
                    status,
                    message,
                    errors: vec![],
                })
            }
        }
    }
}

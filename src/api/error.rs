//! The one error type of the HTTP layer and its one mapping to the JSON envelope
//! `{"status":"error","error":{"code","message","details"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::domain::FieldError;
use crate::notifications::NotifyError;
use crate::sources::connect::ConnectFault;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input. `status` is 400 for a malformed request, 413 for an oversized
    /// body, 422 for a well-formed request with invalid content.
    #[error("{message}")]
    Validation {
        status: StatusCode,
        message: String,
        errors: Vec<FieldError>,
    },
    #[error("authentication required: {0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A cookie-authenticated request without the matching `X-CSRF-Token`
    /// header (or from a foreign `Origin`): 403 CSRF_ERROR.
    #[error("{0}")]
    Csrf(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// A per-user quota or cap is spent (RATE_LIMIT_EXCEEDED like `RateLimited`);
    /// the message names it.
    #[error("{message}")]
    QuotaExceeded { retry_after: u64, message: String },
    /// An upstream API (Dexcom) failed or refused; the message says which and why.
    #[error("{0}")]
    ExternalApi(String),
    /// A dependency is missing or busy; the message is ours and says which.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Storage failed in a way that may pass (unreachable, overloaded). The text
    /// is the store's error: logged with the request id, never sent, since it can
    /// name hosts and carry driver messages.
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::Validation {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            errors,
        }
    }

    pub fn unprocessable(message: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::Validation {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            errors,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { status, .. } => *status,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Csrf(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::ExternalApi(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// One error of every kind: the codes clients may see are exactly theirs
    /// (docs/error-codes.md is checked against them).
    pub fn one_of_each() -> [ApiError; 11] {
        // No wildcard: a new variant stops the build here until it is listed below
        // (QuotaExceeded shares RateLimited's code, so only RateLimited is).
        let _listed = |e: &ApiError| match e {
            ApiError::Validation { .. }
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::Csrf(_)
            | ApiError::NotFound(_)
            | ApiError::Conflict(_)
            | ApiError::RateLimited { .. }
            | ApiError::QuotaExceeded { .. }
            | ApiError::ExternalApi(_)
            | ApiError::Unavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::Internal(_) => (),
        };
        [
            ApiError::Validation {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: String::new(),
                errors: Vec::new(),
            },
            ApiError::Unauthorized(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::Csrf(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::RateLimited { retry_after: 1 },
            ApiError::ExternalApi(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::StoreUnavailable(String::new()),
            ApiError::Internal(String::new()),
        ]
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "VALIDATION_ERROR",
            ApiError::Unauthorized(_) => "AUTH_ERROR",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::Csrf(_) => "CSRF_ERROR",
            ApiError::NotFound(_) => "RESOURCE_NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => "RATE_LIMIT_EXCEEDED",
            ApiError::ExternalApi(_) => "EXTERNAL_API_ERROR",
            ApiError::Unavailable(_) | ApiError::StoreUnavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The envelope body; also used for per-record rejections in bulk results.
    pub fn body(&self) -> ErrorBody {
        let (message, details) = match self {
            ApiError::Validation {
                message, errors, ..
            } if !errors.is_empty() => (message.clone(), json!({ "errors": field_errors(errors) })),
            // Internal details and storage errors stay in the logs.
            ApiError::Internal(_) => ("internal error".to_owned(), json!({})),
            ApiError::StoreUnavailable(_) => (
                "service unavailable: storage is not answering; try again later".to_owned(),
                json!({}),
            ),
            other => (other.to_string(), json!({})),
        };
        ErrorBody {
            code: self.code(),
            message,
            details,
        }
    }
}

pub fn field_errors(errors: &[FieldError]) -> Vec<serde_json::Value> {
    errors
        .iter()
        .map(|e| json!({ "pointer": e.pointer, "message": e.message }))
        .collect()
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. VALIDATION_ERROR.
    #[schema(example = "VALIDATION_ERROR")]
    pub code: &'static str,
    pub message: String,
    /// Always an object; for validation errors
    /// `{"errors":[{"pointer":"/readings/3/glucose_value","message":"..."}]}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// `{"status":"error","error":{...}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    #[schema(example = "error")]
    pub status: &'static str,
    pub error: ErrorBody,
}

/// The cause of a 5xx, kept out of the response body and handed to the access
/// log (`middleware::observe`), which logs it with the request's id and user.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

/// The body of a 5xx, kept on the response until `with_request_id` has put the
/// request id in it.
#[derive(Debug, Clone)]
struct ServerErrorBody(ErrorBody);

/// A 5xx's body with its request id added (`details.request_id`, and in the
/// message), so that a client can quote what the log has the cause under. Runs
/// outside the request-id layers, which put the id on the response; answers
/// other than an `ApiError`'s 5xx pass untouched.
pub fn with_request_id(mut response: Response) -> Response {
    let Some(ServerErrorBody(mut error)) = response.extensions_mut().remove::<ServerErrorBody>()
    else {
        return response;
    };
    let Some(id) = response
        .headers()
        .get(&super::middleware::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return response;
    };
    error.message = format!("{} (request id {id})", error.message);
    if let Some(details) = error.details.as_object_mut() {
        details.insert("request_id".to_owned(), json!(id));
    }
    let body = ErrorEnvelope {
        status: "error",
        error,
    };
    if let Ok(bytes) = serde_json::to_vec(&body) {
        response
            .headers_mut()
            .remove(axum::http::header::CONTENT_LENGTH);
        *response.body_mut() = axum::body::Body::from(bytes);
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(detail)
            | ApiError::Unavailable(detail)
            | ApiError::StoreUnavailable(detail)
            | ApiError::ExternalApi(detail) => Some(ErrorDetail(detail.clone())),
            _ => None,
        };
        let body = ErrorEnvelope {
            status: "error",
            error: self.body(),
        };
        let server_error = status
            .is_server_error()
            .then(|| ServerErrorBody(body.error.clone()));
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } | ApiError::QuotaExceeded { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(server_error) = server_error {
            response.extensions_mut().insert(server_error);
        }
        if let Some(after) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(after),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(detail) = detail {
            response.extensions_mut().insert(detail);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::StoreUnavailable(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A source's connect-flow failure; the source worded the message.
impl From<ConnectFault> for ApiError {
    fn from(e: ConnectFault) -> Self {
        match e {
            ConnectFault::NotConnected(m) => ApiError::NotFound(m),
            ConnectFault::ReauthRequired(m) => ApiError::Conflict(m),
            ConnectFault::BadCallback(m) => ApiError::Unauthorized(m),
            ConnectFault::Declined(m) => ApiError::Forbidden(m),
            ConnectFault::Upstream(m) => ApiError::ExternalApi(m),
            ConnectFault::Busy(m) => ApiError::Unavailable(m),
            ConnectFault::Internal(m) => ApiError::Internal(m),
            ConnectFault::Store(e) => e.into(),
        }
    }
}

/// Creating a notification endpoint failed.
impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Invalid(errors) => {
                ApiError::unprocessable("invalid notification endpoint", errors)
            }
            e @ NotifyError::LimitReached { .. } => {
                ApiError::Conflict(format!("{e}; delete one first"))
            }
            NotifyError::Seal => ApiError::Internal("cannot seal the endpoint's secret".into()),
            NotifyError::Store(e) => e.into(),
        }
    }
}

/// A JSON request body as `T`; 400 VALIDATION_ERROR naming what is wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"), vec![]))
}

/// A query string as `T`; 400 VALIDATION_ERROR naming what is wrong.
pub fn query_params<T: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}"), vec![]))
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::bad_request(e.to_string(), vec![e])
    }
}

/// An account operation's failure: credentials and refresh tokens are 401
/// (one message for unknown email and wrong password), throttling 429, a busy
/// hashing pool or accounts switched off 503.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => ApiError::Conflict(e.to_string()),
            AccountError::InvalidCredentials { .. } | AccountError::InvalidRefreshToken { .. } => {
                ApiError::Unauthorized(e.to_string())
            }
            AccountError::Throttled { retry_after } => ApiError::QuotaExceeded {
                retry_after,
                message: e.to_string(),
            },
            AccountError::Busy
            | AccountError::Disabled
            | AccountError::Mail(_)
            | AccountError::MailOff(_) => ApiError::Unavailable(e.to_string()),
            AccountError::AlreadyVerified => ApiError::Conflict(e.to_string()),
            AccountError::InvalidToken(_) => ApiError::unprocessable(
                "invalid token",
                vec![FieldError::new("token", e.to_string())],
            ),
            AccountError::RegistrationClosed(_) => ApiError::Forbidden(e.to_string()),
            AccountError::InvalidInvitation(_) => ApiError::unprocessable(
                "invalid invitation",
                vec![FieldError::new("invitation_token", e.to_string())],
            ),
            AccountError::InvitationRequired => ApiError::unprocessable(
                "invitation required",
                vec![FieldError::new("invitation_token", e.to_string())],
            ),
            AccountError::Store(e) => e.into(),
            AccountError::Internal(m) => ApiError::Internal(m),
        }
    }
}

//! Reading endpoints: latest (with conditional GET), range with cursor paging, and
//! single or bulk writes with per-record outcomes. One module per endpoint.

mod latest;
mod range;
mod write;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::ApiError;
use super::middleware::RequestUser;
use crate::domain::{FieldError, UserId};

pub use latest::{__path_latest, latest, latest_of};
pub(super) use range::parse_date;
pub use range::{
    __path_range, page_request, range, read_page, OrderName, Pagination, RangeNames, RawRange,
    ReadingsPage,
};
pub use write::{
    __path_write, write, write_readings, BulkInput, BulkResult, RecordOutcome, Shape, Summary,
};

/// A user id taken from a path segment (400 VALIDATION_ERROR if invalid); for
/// routes with more segments than `UserPath` reads.
pub fn path_user(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(invalid_path_user)
}

fn invalid_path_user(e: FieldError) -> ApiError {
    ApiError::bad_request(format!("invalid user id in path: {}", e.message), vec![e])
}

/// The `{userId}` path segment, parsed; the access log is told whose data it is.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // A segment that is not UTF-8 once percent-decoded is rejected by `Path`.
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid_path_user(FieldError::new("user_id", "is not valid UTF-8")))?;
        let user = path_user(&raw)?;
        if let Some(request_user) = parts.extensions.get::<RequestUser>() {
            request_user.set(&user);
        }
        Ok(Self(user))
    }
}

//! Who is calling: bearer JWTs verified into a `Principal` (a user id and its
//! roles). What they may do is decided in one place, `policy`.

pub mod audit;
pub mod jwt;
pub mod policy;
pub mod shares;
pub mod stream_token;

use crate::domain::UserId;

use crate::records::roles::{Role, Roles};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    /// At least one.
    pub roles: Roles,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }
}

/// Why a request is not authenticated. Every variant is a 401 AUTH_ERROR; the
/// message says what to fix without echoing the token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token (Authorization: Bearer <JWT>)")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    #[error("the bearer token's algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("the bearer token's key id is unknown")]
    UnknownKey,
    #[error("the bearer token's claims are invalid: {0}")]
    Claims(String),
    #[error("signing keys cannot be fetched from AUTH_JWKS_URL")]
    KeysUnavailable,
    #[error("bearer authentication is not configured (set AUTH_JWT_SECRET or AUTH_JWKS_URL)")]
    NotConfigured,
}

//! Who is calling: bearer JWTs verified into a `Principal` (a user id and its
//! roles). What they may do is decided in one place, `policy`.

pub mod audit;
pub mod jwt;
pub mod policy;
pub mod shares;

use std::fmt;

use crate::domain::UserId;

/// The contract's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Patient,
    Caregiver,
    Clinician,
    Admin,
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Patient,
        Role::Caregiver,
        Role::Clinician,
        Role::Admin,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Caregiver => "caregiver",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// Exact names only: an unknown role is an invalid token, not ignored.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    /// At least one, no duplicates, sorted.
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
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

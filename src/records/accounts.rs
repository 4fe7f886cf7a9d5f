//! Built-in accounts as the store keeps them: the account (its id is the user
//! id access tokens carry in `sub`), and refresh tokens, kept only as SHA-256
//! fingerprints, grouped in families that rotate one token at a time.

use chrono::{DateTime, Utc};

use crate::domain::{Email, UserId};
use crate::records::roles::{Role, Roles};

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user id of everything the account owns, and the `sub` of its tokens.
    pub id: UserId,
    /// Unique among accounts by `Email::key` (case-insensitive).
    pub email: Email,
    /// Argon2id in PHC string format (`$argon2id$v=19$m=...`).
    pub password_hash: String,
    pub roles: Roles,
    pub full_name: Option<String>,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// Roles as stored: comma-separated names in `Role::ALL` order.
pub fn roles_to_text(roles: Roles) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
}

/// The stored text back into roles; None when a name is unknown or none is there.
pub fn roles_from_text(text: &str) -> Option<Roles> {
    let mut roles = Vec::new();
    for name in text.split(',').filter(|n| !n.is_empty()) {
        roles.push(Role::parse(name)?);
    }
    let roles: Roles = roles.into_iter().collect();
    (!roles.is_empty()).then_some(roles)
}

/// What creating an account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountCreated {
    Created,
    /// Another account has this email (case-insensitively), or this id; nothing written.
    Taken,
}

/// A refresh token to store: the fingerprint of the random token handed out,
/// never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// `digest::sha256_hex` of the token.
    pub hash: String,
    pub account: UserId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token for rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is now used and the next one of its family stored.
    Rotated { account: UserId, family: uuid::Uuid },
    /// The token had been used before: its whole family is revoked now (a
    /// stolen token was replayed, or the legitimate one after the thief's).
    Reused { account: UserId, family: uuid::Uuid },
    /// The family was revoked (logout, reuse) before.
    Revoked,
    /// Past its expiry (nothing written).
    Expired,
    /// No such token.
    Unknown,
}

impl Account {
    /// An account from stored columns; Err names what does not parse (the
    /// backends report it as corrupt).
    pub fn from_stored(
        id: &str,
        email: &str,
        password_hash: String,
        roles: &str,
        full_name: Option<String>,
        email_verified: bool,
        created_at: DateTime<Utc>,
    ) -> Result<Self, String> {
        Ok(Self {
            id: UserId::parse(id).map_err(|e| format!("account id {id:?}: {e}"))?,
            email: Email::parse(email).map_err(|e| format!("email of account {id}: {e}"))?,
            password_hash,
            roles: roles_from_text(roles)
                .ok_or_else(|| format!("roles of account {id}: {roles:?}"))?,
            full_name,
            email_verified,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_as_text() {
        let roles: Roles = [Role::Admin, Role::Patient].into();
        assert_eq!(roles_to_text(roles), "patient,admin");
        assert_eq!(roles_from_text("patient,admin"), Some(roles));
        assert_eq!(roles_from_text(""), None);
        assert_eq!(roles_from_text("patient,root"), None);
    }
}

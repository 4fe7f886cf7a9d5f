//! Invitations as the store keeps them: an email invited to sign up, by whom,
//! until when, and optionally a share to create once that person has an
//! account. Only the SHA-256 of the random token mailed out is stored.

use chrono::{DateTime, Utc};

use crate::domain::{Email, UserId};
use crate::records::shares::ShareRole;

/// A share a patient asked for by email, created when the invitee signs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingShare {
    pub patient: UserId,
    pub role: ShareRole,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// `digest::sha256_hex` of the token; the key.
    pub token_hash: String,
    /// Who may sign up with it (compared by `Email::key`).
    pub email: Email,
    pub invited_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub share: Option<PendingShare>,
    /// Set once an account was made with it.
    pub used: bool,
}

/// Stored columns of an invitation, as text and times (every backend keeps these).
pub struct StoredInvitation<'a> {
    pub token_hash: String,
    pub email: &'a str,
    pub invited_by: &'a str,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub share_patient: Option<&'a str>,
    pub share_role: Option<&'a str>,
    pub share_expires: Option<DateTime<Utc>>,
    pub used: bool,
}

impl StoredInvitation<'_> {
    /// Err names what does not parse (the backends report it as corrupt).
    pub fn parse(self) -> Result<Invitation, String> {
        let what = || format!("invitation {}", self.token_hash);
        let share = match (self.share_patient, self.share_role) {
            (None, None) => None,
            (Some(patient), Some(role)) => Some(PendingShare {
                patient: UserId::parse(patient).map_err(|e| format!("{}: {e}", what()))?,
                role: ShareRole::parse(role)
                    .ok_or_else(|| format!("{}: share role {role:?}", what()))?,
                expires_at: self.share_expires,
            }),
            _ => return Err(format!("{}: half a pending share", what())),
        };
        Ok(Invitation {
            email: Email::parse(self.email).map_err(|e| format!("{}: {e}", what()))?,
            invited_by: UserId::parse(self.invited_by).map_err(|e| format!("{}: {e}", what()))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            share,
            used: self.used,
            token_hash: self.token_hash,
        })
    }
}

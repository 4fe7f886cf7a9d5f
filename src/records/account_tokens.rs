//! Single-use account tokens as the store keeps them: a password reset or an
//! email verification mailed to an account's owner. Only the SHA-256 of the
//! random token is stored; each works once and until it expires.

use chrono::{DateTime, Utc};

use crate::domain::UserId;

/// What a token is for (a reset token cannot verify an email, nor the reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    PasswordReset,
    VerifyEmail,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::VerifyEmail => "verify_email",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "password_reset" => Some(TokenPurpose::PasswordReset),
            "verify_email" => Some(TokenPurpose::VerifyEmail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountToken {
    /// `digest::sha256_hex` of the token; the key.
    pub token_hash: String,
    pub purpose: TokenPurpose,
    pub account: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Set once it was used.
    pub used: bool,
}

impl AccountToken {
    /// A token from stored columns; Err names what does not parse (the
    /// backends report it as corrupt).
    pub fn from_stored(
        token_hash: String,
        purpose: &str,
        account: &str,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        used: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            purpose: TokenPurpose::parse(purpose)
                .ok_or_else(|| format!("account token {token_hash}: purpose {purpose:?}"))?,
            account: UserId::parse(account)
                .map_err(|e| format!("account token {token_hash}: {e}"))?,
            created_at,
            expires_at,
            used,
            token_hash,
        })
    }
}

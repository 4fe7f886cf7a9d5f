//! Patient identifiers: 1–64 characters of `[A-Za-z0-9_-]`.

use std::fmt;
use std::sync::Arc;

use super::FieldError;

pub const MAX_USER_ID_LEN: usize = 64;

/// Cheap to clone (shared), since every reading of a page carries its user's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() || raw.len() > MAX_USER_ID_LEN {
            return Err(FieldError::new(
                "user_id",
                format!("must be 1-{MAX_USER_ID_LEN} characters long"),
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(FieldError::new(
                "user_id",
                "may contain only letters, digits, '_' and '-'",
            ));
        }
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, for keys that should not copy it (rate limits).
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(UserId::parse("user_123-ABC").is_ok());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for bad in ["", &"a".repeat(65), "a b", "a/b", "é", "a.b", "a%2F"] {
            let err = UserId::parse(bad).unwrap_err();
            assert_eq!(err.pointer, "/user_id", "{bad:?}");
        }
    }
}

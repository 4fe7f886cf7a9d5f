//! Account credentials as the domain knows them: an `Email` that is plausibly
//! deliverable and compares case-insensitively, and a `Password` that meets the
//! sign-up policy (NIST SP 800-63B: 8-256 characters, not a commonly breached
//! one). Parsed once at the edge; a value of these types is always valid.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::sync::OnceLock;

use super::FieldError;

/// RFC 5321's limit on a forward path (and so on an address anyone can use).
pub const MAX_EMAIL_LEN: usize = 254;
/// RFC 5321's limit on the local part.
pub const MAX_LOCAL_LEN: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// An email address: trimmed, at most 254 bytes, `local@domain` where the local
/// part is a dot-atom (RFC 5322's atext, no leading, trailing or double dot, at
/// most 64 bytes) and the domain is at least two DNS labels of letters, digits
/// and inner hyphens (at most 63 bytes each) whose last is not all digits.
/// ASCII only: quoted local parts, IP-literal domains and internationalized
/// addresses are refused (a small parser of our own rather than a crate: the
/// rules fit in forty lines and are the ones we document).
///
/// Kept as typed (for display) and compared by its ASCII-lowercased form, `key`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| FieldError::new("email", why.to_owned());
        let text = raw.trim();
        if text.is_empty() {
            return Err(bad("must not be empty"));
        }
        if text.len() > MAX_EMAIL_LEN {
            return Err(bad("must be at most 254 characters"));
        }
        if !text.is_ascii() {
            return Err(bad("must be an ASCII address (local@example.com)"));
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(bad("must have the form local@example.com"));
        };
        let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b);
        let local_ok = !local.is_empty()
            && local.len() <= MAX_LOCAL_LEN
            && local
                .split('.')
                .all(|atom| !atom.is_empty() && atom.bytes().all(atext));
        if !local_ok {
            return Err(bad(
                "has an invalid local part (letters, digits, !#$%&'*+/=?^_`{|}~- and single inner dots, at most 64)",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let domain_ok = labels.len() >= 2
            && labels.iter().all(label_ok)
            && labels
                .last()
                .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if !domain_ok {
            return Err(bad("has an invalid domain (example.com)"));
        }
        Ok(Self {
            display: text.to_owned(),
            key: text.to_ascii_lowercase(),
        })
    }

    /// As the person typed it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form addresses are compared and stored unique by (ASCII case-folded).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.display)
    }
}

/// A password that meets the sign-up policy: 8-256 characters (Unicode scalar
/// values, so a passphrase in any script counts what a person sees), and not one
/// of the shipped breached passwords, compared case-folded. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        if is_breached(raw) {
            return Err(FieldError::new(
                "password",
                "is a commonly used password found in data breaches; choose another",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A password as presented at login: only bounded (1-256 characters), since it
/// is compared with a stored hash, not judged; never printed.
#[derive(Clone)]
pub struct PasswordAttempt(String);

impl PasswordAttempt {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars == 0 || chars > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be 1-{MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordAttempt([redacted])")
    }
}

/// The breached list (`breached/passwords.txt.gz`, see `breached/SOURCE.md`),
/// gzip-compressed in the binary, unpacked into a set on first use.
const BREACHED_GZ: &[u8] = include_bytes!("breached/passwords.txt.gz");

fn breached() -> &'static HashSet<Box<str>> {
    static SET: OnceLock<HashSet<Box<str>>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(BREACHED_GZ)
            .read_to_string(&mut text)
            .expect("the shipped breached-password list is valid gzip of UTF-8");
        text.lines().map(Box::from).collect()
    })
}

/// How many passwords the shipped breached list holds.
pub fn breached_list_len() -> usize {
    breached().len()
}

/// Is this password (case-folded) on the breached list?
pub fn is_breached(password: &str) -> bool {
    breached().contains(password.to_lowercase().as_str())
}

/// Loads the breached list now (at start-up), so the first sign-up does not pay
/// for unpacking it.
pub fn preload_breached_list() {
    let _ = breached();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_compared_case_folded() {
        let a = Email::parse("  Alice.Smith+cgm@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Alice.Smith+cgm@Example.COM");
        assert_eq!(a.key(), "alice.smith+cgm@example.com");
        assert_eq!(
            a.key(),
            Email::parse("alice.smith+cgm@example.com").unwrap().key()
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        for raw in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a b@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@example..com",
            "a@1.2.3.4",
            "a@[127.0.0.1]",
            "\"quoted\"@example.com",
            "élise@example.com",
            "a@exämple.com",
            "x' OR '1'='1@example.com",
            "{\"$gt\":\"\"}@example.com",
            "a@example.com\n",
            long_local.as_str(),
            long.as_str(),
        ] {
            if raw == "a@example.com\n" {
                // Trimmed: whitespace around is not part of the address.
                assert!(Email::parse(raw).is_ok());
                continue;
            }
            let e = Email::parse(raw).expect_err(raw);
            assert_eq!(e.pointer, "/email", "{raw}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(64))).is_ok());
    }

    #[test]
    fn passwords_need_length_and_must_not_be_breached() {
        assert_eq!(Password::parse("short").unwrap_err().pointer, "/password");
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse(&"x".repeat(256)).is_ok());
        assert!(Password::parse("xxxxxxxx").is_err());
        for common in [
            "password",
            "PASSWORD1",
            "Iloveyou",
            "12345678",
            "qwertyuiop",
        ] {
            assert!(is_breached(common), "{common}");
            assert_eq!(Password::parse(common).unwrap_err().pointer, "/password");
        }
        assert!(Password::parse("correct horse battery staple 42").is_ok());
        // Eight characters counted as characters, not bytes.
        assert!(Password::parse("ñandú-çå").is_ok());
        assert_eq!(breached_list_len(), 100_000);
    }

    #[test]
    fn secrets_do_not_print() {
        let p = Password::parse("correct horse battery staple 42").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
        let a = PasswordAttempt::parse("hunter22").unwrap();
        assert!(!format!("{a:?}").contains("hunter"));
    }
}

//! The security section (AUTH_*, TOKEN_ENCRYPTION_KEY*, WEBHOOK_SIGNING_SECRET): how
//! callers prove who they are, the keys that seal Dexcom tokens, and the rules that
//! keep a staging or production start from trusting forgeable credentials.

use base64::Engine;

use super::{http_url, invalid, ConfigError, ServiceEnv, Vars};
use crate::secret::Secret;

/// Shortest HS256 and webhook HMAC secret staging and production accept: the
/// hash's output size (RFC 7518 §3.2 asks at least that much for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// What the security section parses into; `Settings` keeps these as flat fields.
pub(super) struct Auth {
    pub disabled: bool,
    pub jwt_secret: Option<Secret<String>>,
    pub jwks_url: Option<url::Url>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub token_encryption_key: Option<Secret<[u8; 32]>>,
    pub token_encryption_key_previous: Vec<Secret<[u8; 32]>>,
    pub webhook_signing_secret: Option<Secret<String>>,
}

pub(super) fn parse(v: &Vars<'_>, env: ServiceEnv) -> Result<Auth, ConfigError> {
    let disabled = v.bool("AUTH_DISABLED")?;
    if disabled && env != ServiceEnv::Development {
        return Err(invalid(
            "AUTH_DISABLED",
            "is allowed only when SERVICE_ENV=development",
        ));
    }
    let token_encryption_key = v
        .optional("TOKEN_ENCRYPTION_KEY")
        .map(|raw| key_32("TOKEN_ENCRYPTION_KEY", raw))
        .transpose()?;
    let token_encryption_key_previous =
        v.optional("TOKEN_ENCRYPTION_KEY_PREVIOUS")
            .map_or(Ok(Vec::new()), |raw| {
                raw.split(',')
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| key_32("TOKEN_ENCRYPTION_KEY_PREVIOUS", k))
                    .collect::<Result<Vec<_>, _>>()
            })?;
    if env != ServiceEnv::Development && token_encryption_key.is_none() {
        return Err(invalid(
            "TOKEN_ENCRYPTION_KEY",
            "is required when SERVICE_ENV is staging or production",
        ));
    }
    let jwks_url = v
        .optional("AUTH_JWKS_URL")
        .map(|raw| http_url("AUTH_JWKS_URL", raw))
        .transpose()?;
    if env != ServiceEnv::Development {
        deployed_auth_is_strong(v, jwks_url.as_ref())?;
    }
    Ok(Auth {
        disabled,
        jwt_secret: v
            .optional("AUTH_JWT_SECRET")
            .map(|s| Secret::new(s.to_owned())),
        jwks_url,
        issuer: v.optional("AUTH_ISSUER").map(str::to_owned),
        audience: v.optional("AUTH_AUDIENCE").map(str::to_owned),
        token_encryption_key,
        token_encryption_key_previous,
        webhook_signing_secret: v
            .optional("WEBHOOK_SIGNING_SECRET")
            .map(|s| Secret::new(s.to_owned())),
    })
}

/// Staging and production refuse settings that let someone forge what the
/// service trusts: short HMAC secrets (guessable offline from one signed token
/// or webhook), a JWKS fetched over plain http (an on-path attacker swaps the
/// keys), and JWKS tokens accepted from any issuer for any audience (another
/// application's tokens from the same identity provider would pass).
fn deployed_auth_is_strong(v: &Vars<'_>, jwks: Option<&url::Url>) -> Result<(), ConfigError> {
    for name in ["AUTH_JWT_SECRET", "WEBHOOK_SIGNING_SECRET"] {
        if let Some(secret) = v.optional(name) {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    name,
                    format!(
                        "must be at least {MIN_SECRET_BYTES} bytes in staging and production \
                         (it has {}); generate one with `openssl rand -hex 32`",
                        secret.len()
                    ),
                ));
            }
        }
    }
    if let Some(url) = jwks {
        if url.scheme() != "https" {
            return Err(invalid(
                "AUTH_JWKS_URL",
                "must be an https:// URL in staging and production",
            ));
        }
        for name in ["AUTH_ISSUER", "AUTH_AUDIENCE"] {
            if v.optional(name).is_none() {
                return Err(invalid(
                    name,
                    "is required with AUTH_JWKS_URL in staging and production",
                ));
            }
        }
    }
    Ok(())
}

fn key_32(variable: &'static str, raw: &str) -> Result<Secret<[u8; 32]>, ConfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Secret::new)
        .ok_or_else(|| invalid(variable, "must be base64 of exactly 32 bytes"))
}

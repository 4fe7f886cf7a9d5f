//! The HTTP section: where the service listens and how it is reached (BIND_ADDR,
//! PORT, PUBLIC_BASE_URL, TLS_*, CORS_ALLOWED_ORIGINS), what one connection or
//! request may hold of it (HTTP_*, WEBHOOK_*), and the rate limits (RATE_LIMIT_*,
//! TRUSTED_PROXY*).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::proxies::{self, TrustedProxies};
use super::{invalid, ConfigError, Vars};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// What one client connection may hold of the server (HTTP_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// From the connection being ready for a request to its headers complete (also the
    /// keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// For a whole request body.
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

/// Webhook bodies come from anyone who can reach the port: tighter limits (WEBHOOK_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_concurrent_bodies: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub anonymous_per_minute: u32,
    pub user_per_minute: u32,
    pub webhook_per_minute: u32,
    /// Proxies in front of the service whose `X-Forwarded-For` is believed; none:
    /// the peer address is the client (the header could be forged).
    pub trusted_proxies: TrustedProxies,
}

/// Where the service listens and how clients reach it; `Settings` keeps these as
/// flat fields.
pub(super) struct Listener {
    pub bind_addr: SocketAddr,
    pub public_base_url: Option<String>,
    pub tls: Option<TlsSettings>,
    pub cors_allowed_origins: Vec<String>,
}

pub(super) fn listener(v: &Vars<'_>) -> Result<Listener, ConfigError> {
    let bind_addr = match (v.optional("BIND_ADDR"), v.optional("PORT")) {
        (None, Some(port)) => {
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("PORT", format!("{port:?} is not a port number")))?;
            SocketAddr::from(([0, 0, 0, 0], port))
        }
        _ => {
            let raw = v.get("BIND_ADDR");
            raw.parse().map_err(|_| {
                invalid(
                    "BIND_ADDR",
                    format!("{raw:?} is not an address like 0.0.0.0:5001"),
                )
            })?
        }
    };
    let public_base_url = v
        .optional("PUBLIC_BASE_URL")
        .map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &public_base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "PUBLIC_BASE_URL",
                "must start with http:// or https://",
            ));
        }
    }
    let tls = match (v.optional("TLS_CERT_PATH"), v.optional("TLS_KEY_PATH")) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert_path: PathBuf::from(cert),
            key_path: PathBuf::from(key),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("TLS_KEY_PATH", "is required with TLS_CERT_PATH")),
        (None, Some(_)) => return Err(invalid("TLS_CERT_PATH", "is required with TLS_KEY_PATH")),
    };
    let cors_allowed_origins = v
        .optional("CORS_ALLOWED_ORIGINS")
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| match url::Url::parse(o) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {
                        Ok(o.trim_end_matches('/').to_owned())
                    }
                    _ => Err(invalid(
                        "CORS_ALLOWED_ORIGINS",
                        format!("{o:?} is not an origin like https://app.example.org"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(Listener {
        bind_addr,
        public_base_url,
        tls,
        cors_allowed_origins,
    })
}

pub(super) fn rate_limits(v: &Vars<'_>) -> Result<RateLimitSettings, ConfigError> {
    Ok(RateLimitSettings {
        anonymous_per_minute: v.number("RATE_LIMIT_ANONYMOUS_PER_MINUTE", 1, 100_000_000)?,
        user_per_minute: v.number("RATE_LIMIT_USER_PER_MINUTE", 1, 100_000_000)?,
        webhook_per_minute: v.number("RATE_LIMIT_WEBHOOK_PER_MINUTE", 1, 100_000_000)?,
        trusted_proxies: proxies::parse(v)?,
    })
}

pub(super) fn connections(v: &Vars<'_>) -> Result<HttpSettings, ConfigError> {
    Ok(HttpSettings {
        header_read_timeout: Duration::from_secs(v.number(
            "HTTP_HEADER_READ_TIMEOUT_SECONDS",
            1,
            3600,
        )?),
        body_read_timeout: Duration::from_secs(v.number(
            "HTTP_BODY_READ_TIMEOUT_SECONDS",
            1,
            3600,
        )?),
        max_connections: v.number("HTTP_MAX_CONNECTIONS", 1, 1_000_000)?,
    })
}

pub(super) fn webhook(v: &Vars<'_>) -> Result<WebhookSettings, ConfigError> {
    Ok(WebhookSettings {
        max_body_bytes: v.number("WEBHOOK_MAX_BODY_BYTES", 1024, 1 << 30)?,
        body_timeout: Duration::from_secs(v.number("WEBHOOK_BODY_TIMEOUT_SECONDS", 1, 3600)?),
        max_concurrent_bodies: v.number("WEBHOOK_MAX_CONCURRENT_BODIES", 1, 100_000)?,
    })
}

//! Typed settings, read once at start-up from the environment (and `.env`).
//!
//! Every variable is parsed into a typed value; a bad value stops the process with a
//! one-line message naming the variable. Secrets are wrapped in `Secret`, whose
//! `Debug` and `Display` print `[redacted]`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

mod reference;
mod variables;

pub use reference::{env_example, markdown_reference};
pub use variables::{Group, Variable, VARIABLES};

#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnv {
    Development,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub enum StorageSettings {
    Sqlite {
        path: PathBuf,
        durability: crate::store::sqlite::Durability,
    },
    Postgres {
        /// May hold a password.
        url: Secret<String>,
        max_connections: u32,
    },
    /// Tables are created on start-up when absent (docs/dynamodb.md).
    DynamoDb {
        /// None: the AWS endpoint of `region`.
        endpoint: Option<url::Url>,
        region: String,
        readings_table: String,
        user_tokens_table: String,
        sync_jobs_table: String,
        /// Shares, audit, OAuth states, leases, webhook inbox and outbox.
        aux_table: String,
    },
}

#[derive(Clone)]
pub enum EventBusKind {
    Memory,
    RabbitMq(crate::events::rabbitmq::RabbitSettings),
}

impl std::fmt::Debug for EventBusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventBusKind::Memory => f.write_str("Memory"),
            EventBusKind::RabbitMq(r) => f
                .debug_struct("RabbitMq")
                .field("exchange", &r.exchange)
                .field("queue", &r.queue)
                .finish_non_exhaustive(),
        }
    }
}

/// The Dexcom OAuth client and the policy for every outbound call to Dexcom.
#[derive(Debug, Clone)]
pub struct DexcomSettings {
    pub client_id: Option<String>,
    pub client_secret: Option<Secret<String>>,
    /// Where Dexcom sends the browser back (our `/oauth/callback`); must match the
    /// URI registered with Dexcom.
    pub redirect_uri: Option<url::Url>,
    pub api_base_url: url::Url,
    pub api_version: ApiVersion,
    /// Send a PKCE S256 challenge (Dexcom does not document PKCE; off if it objects).
    pub pkce: bool,
    /// How long an authorization in progress stays completable (at most `STATE_TTL`).
    pub state_ttl: Duration,
    /// Authorizations in progress kept per user (the newest).
    pub pending_per_user: usize,
    /// How often expired authorizations are deleted.
    pub state_prune_interval: Duration,
    /// App-wide budget of outbound calls per hour (Dexcom allows 60,000 per app).
    pub calls_per_hour: u32,
    /// Each user's share of it: data calls per user per hour.
    pub calls_per_user_per_hour: u32,
    /// `POST /oauth/refresh` within this long of a successful refresh answers with it.
    pub refresh_min_interval: Duration,
    /// History fetched when a user first connects.
    pub backfill_days: u32,
    pub max_retries: u32,
    pub retry_backoff_factor: f64,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V2,
    V3,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "v2",
            ApiVersion::V3 => "v3",
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct Settings {
    pub env: ServiceEnv,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
    pub bind_addr: SocketAddr,
    /// Base of absolute links (pagination); derived from the request's Host when unset.
    pub public_base_url: Option<String>,
    /// Serve HTTPS (rustls, TLS 1.2+) with this PEM certificate chain and key.
    pub tls: Option<TlsSettings>,
    /// Browser origins allowed to call the API (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
    pub storage: StorageSettings,
    pub event_bus: EventBusKind,
    pub auth_disabled: bool,
    pub auth_jwt_secret: Option<Secret<String>>,
    /// RS256/ES256 verification keys (a JWKS document).
    pub auth_jwks_url: Option<url::Url>,
    pub auth_issuer: Option<String>,
    pub auth_audience: Option<String>,
    pub token_encryption_key: Option<Secret<[u8; 32]>>,
    /// Keys that sealed tokens before the last rotation; still accepted for opening.
    pub token_encryption_key_previous: Vec<Secret<[u8; 32]>>,
    pub webhook_signing_secret: Option<Secret<String>>,
    pub dexcom: DexcomSettings,
    pub rate_limits: crate::api::rate_limit::RateLimitSettings,
    pub max_body_bytes: usize,
    pub max_batch_records: usize,
    /// The listener's limits: header and body timeouts, connection cap.
    pub http: HttpSettings,
    /// How webhook bodies are read: size, time and concurrency.
    pub webhook: WebhookSettings,
    /// Most grants one patient may hold.
    pub max_shares_per_patient: usize,
    /// Readings one user id may write per hour (WRITE_QUOTA_READINGS_PER_HOUR).
    pub write_quota_readings_per_hour: u32,
    pub reading_max_age_years: u32,
    pub shutdown_timeout: Duration,
    pub demo: bool,
    pub demo_backfill_days: u32,
    /// The sync engine and scheduler (POLL_INTERVAL_SECONDS, SYNC_*).
    pub sync: crate::sync::engine::SyncSettings,
}

impl Settings {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is an error worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(invalid("(.env file)", e.to_string())),
        }
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(vars);
        let env = match v.get("SERVICE_ENV").to_ascii_lowercase().as_str() {
            "development" | "dev" => ServiceEnv::Development,
            "staging" => ServiceEnv::Staging,
            "production" | "prod" => ServiceEnv::Production,
            other => {
                return Err(invalid(
                    "SERVICE_ENV",
                    format!("{other:?} is not development, staging or production"),
                ))
            }
        };
        let log_level = match v.get("LOG_LEVEL").to_ascii_uppercase().as_str() {
            "TRACE" => tracing::Level::TRACE,
            "DEBUG" => tracing::Level::DEBUG,
            "INFO" => tracing::Level::INFO,
            "WARNING" | "WARN" => tracing::Level::WARN,
            "ERROR" | "CRITICAL" => tracing::Level::ERROR,
            other => {
                return Err(invalid(
                    "LOG_LEVEL",
                    format!("{other:?} is not DEBUG, INFO, WARNING, ERROR or CRITICAL"),
                ))
            }
        };
        let log_format = match v.get("LOG_FORMAT").to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "pretty" | "text" => LogFormat::Pretty,
            other => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("{other:?} is not json or pretty"),
                ))
            }
        };
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
            (Some(_), None) => {
                return Err(invalid("TLS_KEY_PATH", "is required with TLS_CERT_PATH"))
            }
            (None, Some(_)) => {
                return Err(invalid("TLS_CERT_PATH", "is required with TLS_KEY_PATH"))
            }
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
        let storage = match v.get("STORAGE_BACKEND").to_ascii_lowercase().as_str() {
            "sqlite" => StorageSettings::Sqlite {
                path: PathBuf::from(v.get("SQLITE_PATH")),
                durability: match v.get("SQLITE_SYNCHRONOUS").to_ascii_lowercase().as_str() {
                    "full" => crate::store::sqlite::Durability::Full,
                    "normal" => crate::store::sqlite::Durability::Normal,
                    other => {
                        return Err(invalid(
                            "SQLITE_SYNCHRONOUS",
                            format!("{other:?} is not full or normal"),
                        ))
                    }
                },
            },
            "postgres" => StorageSettings::Postgres {
                url: Secret::new(v.optional("DATABASE_URL").map(str::to_owned).ok_or_else(
                    || invalid("DATABASE_URL", "is required when STORAGE_BACKEND=postgres"),
                )?),
                max_connections: v.number("DATABASE_MAX_CONNECTIONS", 1, 1000)?,
            },
            "dynamodb" => StorageSettings::DynamoDb {
                endpoint: v
                    .optional("DYNAMODB_ENDPOINT")
                    .map(|raw| {
                        url::Url::parse(raw)
                            .ok()
                            .filter(|u| matches!(u.scheme(), "http" | "https"))
                            .ok_or_else(|| {
                                invalid(
                                    "DYNAMODB_ENDPOINT",
                                    format!("{raw:?} is not an http(s) URL"),
                                )
                            })
                    })
                    .transpose()?,
                region: v.get("AWS_REGION").to_owned(),
                readings_table: v.get("DYNAMODB_TABLE").to_owned(),
                user_tokens_table: v.get("DYNAMODB_USER_TOKENS_TABLE").to_owned(),
                sync_jobs_table: v.get("DYNAMODB_SYNC_JOBS_TABLE").to_owned(),
                aux_table: v.get("DYNAMODB_AUX_TABLE").to_owned(),
            },
            other => {
                return Err(invalid(
                    "STORAGE_BACKEND",
                    format!("{other:?} is not sqlite, postgres or dynamodb"),
                ))
            }
        };
        if let Some(url) = v.optional("DATABASE_URL") {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid("DATABASE_URL", "must be a postgres:// URL"));
            }
        }
        let event_bus = match v.get("EVENT_BUS").to_ascii_lowercase().as_str() {
            "memory" => EventBusKind::Memory,
            "rabbitmq" => EventBusKind::RabbitMq(crate::events::rabbitmq::RabbitSettings {
                url: Secret::new(v.optional("RABBITMQ_URL").map(str::to_owned).ok_or_else(
                    || invalid("RABBITMQ_URL", "is required when EVENT_BUS=rabbitmq"),
                )?),
                exchange: v.get("RABBITMQ_EXCHANGE").to_owned(),
                queue: v.get("RABBITMQ_QUEUE").to_owned(),
            }),
            other => {
                return Err(invalid(
                    "EVENT_BUS",
                    format!("{other:?} is not memory or rabbitmq"),
                ))
            }
        };
        if let Some(url) = v.optional("RABBITMQ_URL") {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(invalid(
                    "RABBITMQ_URL",
                    "must be an amqp:// or amqps:// URL",
                ));
            }
        }
        let auth_disabled = v.bool("AUTH_DISABLED")?;
        if auth_disabled && env != ServiceEnv::Development {
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
        let demo = v.bool("DEMO")?;
        if demo && env != ServiceEnv::Development {
            return Err(invalid(
                "DEMO",
                "is allowed only when SERVICE_ENV=development",
            ));
        }
        let max_batch_records: usize = v.number("MAX_BATCH_RECORDS", 1, 1_000_000)?;
        let auth_jwks_url = v
            .optional("AUTH_JWKS_URL")
            .map(|raw| http_url("AUTH_JWKS_URL", raw))
            .transpose()?;
        if env != ServiceEnv::Development {
            deployed_auth_is_strong(&v, auth_jwks_url.as_ref())?;
        }
        Ok(Settings {
            env,
            log_level,
            log_format,
            bind_addr,
            public_base_url,
            tls,
            cors_allowed_origins,
            storage,
            event_bus,
            auth_disabled,
            auth_jwt_secret: v
                .optional("AUTH_JWT_SECRET")
                .map(|s| Secret::new(s.to_owned())),
            auth_jwks_url,
            auth_issuer: v.optional("AUTH_ISSUER").map(str::to_owned),
            auth_audience: v.optional("AUTH_AUDIENCE").map(str::to_owned),
            token_encryption_key,
            token_encryption_key_previous,
            webhook_signing_secret: v
                .optional("WEBHOOK_SIGNING_SECRET")
                .map(|s| Secret::new(s.to_owned())),
            dexcom: dexcom_settings(&v, env == ServiceEnv::Production)?,
            rate_limits: crate::api::rate_limit::RateLimitSettings {
                anonymous_per_minute: v.number(
                    "RATE_LIMIT_ANONYMOUS_PER_MINUTE",
                    1,
                    100_000_000,
                )?,
                user_per_minute: v.number("RATE_LIMIT_USER_PER_MINUTE", 1, 100_000_000)?,
                webhook_per_minute: v.number("RATE_LIMIT_WEBHOOK_PER_MINUTE", 1, 100_000_000)?,
                trusted_proxies: trusted_proxies(&v)?,
            },
            max_body_bytes: v.number("MAX_BODY_BYTES", 1024, 1 << 30)?,
            max_batch_records,
            http: HttpSettings {
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
            },
            webhook: WebhookSettings {
                max_body_bytes: v.number("WEBHOOK_MAX_BODY_BYTES", 1024, 1 << 30)?,
                body_timeout: Duration::from_secs(v.number(
                    "WEBHOOK_BODY_TIMEOUT_SECONDS",
                    1,
                    3600,
                )?),
                max_concurrent_bodies: v.number("WEBHOOK_MAX_CONCURRENT_BODIES", 1, 100_000)?,
            },
            max_shares_per_patient: v.number("SHARES_MAX_PER_PATIENT", 1, 100_000)?,
            write_quota_readings_per_hour: v.number(
                "WRITE_QUOTA_READINGS_PER_HOUR",
                1,
                1_000_000_000,
            )?,
            reading_max_age_years: v.number("READING_MAX_AGE_YEARS", 1, 100)?,
            shutdown_timeout: Duration::from_secs(v.number("SHUTDOWN_TIMEOUT_SECONDS", 0, 3600)?),
            demo,
            demo_backfill_days: v.number("DEMO_BACKFILL_DAYS", 0, 365)?,
            sync: crate::sync::engine::SyncSettings {
                interval: Duration::from_secs(v.number("POLL_INTERVAL_SECONDS", 1, 86_400)?),
                overlap: Duration::from_secs(v.number("SYNC_OVERLAP_SECONDS", 0, 30 * 86_400)?),
                backfill_days: v.number("DEXCOM_BACKFILL_DAYS", 0, 3650)?,
                concurrency: v.number("SYNC_CONCURRENCY", 1, 256)?,
                timeout: Duration::from_secs(v.number("SYNC_TIMEOUT_SECONDS", 1, 86_400)?),
                lease: Duration::from_secs(v.number("SYNC_LEASE_SECONDS", 1, 3600)?),
                max_queued_per_user: v.number("SYNC_MAX_QUEUED_JOBS_PER_USER", 1, 10_000)?,
                ..crate::sync::engine::SyncSettings::default()
            },
        })
    }
}

/// Shortest HS256 and webhook HMAC secret staging and production accept: the
/// hash's output size (RFC 7518 §3.2 asks at least that much for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

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

/// TRUSTED_PROXIES and TRUSTED_PROXY_HOPS, which make sense only together: hops
/// without networks would believe `X-Forwarded-For` from anyone (so anyone could
/// pick the address it is limited under), networks without hops would be ignored.
fn trusted_proxies(v: &Vars<'_>) -> Result<crate::api::client_ip::TrustedProxies, ConfigError> {
    let networks = v
        .optional("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.parse().map_err(|e| invalid("TRUSTED_PROXIES", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let hops = v.number("TRUSTED_PROXY_HOPS", 0, 10)?;
    match (networks.is_empty(), hops) {
        (true, 1..) => Err(invalid(
            "TRUSTED_PROXY_HOPS",
            "needs TRUSTED_PROXIES, the networks of the proxies whose X-Forwarded-For \
             is believed (e.g. 10.0.0.0/8)",
        )),
        (false, 0) => Err(invalid(
            "TRUSTED_PROXIES",
            "is set but TRUSTED_PROXY_HOPS is 0: set it to the number of proxies \
             that append to X-Forwarded-For",
        )),
        _ => Ok(crate::api::client_ip::TrustedProxies { networks, hops }),
    }
}

fn key_32(variable: &'static str, raw: &str) -> Result<Secret<[u8; 32]>, ConfigError> {
    base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Secret::new)
        .ok_or_else(|| invalid(variable, "must be base64 of exactly 32 bytes"))
}

fn http_url(variable: &'static str, raw: &str) -> Result<url::Url, ConfigError> {
    match url::Url::parse(raw.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        _ => Err(invalid(
            variable,
            format!("{raw:?} is not an http:// or https:// URL"),
        )),
    }
}

fn dexcom_settings(v: &Vars<'_>, production: bool) -> Result<DexcomSettings, ConfigError> {
    // Dexcom's hosts by name (reference: dexcom-api.md §1), or any URL (a simulator).
    let base = match v
        .get("DEXCOM_API_BASE_URL")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "sandbox" => "https://sandbox-api.dexcom.com".to_owned(),
        "us" | "production" => "https://api.dexcom.com".to_owned(),
        "eu" => "https://api.dexcom.eu".to_owned(),
        "jp" => "https://api.dexcom.jp".to_owned(),
        _ => v
            .get("DEXCOM_API_BASE_URL")
            .trim_end_matches('/')
            .to_owned(),
    };
    let api_version = match v.get("DEXCOM_API_VERSION").to_ascii_lowercase().as_str() {
        "v3" | "3" => ApiVersion::V3,
        "v2" | "2" => ApiVersion::V2,
        other => {
            return Err(invalid(
                "DEXCOM_API_VERSION",
                format!("{other:?} is not v2 or v3"),
            ))
        }
    };
    let factor: f64 = v.number("RETRY_BACKOFF_FACTOR", 1.0, 10.0)?;
    let redirect_uri = v
        .optional("DEXCOM_REDIRECT_URI")
        .map(|raw| http_url("DEXCOM_REDIRECT_URI", raw))
        .transpose()?;
    // All three or none: a half-configured OAuth client fails at the first user.
    let client = [
        "DEXCOM_CLIENT_ID",
        "DEXCOM_CLIENT_SECRET",
        "DEXCOM_REDIRECT_URI",
    ];
    let set = client.iter().filter(|n| v.optional(n).is_some()).count();
    if set > 0 && set < client.len() {
        if let Some(missing) = client.iter().find(|n| v.optional(n).is_none()) {
            return Err(invalid(
                missing,
                "is required when any of DEXCOM_CLIENT_ID, DEXCOM_CLIENT_SECRET, DEXCOM_REDIRECT_URI is set",
            ));
        }
    }
    let api_base_url = http_url("DEXCOM_API_BASE_URL", &base)?;
    // In production the client secret and the tokens travel only over TLS.
    if production {
        for (name, url) in [
            ("DEXCOM_API_BASE_URL", Some(&api_base_url)),
            ("DEXCOM_REDIRECT_URI", redirect_uri.as_ref()),
        ] {
            if url.is_some_and(|u| u.scheme() != "https") {
                return Err(invalid(name, "must be an https:// URL in production"));
            }
        }
    }
    Ok(DexcomSettings {
        client_id: v.optional("DEXCOM_CLIENT_ID").map(str::to_owned),
        client_secret: v
            .optional("DEXCOM_CLIENT_SECRET")
            .map(|s| Secret::new(s.to_owned())),
        redirect_uri,
        api_base_url,
        api_version,
        pkce: v.bool("DEXCOM_PKCE")?,
        state_ttl: Duration::from_secs(v.number(
            "OAUTH_STATE_TTL_SECONDS",
            1,
            crate::sources::dexcom::oauth::STATE_TTL.as_secs(),
        )?),
        pending_per_user: v.number("OAUTH_PENDING_PER_USER", 1, 1000)?,
        state_prune_interval: Duration::from_secs(v.number(
            "OAUTH_STATE_PRUNE_INTERVAL_SECONDS",
            1,
            86_400,
        )?),
        calls_per_hour: v.number("DEXCOM_CALLS_PER_HOUR", 60, 1_000_000)?,
        calls_per_user_per_hour: v.number("DEXCOM_CALLS_PER_USER_PER_HOUR", 1, 1_000_000)?,
        refresh_min_interval: Duration::from_secs(v.number(
            "OAUTH_REFRESH_MIN_INTERVAL_SECONDS",
            0,
            3600,
        )?),
        backfill_days: v.number("DEXCOM_BACKFILL_DAYS", 0, 3650)?,
        max_retries: v.number("MAX_RETRIES", 0, 10)?,
        retry_backoff_factor: factor,
        request_timeout: Duration::from_secs(v.number("REQUEST_TIMEOUT_SECONDS", 1, 600)?),
    })
}

/// Variable lookup with the defaults of `VARIABLES`; empty counts as unset.
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn default_of(name: &str) -> &'static str {
        VARIABLES
            .iter()
            .find(|v| v.name == name)
            .map_or("", |v| v.default)
    }

    fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(|s| s.as_str())
            .filter(|s| !s.trim().is_empty())
    }

    fn get(&self, name: &str) -> &str {
        self.optional(name)
            .unwrap_or_else(|| Self::default_of(name))
    }

    fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(invalid(name, format!("{other:?} is not true or false"))),
        }
    }

    fn number<T>(&self, name: &'static str, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let raw = self.get(name);
        match raw.trim().parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(invalid(
                name,
                format!("{raw:?} is not a number in {min}..={max}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The registry and the parser agree: every variable `from_vars` reads is listed
    /// (with its default and meaning) and every listed variable is read.
    #[test]
    fn the_registry_lists_exactly_the_variables_the_parser_reads() {
        let source = include_str!("mod.rs");
        let parser = &source[..source
            .find("#[cfg(test)]")
            .expect("tests follow the parser")];
        let mut read = std::collections::BTreeSet::new();
        for call in [".get(", ".optional(", ".number(", ".bool("] {
            for (at, _) in parser.match_indices(call) {
                let rest = parser[at + call.len()..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    let name = &quoted[..quoted.find('"').expect("closing quote")];
                    if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        read.insert(name);
                    }
                }
            }
        }
        let listed: std::collections::BTreeSet<_> = VARIABLES.iter().map(|v| v.name).collect();
        assert_eq!(read, listed);
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.env, ServiceEnv::Development);
        assert_eq!(s.bind_addr.to_string(), "0.0.0.0:5001");
        assert!(!s.auth_disabled);
        assert!(
            matches!(s.storage, StorageSettings::Sqlite { ref path, .. } if path.ends_with("cgm-hub.db"))
        );
    }

    #[test]
    fn forwarded_for_needs_both_the_proxies_and_the_hops() {
        let s = settings(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8"),
            ("TRUSTED_PROXY_HOPS", "2"),
        ])
        .unwrap();
        let proxies = &s.rate_limits.trusted_proxies;
        assert_eq!(proxies.hops, 2);
        assert_eq!(proxies.networks.len(), 2);
        assert!(settings(&[])
            .unwrap()
            .rate_limits
            .trusted_proxies
            .networks
            .is_empty());
        for (vars, variable) in [
            (&[("TRUSTED_PROXY_HOPS", "1")][..], "TRUSTED_PROXY_HOPS"),
            (&[("TRUSTED_PROXIES", "10.0.0.0/8")][..], "TRUSTED_PROXIES"),
            (
                &[
                    ("TRUSTED_PROXIES", "10.0.0.1/8"),
                    ("TRUSTED_PROXY_HOPS", "1"),
                ][..],
                "TRUSTED_PROXIES",
            ),
            (
                &[
                    ("TRUSTED_PROXIES", "proxy.local"),
                    ("TRUSTED_PROXY_HOPS", "1"),
                ][..],
                "TRUSTED_PROXIES",
            ),
        ] {
            let e = settings(vars).unwrap_err();
            assert_eq!(e.variable, variable, "{vars:?}: {e}");
        }
    }

    #[test]
    fn production_talks_to_dexcom_over_tls_only() {
        let prod = [
            ("SERVICE_ENV", "production"),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = prod.to_vec();
            vars.push(extra);
            settings(&vars)
        };
        assert_eq!(
            with(("DEXCOM_API_BASE_URL", "http://127.0.0.1:5080"))
                .unwrap_err()
                .variable,
            "DEXCOM_API_BASE_URL"
        );
        assert!(with(("DEXCOM_API_BASE_URL", "us")).is_ok());
        assert!(settings(&[("DEXCOM_API_BASE_URL", "http://127.0.0.1:5080")]).is_ok());
    }

    #[test]
    fn dynamodb_settings_have_contract_defaults_and_a_checked_endpoint() {
        let s = settings(&[("STORAGE_BACKEND", "dynamodb")]).unwrap();
        let StorageSettings::DynamoDb {
            endpoint,
            region,
            readings_table,
            user_tokens_table,
            sync_jobs_table,
            aux_table,
        } = s.storage
        else {
            panic!("not dynamodb: {:?}", s.storage);
        };
        assert_eq!(endpoint, None);
        assert_eq!(region, "us-east-1");
        assert_eq!(
            [
                readings_table,
                user_tokens_table,
                sync_jobs_table,
                aux_table
            ],
            ["bg_readings", "user_tokens", "sync_jobs", "cgm_hub"]
        );
        let local = settings(&[
            ("STORAGE_BACKEND", "dynamodb"),
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
        ])
        .unwrap();
        assert!(matches!(
            local.storage,
            StorageSettings::DynamoDb { endpoint: Some(ref u), .. } if u.port() == Some(8000)
        ));
        let err = settings(&[
            ("STORAGE_BACKEND", "dynamodb"),
            ("DYNAMODB_ENDPOINT", "127.0.0.1:8000"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DYNAMODB_ENDPOINT");
    }

    #[test]
    fn dexcom_client_is_all_or_nothing() {
        let err = settings(&[("DEXCOM_CLIENT_ID", "id")]).unwrap_err();
        assert_eq!(err.variable, "DEXCOM_CLIENT_SECRET");
        let full = settings(&[
            ("DEXCOM_CLIENT_ID", "id"),
            ("DEXCOM_CLIENT_SECRET", "s3cret-value"),
            (
                "DEXCOM_REDIRECT_URI",
                "https://cgm.example.org/oauth/callback",
            ),
        ])
        .unwrap();
        assert!(!format!("{full:?}").contains("s3cret-value"));
    }

    #[test]
    fn dexcom_hosts_by_name_or_url() {
        let base = |raw| {
            settings(&[("DEXCOM_API_BASE_URL", raw)])
                .unwrap()
                .dexcom
                .api_base_url
                .to_string()
        };
        assert_eq!(base("eu"), "https://api.dexcom.eu/");
        assert_eq!(base("JP"), "https://api.dexcom.jp/");
        assert_eq!(base("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/");
        assert_eq!(
            settings(&[]).unwrap().dexcom.api_base_url.as_str(),
            "https://sandbox-api.dexcom.com/"
        );
    }

    #[test]
    fn port_alone_works() {
        assert_eq!(
            settings(&[("PORT", "8080")]).unwrap().bind_addr.port(),
            8080
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("STORAGE_BACKEND", "mongodb"),
            ("EVENT_BUS", "kafka"),
            ("BIND_ADDR", "localhost"),
            ("LOG_LEVEL", "LOUD"),
            ("TOKEN_ENCRYPTION_KEY", "c2hvcnQ="),
            ("DATABASE_URL", "mysql://x"),
            ("MAX_BATCH_RECORDS", "0"),
            ("AUTH_DISABLED", "maybe"),
            ("DEXCOM_API_BASE_URL", "ftp://dexcom"),
            ("DEXCOM_API_VERSION", "v4"),
            ("DEXCOM_REDIRECT_URI", "not a url"),
            ("TOKEN_ENCRYPTION_KEY_PREVIOUS", "AAEC"),
            ("RETRY_BACKOFF_FACTOR", "0.5"),
        ];
        for (name, value) in cases {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().starts_with(&format!("invalid {name}:")));
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn empty_bind_addr_counts_as_unset() {
        let s = settings(&[("BIND_ADDR", ""), ("PORT", "8080")]).unwrap();
        assert_eq!(s.bind_addr.port(), 8080);
        assert_eq!(settings(&[("PORT", "")]).unwrap().bind_addr.port(), 5001);
    }

    #[test]
    fn production_refuses_development_shortcuts() {
        let key = (
            "TOKEN_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        let prod = ("SERVICE_ENV", "production");
        assert_eq!(
            settings(&[prod]).unwrap_err().variable,
            "TOKEN_ENCRYPTION_KEY"
        );
        assert!(settings(&[prod, key]).is_ok());
        assert_eq!(
            settings(&[prod, key, ("DEMO", "true")])
                .unwrap_err()
                .variable,
            "DEMO"
        );
    }

    /// The variables a staging or production start needs anyway.
    fn deployed(
        env: &'static str,
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut vars = vec![
            ("SERVICE_ENV", env),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ];
        vars.extend_from_slice(extra);
        vars
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    fn refused(vars: &[(&str, &str)]) -> ConfigError {
        let err = settings(vars).unwrap_err();
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        err
    }

    #[test]
    fn deployed_hmac_secrets_are_at_least_32_bytes() {
        for env in ["staging", "production"] {
            for name in ["AUTH_JWT_SECRET", "WEBHOOK_SIGNING_SECRET"] {
                let err = refused(&deployed(env, &[(name, &STRONG[..31])]));
                assert_eq!(err.variable, name);
                assert!(err.to_string().contains("at least 32 bytes"), "{err}");
                assert!(!err.to_string().contains(&STRONG[..31]), "never printed");
                assert!(settings(&deployed(env, &[(name, STRONG)])).is_ok());
            }
        }
        // Development keeps accepting short secrets (tests and local use).
        let dev = settings(&[
            ("AUTH_JWT_SECRET", "dev"),
            ("WEBHOOK_SIGNING_SECRET", "dev"),
        ]);
        assert!(dev.is_ok());
    }

    #[test]
    fn deployed_jwks_is_https_with_issuer_and_audience() {
        let jwks = (
            "AUTH_JWKS_URL",
            "https://idp.example.org/.well-known/jwks.json",
        );
        let iss = ("AUTH_ISSUER", "https://idp.example.org/");
        let aud = ("AUTH_AUDIENCE", "cgm-hub");
        for env in ["staging", "production"] {
            let http = (
                "AUTH_JWKS_URL",
                "http://idp.example.org/.well-known/jwks.json",
            );
            let err = refused(&deployed(env, &[http, iss, aud]));
            assert_eq!(err.variable, "AUTH_JWKS_URL");
            assert!(err.to_string().contains("https://"), "{err}");
            assert_eq!(
                refused(&deployed(env, &[jwks, aud])).variable,
                "AUTH_ISSUER"
            );
            assert_eq!(
                refused(&deployed(env, &[jwks, iss])).variable,
                "AUTH_AUDIENCE"
            );
            assert!(settings(&deployed(env, &[jwks, iss, aud])).is_ok());
        }
        let local = ("AUTH_JWKS_URL", "http://127.0.0.1:9000/jwks.json");
        assert!(settings(&[local]).is_ok(), "development takes any JWKS");
    }

    #[test]
    fn auth_disabled_only_in_development() {
        assert!(
            settings(&[("AUTH_DISABLED", "true")])
                .unwrap()
                .auth_disabled
        );
        let err =
            settings(&[("AUTH_DISABLED", "true"), ("SERVICE_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable, "AUTH_DISABLED");
    }

    #[test]
    fn secrets_never_print() {
        let s = settings(&[
            ("AUTH_JWT_SECRET", "hunter2-jwt"),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"));
        assert!(debug.contains("[redacted]"));
        assert_eq!(s.token_encryption_key.unwrap().expose()[31], 31);
    }
}

//! Typed settings, read once at start-up from the environment (and `.env`).
//!
//! Every variable is parsed into a typed value; a bad value stops the process with a
//! one-line message naming the variable. Secrets are wrapped in `Secret`, whose
//! `Debug` and `Display` print `[redacted]`.
//!
//! Config owns every settings type, one file per section (the groups of
//! `docs/configuration.md`), so the layers that read settings depend on config and
//! config on none of them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

mod accounts;
mod auth;
mod bus;
mod dexcom;
mod http;
mod notifications;
mod proxies;
mod reference;
mod service;
mod storage;
mod stream;
mod sync;
mod variables;

pub use accounts::{AccountSettings, Registration, ThrottleSettings};
pub use auth::MIN_SECRET_BYTES;
pub use bus::{EventBusKind, RabbitSettings};
pub use dexcom::{ApiVersion, DexcomSettings, MAX_OAUTH_STATE_TTL};
pub use http::{HttpSettings, RateLimitSettings, TlsSettings, WebhookSettings};
pub use notifications::NotificationSettings;
pub use proxies::{canonical, Cidr, TrustedProxies};
pub use reference::{env_example, markdown_reference};
pub use service::{LogFormat, ServiceEnv};
pub use storage::{AwsCredentials, Durability, StorageSettings};
pub use stream::StreamSettings;
pub use sync::SyncSettings;
pub use variables::{Group, Variable, VARIABLES};

// `Secret` lived here before it had a module of its own; this keeps the old path
// working until every user imports `crate::secret::Secret`.
use crate::secret::Secret;

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
    pub rate_limits: RateLimitSettings,
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
    pub sync: SyncSettings,
    /// How often the stale-alert timer runs (ALERT_STALE_CHECK_SECONDS).
    pub alert_stale_check: Duration,
    /// Outbound signed webhooks for alert events (NOTIFICATION_*).
    pub notifications: NotificationSettings,
    /// Per-user live streams (STREAM_*).
    pub stream: StreamSettings,
    /// Built-in accounts (REGISTRATION, ACCOUNT_*, ARGON2_*, PASSWORD_HASH_*, LOGIN_*).
    pub accounts: AccountSettings,
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

    /// Parses every section. The environment comes first because other sections'
    /// rules depend on it; the first bad value found is the error.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(vars);
        let env = service::env(&v)?;
        let (log_level, log_format) = service::logging(&v)?;
        let listener = http::listener(&v)?;
        let storage = storage::parse(&v)?;
        let event_bus = bus::parse(&v)?;
        let auth = auth::parse(&v, env)?;
        let demo = v.bool("DEMO")?;
        if demo && env != ServiceEnv::Development {
            return Err(invalid(
                "DEMO",
                "is allowed only when SERVICE_ENV=development",
            ));
        }
        let max_batch_records = v.number("MAX_BATCH_RECORDS", 1, 1_000_000)?;
        let dexcom = dexcom::parse(&v, env == ServiceEnv::Production)?;
        let rate_limits = http::rate_limits(&v)?;
        let max_body_bytes = v.number("MAX_BODY_BYTES", 1024, 1 << 30)?;
        let http = http::connections(&v)?;
        let webhook = http::webhook(&v)?;
        let max_shares_per_patient = v.number("SHARES_MAX_PER_PATIENT", 1, 100_000)?;
        let write_quota_readings_per_hour =
            v.number("WRITE_QUOTA_READINGS_PER_HOUR", 1, 1_000_000_000)?;
        let reading_max_age_years = v.number("READING_MAX_AGE_YEARS", 1, 100)?;
        let shutdown_timeout =
            Duration::from_secs(v.number("SHUTDOWN_TIMEOUT_SECONDS", 0, 3600)?);
        let demo_backfill_days = v.number("DEMO_BACKFILL_DAYS", 0, 365)?;
        let sync = sync::parse(&v)?;
        let alert_stale_check =
            Duration::from_secs(v.number("ALERT_STALE_CHECK_SECONDS", 1, 3600)?);
        let notifications = notifications::parse(&v, env)?;
        let stream = stream::parse(&v)?;
        let accounts = accounts::parse(&v, env)?;
        Ok(Settings {
            env,
            log_level,
            log_format,
            bind_addr: listener.bind_addr,
            public_base_url: listener.public_base_url,
            tls: listener.tls,
            cors_allowed_origins: listener.cors_allowed_origins,
            storage,
            event_bus,
            auth_disabled: auth.disabled,
            auth_jwt_secret: auth.jwt_secret,
            auth_jwks_url: auth.jwks_url,
            auth_issuer: auth.issuer,
            auth_audience: auth.audience,
            token_encryption_key: auth.token_encryption_key,
            token_encryption_key_previous: auth.token_encryption_key_previous,
            webhook_signing_secret: auth.webhook_signing_secret,
            dexcom,
            rate_limits,
            max_body_bytes,
            max_batch_records,
            http,
            webhook,
            max_shares_per_patient,
            write_quota_readings_per_hour,
            reading_max_age_years,
            shutdown_timeout,
            demo,
            demo_backfill_days,
            sync,
            alert_stale_check,
            notifications,
            stream,
            accounts,
        })
    }
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
        let sources = [
            include_str!("mod.rs"),
            include_str!("accounts.rs"),
            include_str!("auth.rs"),
            include_str!("bus.rs"),
            include_str!("dexcom.rs"),
            include_str!("http.rs"),
            include_str!("notifications.rs"),
            include_str!("proxies.rs"),
            include_str!("service.rs"),
            include_str!("storage.rs"),
            include_str!("stream.rs"),
            include_str!("sync.rs"),
        ];
        let mut read = std::collections::BTreeSet::new();
        for (source, call) in sources
            .iter()
            .flat_map(|s| [".get(", ".optional(", ".number(", ".bool("].map(|c| (s, c)))
        {
            // Only the parser: a file's tests may name variables of their own.
            let parser = source
                .find("#[cfg(test)]")
                .map_or(*source, |at| &source[..at]);
            for (at, _) in parser.match_indices(call) {
                let rest = parser[at + call.len()..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    let name = &quoted[..quoted.find('"').expect("closing quote")];
                    if name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    {
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
            credentials,
        } = s.storage
        else {
            panic!("not dynamodb: {:?}", s.storage);
        };
        assert_eq!(endpoint, None);
        assert!(credentials.is_none(), "the AWS default chain");
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
    fn aws_credentials_are_both_or_neither_and_never_printed() {
        let dynamo = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![("STORAGE_BACKEND", "dynamodb")];
            vars.extend_from_slice(extra);
            settings(&vars)
        };
        for (extra, variable) in [
            (
                &[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")][..],
                "AWS_SECRET_ACCESS_KEY",
            ),
            (
                &[("AWS_SECRET_ACCESS_KEY", "wJalr-secret-value")][..],
                "AWS_ACCESS_KEY_ID",
            ),
            (
                &[("AWS_SESSION_TOKEN", "FwoG-token-value")][..],
                "AWS_SESSION_TOKEN",
            ),
        ] {
            let e = dynamo(extra).unwrap_err();
            assert_eq!(e.variable, variable, "{extra:?}: {e}");
            assert!(!e.to_string().contains("-value"), "{e}");
        }
        let full = dynamo(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalr-secret-value"),
            ("AWS_SESSION_TOKEN", "FwoG-token-value"),
        ])
        .unwrap();
        let StorageSettings::DynamoDb {
            credentials: Some(ref c),
            ..
        } = full.storage
        else {
            panic!("no credentials: {:?}", full.storage);
        };
        assert_eq!(c.access_key_id, "AKIDEXAMPLE");
        assert_eq!(c.secret_access_key.expose(), "wJalr-secret-value");
        assert_eq!(
            c.session_token.as_ref().map(|t| t.expose().as_str()),
            Some("FwoG-token-value")
        );
        let printed = format!("{full:?}");
        assert!(printed.contains("AKIDEXAMPLE"), "{printed}");
        assert!(!printed.contains("wJalr-secret-value"), "{printed}");
        assert!(!printed.contains("FwoG-token-value"), "{printed}");
        let pair = dynamo(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalr-secret-value"),
        ])
        .unwrap();
        assert!(matches!(
            pair.storage,
            StorageSettings::DynamoDb { credentials: Some(ref c), .. } if c.session_token.is_none()
        ));
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

//! The Dexcom section (DEXCOM_*, OAUTH_*, MAX_RETRIES, RETRY_BACKOFF_FACTOR,
//! REQUEST_TIMEOUT_SECONDS): the OAuth client and the policy for every outbound
//! call to Dexcom.

use std::time::Duration;

use super::{http_url, invalid, ConfigError, Vars};
use crate::secret::Secret;

/// The longest an OAuth `state` stays usable (`DexcomSettings::state_ttl` may be
/// shorter), and the lifetime of the browser cookie that goes with it.
pub const MAX_OAUTH_STATE_TTL: Duration = Duration::from_secs(600);

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
    /// How long an authorization in progress stays completable (at most
    /// `MAX_OAUTH_STATE_TTL`).
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

pub(super) fn parse(v: &Vars<'_>, production: bool) -> Result<DexcomSettings, ConfigError> {
    // Dexcom's hosts by name (docs/dexcom.md, "Regions and versions"), or any URL (a simulator).
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
            MAX_OAUTH_STATE_TTL.as_secs(),
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

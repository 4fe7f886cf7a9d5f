//! The accounts section (REGISTRATION, ACCOUNT_*, ARGON2_*, PASSWORD_HASH_*,
//! LOGIN_*): who may sign up, how long tokens live, how passwords are hashed and
//! how many hashes run at once, and how failed logins are slowed down.

use std::time::Duration;

use super::{invalid, ConfigError, ServiceEnv, Vars};

/// Who may create an account over HTTP (`POST /api/v1/auth/register`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone.
    Open,
    /// Only people an admin invited (invitations are not built yet, so for now
    /// accounts come from `cgm-hub users create`).
    Invite,
    /// Nobody over HTTP; operators use `cgm-hub users create`.
    Closed,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Invite => "invite",
            Registration::Closed => "closed",
        }
    }
}

/// How failed logins of one key (an account, or a client IP) are slowed down:
/// after `free_failures` consecutive failures, each further failure blocks the
/// key for 1 s, 2 s, 4 s, ... up to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub free_failures: u32,
    pub max_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub registration: Registration,
    /// ACCOUNT_ACCESS_TOKEN_TTL_SECONDS.
    pub access_ttl: Duration,
    /// ACCOUNT_REFRESH_TOKEN_TTL_SECONDS.
    pub refresh_ttl: Duration,
    /// ACCOUNT_STATUS_CACHE_SECONDS: how long the access check reuses an
    /// account's disabled status (the revocation delay of access tokens).
    pub status_cache_ttl: Duration,
    /// ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// PASSWORD_HASH_CONCURRENCY: hashes computed at once (blocking threads).
    pub hash_concurrency: usize,
    /// PASSWORD_HASH_QUEUE: requests that may wait for a hashing slot; more get 503.
    pub hash_queue: usize,
    /// PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS: longest wait for a slot before 503.
    pub hash_queue_timeout: Duration,
    /// LOGIN_ACCOUNT_*.
    pub per_account: ThrottleSettings,
    /// LOGIN_IP_*.
    pub per_ip: ThrottleSettings,
    /// Browser-session cookies carry `Secure`: every SERVICE_ENV but development
    /// (no variable of its own; over plain http browsers drop `Secure` cookies).
    pub secure_cookies: bool,
    /// INVITATION_TTL_HOURS: how long an invitation's token works.
    pub invitation_ttl: Duration,
    /// SMTP_URL: where invitation mail goes; none: mail is off.
    pub smtp_url: Option<crate::secret::Secret<String>>,
    /// MAIL_FROM: the sender of that mail.
    pub mail_from: String,
    /// PUBLIC_BASE_URL (from the HTTP settings): the base of mailed links.
    pub public_base_url: Option<String>,
    /// Development: with mail off, invitation links are logged at info.
    pub log_links: bool,
}

impl AccountSettings {
    /// The defaults of a development start (registration open).
    pub fn development() -> Self {
        Self {
            registration: Registration::Open,
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            status_cache_ttl: Duration::from_secs(30),
            argon2_memory_kib: 19_456,
            argon2_iterations: 4,
            argon2_parallelism: 1,
            hash_concurrency: 2,
            hash_queue: 64,
            hash_queue_timeout: Duration::from_secs(5),
            per_account: ThrottleSettings {
                free_failures: 5,
                max_delay: Duration::from_secs(60),
            },
            per_ip: ThrottleSettings {
                free_failures: 20,
                max_delay: Duration::from_secs(900),
            },
            secure_cookies: false,
            invitation_ttl: Duration::from_secs(7 * 86_400),
            smtp_url: None,
            mail_from: "cgm-hub <no-reply@localhost>".into(),
            public_base_url: None,
            log_links: true,
        }
    }
}

pub(super) fn parse(v: &Vars<'_>, env: ServiceEnv) -> Result<AccountSettings, ConfigError> {
    let registration = match v.optional("REGISTRATION").map(str::trim) {
        None if env == ServiceEnv::Development => Registration::Open,
        None => Registration::Invite,
        Some(raw) => match raw.to_ascii_lowercase().as_str() {
            "open" => Registration::Open,
            "invite" => Registration::Invite,
            "closed" => Registration::Closed,
            _ => {
                return Err(invalid(
                    "REGISTRATION",
                    format!("{raw:?} is not open, invite or closed"),
                ))
            }
        },
    };
    Ok(AccountSettings {
        smtp_url: v
            .optional("SMTP_URL")
            .map(|u| crate::secret::Secret::new(u.trim().to_owned())),
        mail_from: v.optional("MAIL_FROM").map_or_else(
            || "cgm-hub <no-reply@localhost>".to_owned(),
            |f| f.trim().to_owned(),
        ),
        public_base_url: None,
        log_links: env == ServiceEnv::Development,
        registration,
        invitation_ttl: Duration::from_secs(
            3600 * v.number("INVITATION_TTL_HOURS", 1_u64, 90 * 24)?,
        ),
        access_ttl: Duration::from_secs(v.number(
            "ACCOUNT_ACCESS_TOKEN_TTL_SECONDS",
            60,
            86_400,
        )?),
        refresh_ttl: Duration::from_secs(v.number(
            "ACCOUNT_REFRESH_TOKEN_TTL_SECONDS",
            300,
            365 * 86_400,
        )?),
        status_cache_ttl: Duration::from_secs(v.number("ACCOUNT_STATUS_CACHE_SECONDS", 1, 300)?),
        argon2_memory_kib: v.number("ARGON2_MEMORY_KIB", 8 * 1024, 1024 * 1024)?,
        argon2_iterations: v.number("ARGON2_ITERATIONS", 1, 20)?,
        argon2_parallelism: v.number("ARGON2_PARALLELISM", 1, 16)?,
        hash_concurrency: v.number("PASSWORD_HASH_CONCURRENCY", 1, 256)?,
        hash_queue: v.number("PASSWORD_HASH_QUEUE", 0, 100_000)?,
        hash_queue_timeout: Duration::from_secs(v.number(
            "PASSWORD_HASH_QUEUE_TIMEOUT_SECONDS",
            1,
            60,
        )?),
        per_account: ThrottleSettings {
            free_failures: v.number("LOGIN_ACCOUNT_FREE_FAILURES", 1, 1000)?,
            max_delay: Duration::from_secs(v.number("LOGIN_ACCOUNT_MAX_DELAY_SECONDS", 1, 3600)?),
        },
        per_ip: ThrottleSettings {
            free_failures: v.number("LOGIN_IP_FREE_FAILURES", 1, 100_000)?,
            max_delay: Duration::from_secs(v.number("LOGIN_IP_MAX_DELAY_SECONDS", 1, 86_400)?),
        },
        secure_cookies: env != ServiceEnv::Development,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse_with(env: ServiceEnv, pairs: &[(&str, &str)]) -> Result<AccountSettings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(&Vars(&map), env)
    }

    #[test]
    fn registration_is_open_in_development_and_by_invitation_elsewhere() {
        let dev = parse_with(ServiceEnv::Development, &[]).unwrap();
        assert_eq!(dev.registration, Registration::Open);
        assert_eq!(dev.argon2_iterations, 4);
        assert_eq!(dev.per_account.max_delay, Duration::from_secs(60));
        for env in [ServiceEnv::Staging, ServiceEnv::Production] {
            assert_eq!(
                parse_with(env, &[]).unwrap().registration,
                Registration::Invite
            );
        }
        let closed = parse_with(ServiceEnv::Production, &[("REGISTRATION", "Closed")]).unwrap();
        assert_eq!(closed.registration, Registration::Closed);
        let bad = parse_with(ServiceEnv::Development, &[("REGISTRATION", "maybe")]).unwrap_err();
        assert!(bad.to_string().contains("REGISTRATION"), "{bad}");
        assert!(parse_with(ServiceEnv::Development, &[("ARGON2_MEMORY_KIB", "64")]).is_err());
    }
}

//! Rate limits, the contract's tiers: per client IP when unauthenticated, per
//! user when authenticated, per IP on webhooks. Every limited response carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; over the limit is 429
//! RATE_LIMIT_EXCEEDED with `Retry-After`.
//!
//! governor's keyed GCRA limiter holds one small state per key; keys whose
//! bucket has refilled are swept regularly, so a spray of distinct IPs holds
//! memory for about as many keys as arrive in one refill interval.
//!
//! Per-IP keys are an IPv4 address or an IPv6 /64 (`client_ip::rate_key`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::client_ip::rate_key;
use crate::config::TrustedProxies;
use crate::domain::UserId;

/// Sweep refilled keys after this many checks on a tier.
const SWEEP_EVERY: u64 = 4096;

use crate::config::RateLimitSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Anonymous,
    User,
    Webhook,
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One tier. Keys are an address or a user's shared id, so counting a request
/// allocates nothing.
struct Limiter<K: std::hash::Hash + Eq + Clone> {
    keyed: Keyed<K>,
    per_minute: u32,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(per_minute: u32, clock: &DefaultClock) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            keyed: Keyed::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            per_minute,
            checks: AtomicU64::new(0),
        }
    }

    /// Drops keys whose allowance is full again.
    fn sweep(&self) {
        self.keyed.retain_recent();
        self.keyed.shrink_to_fit();
    }
}

/// The outcome of one check, as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the allowance is full again.
    pub reset_secs: u64,
    /// Set when refused: seconds until one request is allowed.
    pub retry_after: Option<u64>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.retry_after.is_none()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
        static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
        static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
        headers.reserve(4);
        headers.insert(&LIMIT, HeaderValue::from(self.limit));
        headers.insert(&REMAINING, HeaderValue::from(self.remaining));
        headers.insert(&RESET, HeaderValue::from(self.reset_secs));
        if let Some(after) = self.retry_after {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(after));
        }
    }
}

pub struct RateLimits {
    anonymous: Limiter<IpAddr>,
    user: Limiter<Arc<str>>,
    webhook: Limiter<IpAddr>,
    /// Client keys that have used up the anonymous allowance on failed
    /// authentications, and until when: their tokens are refused before any
    /// signature is checked (`refused_before_verification`).
    failing: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
    proxies: TrustedProxies,
}

impl RateLimits {
    pub fn new(s: RateLimitSettings) -> Self {
        let clock = DefaultClock::default();
        Self {
            anonymous: Limiter::new(s.anonymous_per_minute, &clock),
            user: Limiter::new(s.user_per_minute, &clock),
            webhook: Limiter::new(s.webhook_per_minute, &clock),
            failing: Mutex::default(),
            clock,
            proxies: s.trusted_proxies,
        }
    }

    /// Counts one request of a client address against the anonymous or webhook tier.
    pub fn check_ip(&self, tier: Tier, ip: IpAddr) -> Verdict {
        let key = rate_key(ip);
        match tier {
            Tier::Webhook => self.check_in(&self.webhook, &key),
            _ => self.check_in(&self.anonymous, &key),
        }
    }

    /// Counts a failed authentication (no, a bad or an expired token) against
    /// the client's anonymous allowance. Once that is used up the client is
    /// remembered until one more request would be allowed, so that its next
    /// tokens are refused before they cost a signature check.
    pub fn check_failed_auth(&self, ip: IpAddr) -> Verdict {
        let verdict = self.check_ip(Tier::Anonymous, ip);
        if let Some(after) = verdict.retry_after {
            let now = Instant::now();
            let mut failing = self.failing_map();
            // Each entry took a whole allowance of failures to make, and is
            // dropped once it has passed.
            if failing.len() >= SWEEP_EVERY as usize {
                failing.retain(|_, until| *until > now);
            }
            failing.insert(rate_key(ip), now + Duration::from_secs(after));
        }
        verdict
    }

    /// 429 for a client whose failed authentications used up its anonymous
    /// allowance (`check_failed_auth`), checked before its token is verified:
    /// a flood of forged tokens costs a map lookup each, not a signature check.
    /// Counts nothing.
    pub fn refused_before_verification(&self, ip: IpAddr) -> Option<Verdict> {
        let key = rate_key(ip);
        let mut failing = self.failing_map();
        let until = *failing.get(&key)?;
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            failing.remove(&key);
            return None;
        };
        let limit = self.anonymous.per_minute;
        Some(Verdict {
            limit,
            remaining: 0,
            reset_secs: 60,
            retry_after: Some(left.as_secs_f64().ceil().max(1.0) as u64),
        })
    }

    fn failing_map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request of an authenticated user.
    pub fn check_user(&self, user: &UserId) -> Verdict {
        self.check_in(&self.user, user.shared())
    }

    fn check_in<K: std::hash::Hash + Eq + Clone>(&self, limiter: &Limiter<K>, key: &K) -> Verdict {
        if limiter.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.sweep();
        }
        let limit = limiter.per_minute;
        let refill_secs = |missing: u32| (u64::from(missing) * 60).div_ceil(u64::from(limit));
        match limiter.keyed.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Verdict {
                    limit,
                    remaining,
                    reset_secs: refill_secs(limit.saturating_sub(remaining)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Verdict {
                    limit,
                    remaining: 0,
                    reset_secs: refill_secs(limit),
                    retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                }
            }
        }
    }

    /// Keys currently held by a tier (for tests and metrics).
    pub fn tracked_keys(&self, tier: Tier) -> usize {
        match tier {
            Tier::Anonymous => self.anonymous.keyed.len(),
            Tier::User => self.user.keyed.len(),
            Tier::Webhook => self.webhook.keyed.len(),
        }
    }

    /// Drops keys whose allowance is full again.
    pub fn sweep(&self) {
        self.anonymous.sweep();
        self.webhook.sweep();
        self.user.sweep();
        let now = Instant::now();
        self.failing_map().retain(|_, until| *until > now);
    }

    /// The client's address (see `TrustedProxies::client_ip`).
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        self.proxies.client_ip(peer, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(anonymous: u32) -> RateLimits {
        RateLimits::new(RateLimitSettings {
            anonymous_per_minute: anonymous,
            user_per_minute: 300,
            webhook_per_minute: 1000,
            trusted_proxies: TrustedProxies::default(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_is_counted_down_then_refused_with_retry_after() {
        let l = limits(3);
        let v: Vec<_> = (0..4)
            .map(|_| l.check_ip(Tier::Anonymous, ip("1.2.3.4")))
            .collect();
        assert_eq!(
            v.iter().map(|v| v.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert!(v[2].allowed() && !v[3].allowed());
        assert_eq!(v[3].retry_after, Some(20), "one request refills every 20 s");
        assert_eq!(v[0].reset_secs, 20);
        assert!(
            l.check_ip(Tier::Anonymous, ip("5.6.7.8")).allowed(),
            "per key"
        );
        let user = UserId::parse("u1").unwrap();
        assert_eq!(l.check_user(&user).limit, 300, "per tier");
    }

    #[test]
    fn failed_authentications_past_the_allowance_are_refused_before_verification() {
        let l = limits(2);
        let client = ip("2001:db8:1:2::1");
        assert!(l.refused_before_verification(client).is_none());
        assert!(l.check_failed_auth(client).allowed());
        assert!(l.check_failed_auth(client).allowed());
        assert!(l.refused_before_verification(client).is_none(), "not yet");
        assert!(!l.check_failed_auth(client).allowed());
        let refused = l.refused_before_verification(ip("2001:db8:1:2::99"));
        assert_eq!(
            refused.and_then(|v| v.retry_after),
            Some(30),
            "the same /64, until one request refills"
        );
        assert!(l
            .refused_before_verification(ip("2001:db8:1:3::1"))
            .is_none());
        assert_eq!(
            l.tracked_keys(Tier::User),
            0,
            "no user's allowance is touched"
        );
    }

    #[test]
    fn an_ip_spray_does_not_grow_without_bound() {
        let l = limits(6000); // refills one request every 10 ms
        let mut most = 0;
        for i in 0..50_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            l.check_ip(Tier::Anonymous, IpAddr::from([10, a, b, c]));
            most = most.max(l.tracked_keys(Tier::Anonymous));
        }
        assert!(
            most < 25_000,
            "swept while spraying: at most {most} keys held"
        );
        std::thread::sleep(std::time::Duration::from_millis(30));
        l.sweep();
        assert_eq!(
            l.tracked_keys(Tier::Anonymous),
            0,
            "refilled keys are swept"
        );
    }
}

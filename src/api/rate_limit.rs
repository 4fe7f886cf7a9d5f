//! Rate limits, the contract's tiers: per client IP when unauthenticated, per
//! user when authenticated, per IP on webhooks. Every limited response carries
//! `X-RateLimit-Limit`, `-Remaining` and `-Reset`; over the limit is 429
//! RATE_LIMIT_EXCEEDED with `Retry-After`.
//!
//! governor's keyed GCRA limiter holds one small state per key; keys whose
//! bucket has refilled are swept regularly, so a spray of distinct IPs holds
//! memory for about as many keys as arrive in one refill interval.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::UserId;

/// Sweep refilled keys after this many checks on a tier.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub anonymous_per_minute: u32,
    pub user_per_minute: u32,
    pub webhook_per_minute: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For`; 0: the
    /// peer address is the client (the header is ignored, it could be forged).
    pub trusted_proxy_hops: usize,
}

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
    clock: DefaultClock,
    hops: usize,
}

impl RateLimits {
    pub fn new(s: RateLimitSettings) -> Self {
        let clock = DefaultClock::default();
        Self {
            anonymous: Limiter::new(s.anonymous_per_minute, &clock),
            user: Limiter::new(s.user_per_minute, &clock),
            webhook: Limiter::new(s.webhook_per_minute, &clock),
            clock,
            hops: s.trusted_proxy_hops,
        }
    }

    /// Counts one request of a client address against the anonymous or webhook tier.
    pub fn check_ip(&self, tier: Tier, ip: IpAddr) -> Verdict {
        match tier {
            Tier::Webhook => self.check_in(&self.webhook, &ip),
            _ => self.check_in(&self.anonymous, &ip),
        }
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
    }

    /// The client's address: the peer, or with `hops` trusted proxies the
    /// address that many entries from the right of `X-Forwarded-For`.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        if self.hops > 0 {
            let forwarded: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            if let Some(ip) = forwarded
                .len()
                .checked_sub(self.hops)
                .and_then(|i| forwarded.get(i))
                .and_then(|raw| raw.parse::<IpAddr>().ok())
            {
                return ip;
            }
        }
        peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(anonymous: u32, hops: usize) -> RateLimits {
        RateLimits::new(RateLimitSettings {
            anonymous_per_minute: anonymous,
            user_per_minute: 300,
            webhook_per_minute: 1000,
            trusted_proxy_hops: hops,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_is_counted_down_then_refused_with_retry_after() {
        let l = limits(3, 0);
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
    fn forwarded_for_is_trusted_only_through_configured_hops() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 10.0.0.7".parse().unwrap());
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(limits(1, 0).client_ip(peer, &h), ip("127.0.0.1"));
        assert_eq!(limits(1, 1).client_ip(peer, &h), ip("10.0.0.7"));
        assert_eq!(limits(1, 2).client_ip(peer, &h), ip("6.6.6.6"));
        assert_eq!(
            limits(1, 3).client_ip(peer, &h),
            ip("127.0.0.1"),
            "too few entries"
        );
    }

    #[test]
    fn an_ip_spray_does_not_grow_without_bound() {
        let l = limits(6000, 0); // refills one request every 10 ms
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

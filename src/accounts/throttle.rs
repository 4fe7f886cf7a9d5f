//! Slowing down password guessing, in memory per instance: consecutive failed
//! logins are counted per key (an email, a client IP); past a number of free
//! failures each further failure blocks the key for 1 s, 2 s, 4 s, ... up to a
//! cap, and an attempt while blocked is refused (429 with Retry-After) without
//! checking the password, so it does not count. The cap is what keeps an
//! attacker from locking an account's owner out: at worst they wait the cap.
//! A success resets the account's count (not the IP's, or an attacker with an
//! account of their own could reset their IP between guesses). A key with no
//! failure for an hour past its block is forgotten; the map is bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ThrottleSettings;

/// Keys remembered at most; past this, entries no longer blocked are dropped
/// first, then the whole map (a flood of distinct keys cannot grow memory).
const MAX_KEYS: usize = 100_000;
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Option<Instant>,
    last_failure: Instant,
}

/// Failure counts of one kind of key.
pub struct Throttle<K> {
    settings: ThrottleSettings,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds to wait (at least 1) when `key` is blocked at `now`.
    pub fn blocked(&self, key: &K, now: Instant) -> Option<u64> {
        let until = self.lock().get(key)?.blocked_until?;
        let left = until.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }

    /// Counts a failure; blocks the key when past the free failures.
    pub fn failed(&self, key: &K, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            entries.retain(|_, e| e.blocked_until.is_some_and(|u| u > now));
            if entries.len() >= MAX_KEYS {
                entries.clear();
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            blocked_until: None,
            last_failure: now,
        });
        let quiet_since = entry.blocked_until.unwrap_or(entry.last_failure);
        if now.saturating_duration_since(quiet_since) > FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        if entry.failures >= self.settings.free_failures {
            let doublings = (entry.failures - self.settings.free_failures).min(31);
            let delay = Duration::from_secs(1u64 << doublings).min(self.settings.max_delay);
            entry.blocked_until = Some(now + delay);
        }
    }

    /// Forgets the key's failures.
    pub fn reset(&self, key: &K) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free: u32, max: u64) -> Throttle<&'static str> {
        Throttle::new(ThrottleSettings {
            free_failures: free,
            max_delay: Duration::from_secs(max),
        })
    }

    #[test]
    fn delays_double_after_the_free_failures_up_to_the_cap() {
        let t = throttle(3, 10);
        let start = Instant::now();
        t.failed(&"a", start);
        t.failed(&"a", start);
        assert_eq!(t.blocked(&"a", start), None);
        let mut now = start;
        for expected in [1, 2, 4, 8, 10, 10] {
            t.failed(&"a", now);
            assert_eq!(t.blocked(&"a", now), Some(expected));
            now += Duration::from_secs(expected);
            assert_eq!(
                t.blocked(&"a", now),
                None,
                "the block ends after {expected} s"
            );
        }
        // Other keys are untouched.
        assert_eq!(t.blocked(&"b", now), None);
    }

    #[test]
    fn a_success_resets_and_quiet_keys_are_forgotten() {
        let t = throttle(1, 60);
        let now = Instant::now();
        t.failed(&"a", now);
        assert_eq!(t.blocked(&"a", now), Some(1));
        t.reset(&"a");
        assert_eq!(t.blocked(&"a", now), None);
        t.failed(&"a", now);
        t.failed(&"a", now + Duration::from_secs(1));
        assert_eq!(t.blocked(&"a", now + Duration::from_secs(1)), Some(2));
        // An hour after the block ends, counting starts over.
        let later = now + Duration::from_secs(3 + 3601);
        t.failed(&"a", later);
        assert_eq!(t.blocked(&"a", later), Some(1));
    }

    #[test]
    fn retry_after_rounds_up() {
        let t = throttle(1, 60);
        let now = Instant::now();
        t.failed(&"a", now);
        assert_eq!(t.blocked(&"a", now + Duration::from_millis(300)), Some(1));
    }
}

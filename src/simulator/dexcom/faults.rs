//! Injected failures and format variants, so clients can be tested against the
//! ways the real Dexcom API misbehaves (429, 5xx, slowness, receiver records).

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the simulator should get wrong, and how records are shaped.
///
/// The `*_next` counters are consumed one per matching call, under a lock, so
/// exactly N calls fail however many run concurrently. Fields missing from a
/// `PUT /sim/faults` body take their `Default` values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N data calls (egvs, dataRange, devices; v2 or v3) answer 429
    /// with `Retry-After` and a JSON body.
    pub rate_limit_next: u32,
    /// Sent verbatim as `Retry-After` (0 is sent as 0, handy for fast tests).
    /// Default 1.
    pub retry_after_seconds: u64,
    /// The next N data calls answer 503 with a JSON body (after any pending
    /// rate limits have fired).
    pub server_error_next: u32,
    /// The next N token-endpoint calls answer 500 with a JSON body.
    pub token_server_error_next: u32,
    /// Every data call sleeps this long before answering (including faults).
    pub slow_ms: u64,
    /// The token endpoint sleeps this long after granting and before answering:
    /// the tokens are issued (and a refresh token rotated) even if the client
    /// gives up waiting.
    pub token_slow_ms: u64,
    /// Records as uploaded by a receiver: `systemTime` (UTC) and `displayTime`
    /// (local wall clock) without offsets, `displayDevice` "receiver",
    /// `transmitterGeneration` "g6".
    pub receiver_without_offsets: bool,
    /// Readings below 40 / above 400 mg/dL as `value: null` with status
    /// "low"/"high" (default); when false, as 40 / 400 with that status.
    pub low_high_as_null: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate_limit_next: 0,
            retry_after_seconds: 1,
            server_error_next: 0,
            token_server_error_next: 0,
            slow_ms: 0,
            token_slow_ms: 0,
            receiver_without_offsets: false,
            low_high_as_null: true,
        }
    }
}

/// The outcome a data call must give before it is even authenticated.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DataFault {
    RateLimited { retry_after_seconds: u64 },
    ServerError,
}

/// The shared, lockable fault settings.
#[derive(Debug, Default)]
pub(super) struct FaultState(Mutex<Faults>);

impl FaultState {
    pub(super) fn snapshot(&self) -> Faults {
        self.lock().clone()
    }

    pub(super) fn set(&self, faults: Faults) {
        *self.lock() = faults;
    }

    /// How long every data call waits before answering.
    pub(super) fn delay(&self) -> Duration {
        Duration::from_millis(self.lock().slow_ms)
    }

    pub(super) fn token_delay(&self) -> Duration {
        Duration::from_millis(self.lock().token_slow_ms)
    }

    /// Consumes one pending data-call fault, rate limits first.
    pub(super) fn take_data_fault(&self) -> Option<DataFault> {
        let mut f = self.lock();
        if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            return Some(DataFault::RateLimited {
                retry_after_seconds: f.retry_after_seconds,
            });
        }
        if f.server_error_next > 0 {
            f.server_error_next -= 1;
            return Some(DataFault::ServerError);
        }
        None
    }

    /// Consumes one pending token-endpoint failure; true if this call must fail.
    pub(super) fn take_token_fault(&self) -> bool {
        let mut f = self.lock();
        if f.token_server_error_next > 0 {
            f.token_server_error_next -= 1;
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_null_form_and_a_one_second_retry() {
        let f = Faults::default();
        assert!(f.low_high_as_null);
        assert_eq!(f.retry_after_seconds, 1);
        let partial: Faults =
            serde_json::from_str(r#"{"rate_limit_next":2}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(partial.rate_limit_next, 2);
        assert!(partial.low_high_as_null, "missing fields take the defaults");
    }

    #[test]
    fn counters_fire_exactly_n_times_in_order() {
        let state = FaultState::default();
        state.set(Faults {
            rate_limit_next: 2,
            server_error_next: 1,
            token_server_error_next: 1,
            retry_after_seconds: 9,
            ..Faults::default()
        });
        let limited = Some(DataFault::RateLimited {
            retry_after_seconds: 9,
        });
        assert_eq!(state.take_data_fault(), limited);
        assert_eq!(state.take_data_fault(), limited);
        assert_eq!(state.take_data_fault(), Some(DataFault::ServerError));
        assert_eq!(state.take_data_fault(), None);
        assert!(state.take_token_fault());
        assert!(!state.take_token_fault());
        assert_eq!(state.snapshot().rate_limit_next, 0);
    }
}

//! Call counters, so tests can assert how a client used the API (how often it
//! refreshed, retried after a 429, ...).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A snapshot of the counters. Each request adds to at most one of them, except
/// `data_requests`:
///
/// - `login`: every `GET /v2/oauth2/login` (picker page, redirect or error).
/// - `token_authorization_code`, `token_refresh`: successful grants only.
/// - `token_errors`: token-endpoint 4xx answers (invalid_client,
///   invalid_grant, unsupported_grant_type, invalid_request).
/// - `egvs`, `data_range`, `devices`: data calls that passed the faults and
///   the bearer check (answered 200, or 400 for bad parameters).
/// - `data_requests`: every data call as it arrives, before faults or delays
///   (the count a client's retries and timeouts are measured by; it is the one
///   counter that overlaps the others).
/// - `rate_limited`: simulated 429s; `server_errors`: simulated 5xx on data
///   and token calls; `unauthorized`: data calls answered 401.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub login: u64,
    pub token_authorization_code: u64,
    pub token_refresh: u64,
    pub token_errors: u64,
    pub egvs: u64,
    pub data_range: u64,
    pub devices: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    pub unauthorized: u64,
    pub data_requests: u64,
}

/// Which counter an event adds to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Counter {
    Login,
    TokenAuthorizationCode,
    TokenRefresh,
    TokenErrors,
    Egvs,
    DataRange,
    Devices,
    RateLimited,
    ServerErrors,
    Unauthorized,
    DataRequests,
}

const COUNTERS: usize = 11;

/// The live counters.
#[derive(Debug, Default)]
pub(super) struct Counters([AtomicU64; COUNTERS]);

impl Counters {
    pub(super) fn bump(&self, c: Counter) {
        self.0[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> SimStats {
        let get = |c: Counter| self.0[c as usize].load(Ordering::Relaxed);
        SimStats {
            login: get(Counter::Login),
            token_authorization_code: get(Counter::TokenAuthorizationCode),
            token_refresh: get(Counter::TokenRefresh),
            token_errors: get(Counter::TokenErrors),
            egvs: get(Counter::Egvs),
            data_range: get(Counter::DataRange),
            devices: get(Counter::Devices),
            rate_limited: get(Counter::RateLimited),
            server_errors: get(Counter::ServerErrors),
            unauthorized: get(Counter::Unauthorized),
            data_requests: get(Counter::DataRequests),
        }
    }
}

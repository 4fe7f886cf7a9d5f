//! Every call to Dexcom goes through `Outbound`: an app-wide call budget (and
//! each user's share of it, for data calls), a
//! circuit breaker per host, a timeout, and retries with exponential backoff and
//! jitter that honour `Retry-After` on 429.
//!
//! The breaker is a small state machine written here rather than taken from a
//! crate: its state must be readable by `/health` and `/metrics`, and which
//! failures count (timeouts, transport errors and 5xx, but not 429 or 4xx) is
//! Dexcom-specific. The budget is governor's GCRA limiter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::config::DexcomSettings;
use crate::domain::UserId;

/// Timeouts and retries for one logical call.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (MAX_RETRIES).
    pub max_retries: u32,
    /// Each retry waits `factor` times longer than the previous (RETRY_BACKOFF_FACTOR).
    pub backoff_factor: f64,
    /// The wait before the first retry, before jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A 429 asking for a longer wait than this is not waited out here; the error
    /// goes back to the caller (the scheduler tries again later).
    pub max_retry_after: Duration,
    /// Per attempt, from sending until the whole body is read (REQUEST_TIMEOUT_SECONDS).
    pub timeout: Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &DexcomSettings) -> Self {
        Self {
            max_retries: s.max_retries,
            backoff_factor: s.retry_backoff_factor,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(120),
            timeout: s.request_timeout,
        }
    }

    /// The wait before retry number `retry` (0-based): `base × factor^retry`,
    /// capped, then "equal jitter" (uniform in [d/2, d]) so that many clients
    /// failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .backoff_factor
            .powi(i32::try_from(retry).unwrap_or(i32::MAX));
        let full = self
            .base_delay
            .mul_f64(exp.min(1e6))
            .min(self.max_delay)
            .as_secs_f64();
        Duration::from_secs_f64(rand::rng().random_range(full / 2.0..=full))
    }
}

/// Why a call to Dexcom produced no usable response.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("circuit breaker for {host} is open after repeated failures; not calling")]
    CircuitOpen { host: String },
    #[error("the app-wide Dexcom call budget is exhausted")]
    BudgetExhausted,
    #[error("this user's share of the Dexcom call budget ({per_hour} calls per hour, DEXCOM_CALLS_PER_USER_PER_HOUR) is spent")]
    UserBudgetExhausted { per_hour: u32 },
    #[error("Dexcom rate limit (429){}", retry_after.map(|d| format!("; retry after {} s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("Dexcom answered {status} after {attempts} attempts")]
    ServerError { status: u16, attempts: u32 },
    #[error("Dexcom did not answer within the timeout ({attempts} attempts)")]
    Timeout { attempts: u32 },
    #[error("cannot reach Dexcom: {message}")]
    Transport { message: String },
}

/// A response read in full (bodies are small; reading them inside the timeout
/// makes a stalled body a timeout like any other). No `Debug`: a token
/// response body holds tokens.
#[derive(Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
    fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    /// Set while open: calls are refused until then, after which one probe goes through.
    open_until: Option<Instant>,
    probe_in_flight: bool,
    /// Counts openings, so that the result of a call admitted before the circuit
    /// opened cannot close it or stand in for the probe.
    epoch: u64,
}

/// Permission for one call, to be handed back with its result.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    epoch: u64,
    probe: bool,
}

/// A call let through by the breaker, until its result is recorded.
struct Admitted<'a> {
    breakers: &'a Breakers,
    host: &'a str,
    permit: Option<Permit>,
}

impl Admitted<'_> {
    fn record(mut self, healthy: bool) {
        if let Some(permit) = self.permit.take() {
            self.breakers.record(self.host, permit, healthy);
        }
    }
}

impl Drop for Admitted<'_> {
    /// Never recorded: the call did not go out, or was abandoned. A probe slot
    /// is freed so the circuit cannot stay half-open for good.
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breakers.release(self.host, permit);
        }
    }
}

/// One circuit breaker per host: `threshold` consecutive failures open it for
/// `open_for`; then a single probe call decides whether it closes again.
pub struct Breakers {
    hosts: Mutex<HashMap<String, Breaker>>,
    threshold: u32,
    open_for: Duration,
}

impl Breakers {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            hosts: Mutex::new(HashMap::new()),
            threshold: threshold.max(1),
            open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call to `host` go ahead now? The permit goes back with the result.
    fn admit(&self, host: &str) -> Result<Permit, OutboundError> {
        let mut hosts = self.lock();
        let b = hosts.entry(host.to_owned()).or_default();
        match b.open_until {
            None => Ok(Permit {
                epoch: b.epoch,
                probe: false,
            }),
            Some(until) if Instant::now() < until || b.probe_in_flight => {
                Err(OutboundError::CircuitOpen {
                    host: host.to_owned(),
                })
            }
            Some(_) => {
                b.probe_in_flight = true;
                publish(host, CircuitState::HalfOpen);
                Ok(Permit {
                    epoch: b.epoch,
                    probe: true,
                })
            }
        }
    }

    /// An admitted call that never went out or was abandoned: if it was the
    /// probe, let the next caller probe instead; nothing is learnt about the host.
    fn release(&self, host: &str, permit: Permit) {
        if let Some(b) = self.lock().get_mut(host) {
            if permit.probe && permit.epoch == b.epoch {
                b.probe_in_flight = false;
            }
        }
    }

    fn record(&self, host: &str, permit: Permit, healthy: bool) {
        let mut hosts = self.lock();
        let Some(b) = hosts.get_mut(host) else {
            return;
        };
        let current = permit.epoch == b.epoch;
        let is_probe = permit.probe && current;
        if is_probe {
            b.probe_in_flight = false;
        }
        if b.open_until.is_some() && !is_probe {
            // Open: only the probe's result counts; late results of calls
            // admitted before the circuit opened are ignored.
            return;
        }
        if healthy {
            b.consecutive_failures = 0;
            if b.open_until.take().is_some() {
                tracing::info!(host, "Dexcom circuit closed again");
            }
            publish(host, CircuitState::Closed);
        } else {
            b.consecutive_failures += 1;
            if is_probe || b.consecutive_failures >= self.threshold {
                tracing::warn!(
                    host,
                    failures = b.consecutive_failures,
                    "Dexcom circuit opened"
                );
                b.open_until = Some(Instant::now() + self.open_for);
                b.epoch += 1;
                publish(host, CircuitState::Open);
            }
        }
    }

    /// Every host seen so far and its state, for `/health`.
    pub fn states(&self) -> Vec<(String, CircuitState)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(host, b)| {
                let state = match b.open_until {
                    None => CircuitState::Closed,
                    Some(until) if now < until && !b.probe_in_flight => CircuitState::Open,
                    Some(_) => CircuitState::HalfOpen,
                };
                (host.clone(), state)
            })
            .collect();
        out.sort();
        out
    }
}

fn publish(host: &str, state: CircuitState) {
    metrics::gauge!("dexcom_circuit_state", "host" => host.to_owned()).set(state.gauge());
}

/// The app-wide budget of calls to Dexcom (60,000 per app per hour, per Dexcom's
/// documentation). A burst of one minute's share is allowed and the rest refills
/// evenly, so any hour-long window holds at most `calls_per_hour` calls.
pub struct CallBudget {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    max_wait: Duration,
    /// After a 429 with Retry-After, every caller holds off until then, not
    /// only the one that was told.
    paused_until: Mutex<Option<Instant>>,
}

impl CallBudget {
    pub fn per_hour(calls_per_hour: u32, max_wait: Duration) -> Self {
        let burst = (calls_per_hour / 60).max(1);
        let refill = calls_per_hour.saturating_sub(burst).max(1);
        let period = Duration::from_secs(3600) / refill;
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            max_wait,
            paused_until: Mutex::new(None),
        }
    }

    /// Dexcom said 429: no call goes out before `until`.
    pub fn pause_until(&self, until: Instant) {
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// Takes one call from the budget, waiting (at most `max_wait`) for it to
    /// refill and for any 429 pause to pass.
    pub async fn acquire(&self) -> Result<(), OutboundError> {
        let deadline = Instant::now() + self.max_wait;
        let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = paused.filter(|u| *u > Instant::now()) {
            if until > deadline {
                return Err(OutboundError::RateLimited {
                    retry_after: Some(until - Instant::now()),
                });
            }
            tokio::time::sleep_until(until).await;
        }
        loop {
            match self.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if Instant::now() + wait > deadline {
                        metrics::counter!("dexcom_budget_exhausted_total").increment(1);
                        return Err(OutboundError::BudgetExhausted);
                    }
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }
}

/// Each user's share of the Dexcom call budget, so that one user (a flood of
/// manual syncs or webhook windows) cannot spend everyone's: at most
/// `per_hour` data calls per user in any hour (all at once, then one every
/// `3600 / per_hour` seconds). Per process, like `CallBudget`.
pub struct UserCallBudget {
    limiter: governor::DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
    per_hour: u32,
    max_wait: Duration,
    checks: std::sync::atomic::AtomicU64,
}

impl UserCallBudget {
    /// Users whose share has refilled are forgotten after this many checks.
    const SWEEP_EVERY: u64 = 4096;

    pub fn per_hour(per_hour: u32, max_wait: Duration) -> Self {
        let per_hour = per_hour.max(1);
        let quota = Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN));
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::new(
                quota,
                governor::state::keyed::DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            clock,
            per_hour,
            max_wait,
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Takes one call from `user`'s share, waiting (at most `max_wait`) for it
    /// to refill; beyond that the caller is refused, as for the app-wide budget
    /// (a sync job is then retried later).
    pub async fn acquire(&self, user: &UserId) -> Result<(), OutboundError> {
        let checks = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if checks % Self::SWEEP_EVERY == Self::SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let deadline = Instant::now() + self.max_wait;
        loop {
            match self.limiter.check_key(user) {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    if Instant::now() + wait > deadline {
                        metrics::counter!("dexcom_user_budget_exhausted_total").increment(1);
                        return Err(OutboundError::UserBudgetExhausted {
                            per_hour: self.per_hour,
                        });
                    }
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }
}

/// The resilient HTTP client for Dexcom (data and token endpoints alike).
pub struct Outbound {
    http: reqwest::Client,
    policy: RetryPolicy,
    breakers: Breakers,
    budget: CallBudget,
    /// None: no per-user share (tests that build a bare client).
    user_budget: Option<UserCallBudget>,
}

impl Outbound {
    pub fn new(policy: RetryPolicy, breakers: Breakers, budget: CallBudget) -> Self {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .user_agent(concat!("cgm-hub/", env!("CARGO_PKG_VERSION")))
            // Dexcom's login redirects are for browsers; API calls never follow them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            policy,
            breakers,
            budget,
            user_budget: None,
        }
    }

    /// Gives each user a share of the budget (`acquire_for`).
    pub fn with_user_budget(mut self, user_budget: UserCallBudget) -> Self {
        self.user_budget = Some(user_budget);
        self
    }

    /// Takes one call from `user`'s share of the budget (see `UserCallBudget`);
    /// callers ask before a data call made on that user's behalf.
    pub async fn acquire_for(&self, user: &UserId) -> Result<(), OutboundError> {
        match &self.user_budget {
            Some(budget) => budget.acquire(user).await,
            None => Ok(()),
        }
    }

    pub fn from_settings(s: &DexcomSettings) -> Self {
        let policy = RetryPolicy::from_settings(s);
        let max_wait = policy.timeout;
        Self::new(
            policy,
            Breakers::new(5, Duration::from_secs(30)),
            CallBudget::per_hour(s.calls_per_hour, max_wait),
        )
        .with_user_budget(UserCallBudget::per_hour(
            s.calls_per_user_per_hour,
            max_wait,
        ))
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn circuit_states(&self) -> Vec<(String, CircuitState)> {
        self.breakers.states()
    }

    /// Sends the request `build` makes (called again for each attempt) and returns
    /// the first response that is not worth retrying: any 2xx, 3xx or 4xx other
    /// than 429. 429, 5xx, timeouts and transport errors are retried, except
    /// that a call which is not `Idempotent` (a refresh-token grant, which
    /// rotates the token) is retried only when it surely had no effect: the
    /// connection failed, or Dexcom answered 429.
    pub async fn send(
        &self,
        endpoint: &'static str,
        host: &str,
        retries: Retries,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Fetched, OutboundError> {
        let mut retry = 0;
        loop {
            let permit = self.breakers.admit(host).inspect_err(|_| {
                count(endpoint, "circuit_open");
            })?;
            // Handed back with the result; if this future is dropped first (the
            // caller went away), dropping it frees a probe slot.
            let admitted = Admitted {
                breakers: &self.breakers,
                host,
                permit: Some(permit),
            };
            if let Err(e) = self.budget.acquire().await {
                drop(admitted);
                count(endpoint, "budget_exhausted");
                return Err(e);
            }
            let started = std::time::Instant::now();
            let attempt = async {
                let response = build(&self.http).send().await?;
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, retry_after, body))
            }
            .await;
            metrics::histogram!("dexcom_request_duration_seconds", "endpoint" => endpoint)
                .record(started.elapsed().as_secs_f64());
            let attempts = retry + 1;
            // (the error if no retry follows, the wait before a retry, whether
            // retrying is safe for a call that is not idempotent)
            let (failure, wait, had_no_effect) = match attempt {
                Ok((status, _, body))
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() =>
                {
                    admitted.record(true);
                    let outcome = if status.is_success() {
                        "ok"
                    } else {
                        "client_error"
                    };
                    count(endpoint, outcome);
                    return Ok(Fetched { status, body });
                }
                Ok((status, retry_after, _)) if status == StatusCode::TOO_MANY_REQUESTS => {
                    // Dexcom is up and telling us to slow down: not a host failure.
                    admitted.record(true);
                    count(endpoint, "rate_limited");
                    let error = OutboundError::RateLimited { retry_after };
                    let wait = retry_after.unwrap_or_else(|| self.policy.backoff(retry));
                    // Every caller holds off, not only this one.
                    self.budget.pause_until(Instant::now() + wait);
                    if wait > self.policy.max_retry_after {
                        return Err(error);
                    }
                    (error, wait, true)
                }
                Ok((status, _, _)) => {
                    admitted.record(false);
                    count(endpoint, "server_error");
                    let error = OutboundError::ServerError {
                        status: status.as_u16(),
                        attempts,
                    };
                    (error, self.policy.backoff(retry), false)
                }
                Err(e) if e.is_timeout() => {
                    admitted.record(false);
                    count(endpoint, "timeout");
                    let error = OutboundError::Timeout { attempts };
                    (error, self.policy.backoff(retry), false)
                }
                Err(e) => {
                    admitted.record(false);
                    count(endpoint, "transport_error");
                    // reqwest's Display of a connect error names the URL, never a
                    // header or body, so no token can leak through it.
                    let error = OutboundError::Transport {
                        message: e.to_string(),
                    };
                    (error, self.policy.backoff(retry), e.is_connect())
                }
            };
            let safe = retries == Retries::Idempotent || had_no_effect;
            if retry >= self.policy.max_retries || !safe {
                return Err(failure);
            }
            retry += 1;
            metrics::counter!("dexcom_retries_total", "endpoint" => endpoint).increment(1);
            tracing::debug!(endpoint, retry, wait_ms = wait.as_millis() as u64, error = %failure, "retrying Dexcom call");
            tokio::time::sleep(wait).await;
        }
    }

    /// The longest one `send` can take: every attempt timing out after waiting
    /// for the budget, with the longest waits between them. A refresh lease
    /// must outlast this, or a second holder could spend the same refresh token.
    pub fn worst_case(&self) -> Duration {
        let attempts = self.policy.max_retries + 1;
        let per_attempt = self.policy.timeout + self.budget.max_wait;
        let between = self.policy.max_delay.max(self.policy.max_retry_after);
        per_attempt * attempts + between * self.policy.max_retries
    }
}

/// Whether a call may be repeated after an outcome that leaves it unknown
/// whether Dexcom acted on it (a timeout, a 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    Idempotent,
    OnlyIfUnsent,
}

fn count(endpoint: &'static str, outcome: &'static str) {
    metrics::counter!("dexcom_requests_total", "endpoint" => endpoint, "outcome" => outcome)
        .increment(1);
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_the_factor_with_jitter_and_a_cap() {
        let policy = RetryPolicy {
            max_retries: 5,
            backoff_factor: 2.0,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d0 = policy.backoff(0);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = policy.backoff(2);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = policy.backoff(9);
            assert!(d9 >= Duration::from_millis(250) && d9 <= Duration::from_millis(500));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_threshold_then_probes_once() {
        let b = Breakers::new(3, Duration::from_secs(30));
        for _ in 0..3 {
            let p = b.admit("h").unwrap();
            b.record("h", p, false);
        }
        assert!(matches!(
            b.admit("h"),
            Err(OutboundError::CircuitOpen { .. })
        ));
        assert_eq!(b.states(), vec![("h".into(), CircuitState::Open)]);
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = b.admit("h").unwrap();
        assert!(b.admit("h").is_err(), "only one probe at a time");
        b.record("h", probe, false); // probe failed: open again
        assert!(b.admit("h").is_err());
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = b.admit("h").unwrap();
        b.record("h", probe, true);
        assert_eq!(b.states(), vec![("h".into(), CircuitState::Closed)]);
        b.admit("h").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_and_unsent_probes_do_not_decide_the_circuit() {
        let b = Breakers::new(1, Duration::from_secs(30));
        let early = b.admit("h").unwrap(); // admitted while closed, answers late
        let failing = b.admit("h").unwrap();
        b.record("h", failing, false); // opens
        b.record("h", early, true);
        assert_eq!(
            b.states()[0].1,
            CircuitState::Open,
            "a late success does not close it"
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = b.admit("h").unwrap();
        b.release("h", probe); // no budget: the probe never went out
        assert_eq!(b.states()[0].1, CircuitState::HalfOpen);
        let probe = b.admit("h").unwrap(); // so the next caller probes
        b.release("h", early); // a stale permit releases nothing
        assert!(b.admit("h").is_err(), "still one probe in flight");
        b.record("h", probe, true);
        assert_eq!(b.states()[0].1, CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let b = Breakers::new(1, Duration::from_secs(30));
        let p = b.admit("h").unwrap();
        b.record("h", p, false);
        tokio::time::advance(Duration::from_secs(31)).await;
        let probe = Admitted {
            breakers: &b,
            host: "h",
            permit: Some(b.admit("h").unwrap()),
        };
        assert!(b.admit("h").is_err());
        drop(probe); // the caller went away mid-call
        let next = b.admit("h").expect("the next caller probes");
        b.record("h", next, true);
        assert_eq!(b.states()[0].1, CircuitState::Closed);
    }

    #[tokio::test]
    async fn budget_waits_for_refill_then_admits() {
        // 7,200 an hour: a burst of 120, then one call per 507 ms.
        let budget = CallBudget::per_hour(7_200, Duration::from_secs(2));
        for _ in 0..120 {
            budget.acquire().await.unwrap();
        }
        let started = std::time::Instant::now();
        budget.acquire().await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "waited for the refill"
        );
    }

    #[tokio::test]
    async fn a_429_pause_holds_every_caller() {
        let budget = CallBudget::per_hour(60_000, Duration::from_millis(500));
        budget.pause_until(Instant::now() + Duration::from_millis(200));
        let started = std::time::Instant::now();
        budget.acquire().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(190));
        budget.pause_until(Instant::now() + Duration::from_secs(60));
        assert!(matches!(
            budget.acquire().await,
            Err(OutboundError::RateLimited { .. })
        ));
    }

    #[tokio::test]
    async fn budget_allows_a_minutes_share_then_refuses_beyond_max_wait() {
        // 120 calls per hour: a burst of 2, then one call per 30.5 s.
        let budget = CallBudget::per_hour(120, Duration::from_millis(50));
        budget.acquire().await.unwrap();
        budget.acquire().await.unwrap();
        assert_eq!(budget.acquire().await, Err(OutboundError::BudgetExhausted));
    }

    #[tokio::test]
    async fn each_user_spends_a_share_of_their_own() {
        let budget = UserCallBudget::per_hour(2, Duration::from_millis(50));
        let spender = UserId::parse("spender").unwrap();
        budget.acquire(&spender).await.unwrap();
        budget.acquire(&spender).await.unwrap();
        assert_eq!(
            budget.acquire(&spender).await,
            Err(OutboundError::UserBudgetExhausted { per_hour: 2 })
        );
        budget
            .acquire(&UserId::parse("neighbour").unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            reqwest::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120));
    }
}

//! A Dexcom API simulator speaking Dexcom's real wire format (OAuth 2 login
//! and token endpoints, v2 and v3 egvs / dataRange / devices), so cgm-hub's
//! Dexcom source can be tested and demonstrated without Dexcom.
//!
//! It is "the outside world": it shares no types with `sources::dexcom`.
//! Run it in-process ([`DexcomSimulator::router`], [`spawn`]) or standalone
//! ([`serve`]). Readings come from the deterministic demo patients
//! (`simulator::patients`), so a sim user named like a demo patient serves exactly
//! what cgm-hub's demo source generates for that patient.
//!
//! Behaviour chosen where Dexcom documents nothing:
//! - Refresh tokens rotate; presenting a rotated one answers `invalid_grant`
//!   and revokes its whole token family (access and refresh tokens).
//! - Authorization codes are used up by any exchange attempt, even a failed
//!   one; presenting a code twice also revokes the tokens it produced.
//! - Each user's history starts `SimConfig::history` (default 400 days)
//!   before the simulator was created: no reading is served from before then.
//! - Data-endpoint errors use an API-gateway JSON body (see `reply`).
//!
//! Files: `oauth` (login, token), `tokens` (code/token store), `data`
//! (egvs, dataRange, devices), `records` (JSON shapes), `time` (timestamp
//! strings), `users` (sim users), `faults`, `stats`, `control` (`/sim/*`),
//! `reply` (response helpers).

pub mod browser;
mod control;
mod data;
mod faults;
mod oauth;
mod records;
mod reply;
mod stats;
#[cfg(test)]
mod tests;
mod time;
mod tokens;
mod users;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::Faults;
pub use stats::SimStats;

use faults::FaultState;
use stats::{Counter, Counters};
use tokens::TokenStore;

/// Settings of one simulator instance.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The only client the simulator knows. Default "cgm-hub-demo".
    pub client_id: String,
    /// Its secret. Default "cgm-hub-demo-secret".
    pub client_secret: String,
    /// `expires_in` of access tokens. Default 7200 s, as Dexcom.
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens. Default 365 days.
    pub refresh_token_ttl: Duration,
    /// Dexcom's late arrival: a reading is visible only once
    /// now >= its time + delay. Default 0.
    pub data_delay: Duration,
    /// Widest egvs window in days; a wider one answers 400. Default 30.
    pub max_window_days: i64,
    /// How far back every user's readings go, from the simulator's creation.
    /// Default 400 days; load tests shorten it to keep backfills small.
    pub history: Duration,
    /// Uploader outages (a phone that died): none by default. The demo uses one
    /// to show a `stale` alert.
    pub outages: Vec<Outage>,
}

/// The uploader of `sim_user` was off from `from` to `until`: while it is off,
/// no reading taken at or after `from` is visible; when it comes back, the
/// readings it kept (the whole gap) become visible at once, as a phone that
/// reconnects uploads its backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub sim_user: String,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: "cgm-hub-demo".to_owned(),
            client_secret: "cgm-hub-demo-secret".to_owned(),
            access_token_ttl: Duration::from_secs(7200),
            refresh_token_ttl: Duration::from_secs(365 * 24 * 3600),
            data_delay: Duration::ZERO,
            max_window_days: 30,
            history: Duration::from_secs(400 * 24 * 3600),
            outages: Vec::new(),
        }
    }
}

/// A handle on one simulator; clones share its state.
#[derive(Clone)]
pub struct DexcomSimulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimConfig,
    created_at: DateTime<Utc>,
    tokens: Mutex<TokenStore>,
    faults: FaultState,
    counters: Counters,
}

impl std::fmt::Debug for DexcomSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DexcomSimulator")
            .field("config", &self.inner.config)
            .field("created_at", &self.inner.created_at)
            .finish_non_exhaustive()
    }
}

impl DexcomSimulator {
    pub fn new(config: SimConfig) -> Self {
        let tokens = TokenStore::new(config.access_token_ttl, config.refresh_token_ttl);
        Self {
            inner: Arc::new(Inner {
                config,
                created_at: Utc::now(),
                tokens: Mutex::new(tokens),
                faults: FaultState::default(),
                counters: Counters::default(),
            }),
        }
    }

    /// All Dexcom routes plus the `/sim/*` control routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2/oauth2/login", get(oauth::login))
            .route("/v2/oauth2/token", post(oauth::token))
            .route("/v3/users/self/egvs", get(data::egvs_v3))
            .route("/v2/users/self/egvs", get(data::egvs_v2))
            .route("/v3/users/self/dataRange", get(data::data_range_v3))
            .route("/v2/users/self/dataRange", get(data::data_range_v2))
            .route("/v3/users/self/devices", get(data::devices_v3))
            .route("/v2/users/self/devices", get(data::devices_v2))
            .route(
                "/sim/faults",
                get(control::get_faults).put(control::put_faults),
            )
            .route("/sim/users/{sim_user}/revoke", post(control::revoke))
            .route(
                "/sim/access-tokens/expire",
                post(control::expire_access_tokens),
            )
            .route("/sim/stats", get(control::stats))
            .with_state(self.clone())
    }

    /// The fault settings now in force.
    pub fn faults(&self) -> Faults {
        self.inner.faults.snapshot()
    }

    /// Replaces the fault settings (counters included).
    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f);
    }

    /// Kills every code and token of `sim_user`: token grants then answer
    /// `invalid_grant` and data calls 401. A new login works again.
    pub fn revoke_user(&self, sim_user: &str) {
        self.tokens().revoke_user(sim_user);
    }

    /// An access and refresh token for `sim_user`, as a completed login would
    /// issue them, without the login: provisions many users for load tests.
    pub fn provision_tokens(&self, sim_user: &str) -> (String, String) {
        let issued = self.tokens().provision(sim_user);
        (issued.access_token, issued.refresh_token)
    }

    /// When each reading of `sim_user` that `egvs` serves at `now` was taken
    /// (history start to `now` less the data delay), ascending: what a
    /// complete sync at `now` holds.
    pub fn reading_times(&self, sim_user: &str, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let user = users::SimUser::resolve(sim_user, &self.inner.config.client_id);
        user.samples_inclusive(self.history_start(), self.visible_until_for(sim_user, now))
            .into_iter()
            .map(|s| s.timestamp)
            .collect()
    }

    /// A snapshot of the call counters.
    pub fn stats(&self) -> SimStats {
        self.inner.counters.snapshot()
    }

    /// Makes every access token issued so far expired now (refresh tokens
    /// stay valid), to test 401 -> refresh -> retry.
    pub fn expire_access_tokens(&self) {
        self.tokens().expire_access_tokens();
    }

    fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self, c: Counter) {
        self.inner.counters.bump(c);
    }

    /// No reading before this instant is ever served.
    fn history_start(&self) -> DateTime<Utc> {
        let history = TimeDelta::from_std(self.inner.config.history).unwrap_or(TimeDelta::MAX);
        self.inner
            .created_at
            .checked_sub_signed(history)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The newest reading time visible at `now`, given the data delay.
    fn visible_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        TimeDelta::from_std(self.inner.config.data_delay)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or_else(|| self.history_start())
    }

    /// The newest reading time of `sim_user` visible at `now`: as
    /// `visible_until`, and before the start of an outage in progress.
    fn visible_until_for(&self, sim_user: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let base = self.visible_until(now);
        self.inner
            .config
            .outages
            .iter()
            .filter(|o| o.sim_user == sim_user && o.from <= now && now < o.until)
            .map(|o| o.from - TimeDelta::seconds(1))
            .fold(base, DateTime::min)
    }

    fn style(&self) -> records::Style {
        let f = self.faults();
        records::Style {
            receiver: f.receiver_without_offsets,
            low_high_as_null: f.low_high_as_null,
        }
    }
}

/// Serves the simulator on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish. Binds nothing itself.
pub async fn serve(
    listener: TcpListener,
    sim: DexcomSimulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A simulator serving on 127.0.0.1 in a background task. Serving stops when
/// this value is dropped, or, waiting for it, with [`RunningSimulator::shutdown`].
#[derive(Debug)]
pub struct RunningSimulator {
    /// E.g. "http://127.0.0.1:41234", no trailing slash.
    pub base_url: String,
    pub sim: DexcomSimulator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// Stops serving and waits until the server has finished.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds 127.0.0.1:0 and serves a new simulator in a background task (needs
/// a Tokio runtime). See [`RunningSimulator`] for how it stops.
pub async fn spawn(config: SimConfig) -> std::io::Result<RunningSimulator> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let sim = DexcomSimulator::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, sim.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(RunningSimulator {
        base_url: format!("http://{addr}"),
        sim,
        stop: Some(stop),
        task: Some(task),
    })
}

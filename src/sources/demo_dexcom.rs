//! `serve --demo`: the demo patients as Dexcom users of an in-process Dexcom
//! simulator. Each is connected through the real OAuth flow over HTTP
//! (authorize → the simulator's login → our `/oauth/callback` → token exchange),
//! backfilled, then polled every minute by the scheduler: the whole path a real
//! user's data takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::AppState;
use crate::config::Settings;
use crate::connections::cipher::TokenCipher;
use crate::domain::UserId;
use crate::simulator::dexcom::browser::consent;
use crate::simulator::dexcom::{spawn, RunningSimulator, SimConfig};
use crate::sources::demo::demo_patients;
use crate::sources::dexcom::oauth::OAuthConfig;
use crate::sources::dexcom::service::DexcomService;
use crate::sync::engine::SyncSettings;

/// The demo's poll interval, so a newcomer sees readings arrive.
const POLL: Duration = Duration::from_secs(60);

/// Starts the simulator and points the app's Dexcom service at it. `local` is
/// the address cgm-hub listens on (the OAuth redirect comes back there).
pub async fn start(
    state: &AppState,
    settings: &Settings,
    cipher: Arc<TokenCipher>,
    local: SocketAddr,
) -> std::io::Result<(RunningSimulator, Arc<DexcomService>)> {
    let sim_config = SimConfig::default();
    let sim = spawn(sim_config.clone()).await?;
    let url = |raw: &str| url::Url::parse(raw).map_err(std::io::Error::other);
    // Where the demo's "browser" comes back to: a wildcard bind is reached on
    // loopback; SocketAddr's Display brackets IPv6 addresses.
    let back = if local.ip().is_unspecified() {
        let loopback = if local.is_ipv6() {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            std::net::Ipv4Addr::LOCALHOST.into()
        };
        SocketAddr::new(loopback, local.port())
    } else {
        local
    };
    let oauth = OAuthConfig {
        base_url: url(&sim.base_url)?,
        client_id: sim_config.client_id.clone(),
        client_secret: crate::config::Secret::new(sim_config.client_secret.clone()),
        redirect_uri: url(&format!("http://{back}/oauth/callback"))?,
        pkce: true,
        state_ttl: settings.dexcom.state_ttl,
        pending_per_user: settings.dexcom.pending_per_user,
    };
    let mut dexcom = settings.dexcom.clone();
    dexcom.api_base_url = oauth.base_url.clone();
    let sync = SyncSettings {
        interval: POLL,
        backfill_days: settings.demo_backfill_days,
        ..settings.sync.clone()
    };
    let service = crate::app::dexcom_service(state, &dexcom, sync, oauth, cipher);
    let _ = state.dexcom.set(service.clone());
    tracing::info!(simulator = %sim.base_url, "demo: Dexcom simulator started");
    Ok((sim, service))
}

/// Connects every demo patient, then polls them until `stop` fires. Keeps the
/// simulator alive meanwhile.
pub async fn run(
    sim: RunningSimulator,
    service: Arc<DexcomService>,
    mut stop: watch::Receiver<bool>,
) {
    let browser = reqwest::Client::new();
    for patient in demo_patients() {
        let Ok(user) = UserId::parse(patient.user_id) else {
            continue;
        };
        if let Err(e) = connect(&service, &browser, &user).await {
            tracing::warn!(user_id = %user, error = %e, "demo: could not connect through the simulator");
        }
    }
    // From here the scheduler polls them like any connected user.
    let _ = stop.changed().await;
    drop(sim);
    tracing::info!("demo: stopped");
}

/// Connects `user`: our login URL, the simulator's consent, then the redirect
/// back to our own `/oauth/callback` over HTTP. Done at every start, since the
/// in-process simulator forgets the tokens it issued when cgm-hub stops.
async fn connect(
    service: &DexcomService,
    browser: &reqwest::Client,
    user: &UserId,
) -> Result<(), String> {
    let started = service.begin(user).await.map_err(|e| e.to_string())?;
    let back = consent(&started.login_url, user.as_str()).await?;
    let done = browser
        .get(back)
        .header(
            reqwest::header::COOKIE,
            format!(
                "{}={}",
                started.cookie_name,
                started.browser_secret.expose()
            ),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !done.status().is_success() {
        return Err(format!("callback answered {}", done.status()));
    }
    tracing::info!(user_id = %user, "demo: connected through the Dexcom OAuth flow");
    Ok(())
}

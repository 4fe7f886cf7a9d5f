//! The Dexcom simulator, and the client stacks, app and OAuth flows pointed at it.

use std::sync::Arc;
use std::time::Duration;

use cgm_hub::config::{ApiVersion, SyncSettings};
use cgm_hub::connections::cipher::TokenCipher;
use cgm_hub::events::MemoryBus;
use cgm_hub::pipeline::Pipeline;
use cgm_hub::secret::Secret;
use cgm_hub::simulator::dexcom::browser::consent;
use cgm_hub::simulator::dexcom::{RunningSimulator, SimConfig};
use cgm_hub::sources::dexcom::oauth::OAuthConfig;
use cgm_hub::sources::dexcom::outbound::{Breakers, CallBudget, Outbound, RetryPolicy};
use cgm_hub::sources::dexcom::service::{Callback, DexcomService};
use cgm_hub::store::Store;

use super::{no_redirects, start_relay, user, TestApp};

/// A running Dexcom simulator with default settings.
pub async fn simulator() -> RunningSimulator {
    simulator_with(SimConfig::default()).await
}

pub async fn simulator_with(config: SimConfig) -> RunningSimulator {
    cgm_hub::simulator::dexcom::spawn(config)
        .await
        .expect("start the Dexcom simulator")
}

/// A TestApp whose Dexcom client is the simulator's (the OAuth redirect comes
/// back to the app itself).
pub async fn dexcom_app(sim: &RunningSimulator, extra: &[(&str, &str)]) -> TestApp {
    let config = SimConfig::default();
    let mut vars = vec![
        ("DEXCOM_API_BASE_URL", sim.base_url.as_str()),
        ("DEXCOM_CLIENT_ID", config.client_id.as_str()),
        ("DEXCOM_CLIENT_SECRET", config.client_secret.as_str()),
        ("DEXCOM_REDIRECT_URI", "{base}/oauth/callback"),
    ];
    vars.extend_from_slice(extra);
    let owned: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let borrowed: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    TestApp::spawn_with(&borrowed).await
}

/// Short retry waits, so fault tests take milliseconds, not seconds.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        backoff_factor: 2.0,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
    }
}

/// One "instance" of the Dexcom client stack over `store`, talking to `sim`.
/// Several stacks over one store behave like several cgm-hub processes.
pub fn dexcom_stack(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    policy: RetryPolicy,
    breakers: Breakers,
    backfill_days: u32,
) -> Arc<DexcomService> {
    dexcom_stack_with(
        store,
        sim,
        policy,
        breakers,
        backfill_days,
        test_cipher(),
        ApiVersion::V3,
    )
}

/// `dexcom_stack` with a chosen token cipher and API version.
pub fn dexcom_stack_with(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    policy: RetryPolicy,
    breakers: Breakers,
    backfill_days: u32,
    cipher: TokenCipher,
    version: ApiVersion,
) -> Arc<DexcomService> {
    build_dexcom(
        store,
        sim,
        Arc::new(MemoryBus::default()),
        Outbound::new(
            policy,
            breakers,
            CallBudget::per_hour(60_000, Duration::from_secs(1)),
        ),
        cipher,
        version,
        SyncSettings {
            backfill_days,
            ..SyncSettings::default()
        },
    )
}

/// A Dexcom stack whose sync engine polls every `interval` and publishes to
/// `bus`, as one instance of the app would (start a `Scheduler` to poll).
pub fn dexcom_engine_stack(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    bus: Arc<MemoryBus>,
    interval: Duration,
) -> Arc<DexcomService> {
    build_dexcom(
        store,
        sim,
        bus,
        Outbound::new(
            fast_policy(),
            Breakers::new(5, Duration::from_secs(30)),
            CallBudget::per_hour(60_000, Duration::from_secs(1)),
        ),
        test_cipher(),
        ApiVersion::V3,
        SyncSettings {
            interval,
            backfill_days: 1,
            lease: Duration::from_secs(5),
            ..SyncSettings::default()
        },
    )
}

fn build_dexcom(
    store: Arc<dyn Store>,
    sim: &RunningSimulator,
    bus: Arc<MemoryBus>,
    outbound: Outbound,
    cipher: TokenCipher,
    version: ApiVersion,
    sync: SyncSettings,
) -> Arc<DexcomService> {
    let config = SimConfig::default();
    start_relay(store.clone(), bus);
    let pipeline = Pipeline::new(store.clone(), cgm_hub::domain::TimePolicy::default());
    let service = DexcomService::build(
        store.clone(),
        pipeline,
        Arc::new(cipher),
        OAuthConfig {
            base_url: sim.base_url.parse().expect("simulator URL"),
            client_id: config.client_id,
            client_secret: Secret::new(config.client_secret),
            // Never followed: `connect` completes the flow itself.
            redirect_uri: "http://127.0.0.1:9/oauth/callback".parse().expect("URL"),
            pkce: true,
            state_ttl: cgm_hub::config::MAX_OAUTH_STATE_TTL,
            pending_per_user: 10,
        },
        outbound,
        version,
        sync,
    );
    // The engine runs queued jobs as the app's would; it runs for the rest of
    // the test (the stop sender is leaked on purpose).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Box::leak(Box::new(stop));
    service.engine().start(stopped);
    service
}

pub fn test_cipher() -> TokenCipher {
    TokenCipher::new(&[42; 32], &[])
}

/// The browser's part of the OAuth flow against the simulator, then the
/// callback handled by `service` directly.
pub async fn connect(service: &DexcomService, user_id: &str) {
    let started = service.begin(&user(user_id)).await.expect("begin");
    let back = consent(&started.login_url, user_id)
        .await
        .expect("the simulator consents");
    service
        .complete(Callback {
            browser: Some(started.browser_secret.expose().clone()),
            ..Callback::from_url(&back)
        })
        .await
        .expect("the state names the user")
        .outcome
        .expect("connected");
}

/// A user connects Dexcom through the app's real HTTP flow, as a browser would:
/// `/oauth/authorize` (AUTH_DISABLED), the simulator's consent, and back to
/// `/oauth/callback` with the cookie. Works for a `TestApp` and a `Binary`.
pub async fn connect_over_http(base: &str, user_id: &str) {
    let browser = no_redirects();
    let started = browser
        .get(format!("{base}/oauth/authorize?user_id={user_id}"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(started.status(), 302, "authorize redirects to the login");
    let cookie = started.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_owned();
    let login: url::Url = started.headers()["location"]
        .to_str()
        .expect("location")
        .parse()
        .expect("login URL");
    let back = consent(&login, user_id)
        .await
        .expect("the simulator consents");
    let done = browser
        .get(back)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(done.status(), 200, "the callback connects {user_id}");
}

//! The Dexcom client against the simulator: token refresh races, rotation,
//! revocation, retries, timeouts, the circuit breaker, and windowed backfills.
//! Each test counts the calls the simulator actually received.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgm_hub::records::connections::{ConnectionStatus, Provider};
use cgm_hub::simulator::dexcom::SimConfig;
use cgm_hub::simulator::patients::demo_patient;
use cgm_hub::sources::dexcom::client::DexcomError;
use cgm_hub::sources::dexcom::outbound::{Breakers, OutboundError};
use cgm_hub::sources::dexcom::sync::fetch_range;
use cgm_hub::sources::dexcom::tokens::AccessError;
use cgm_hub::sources::dexcom::windows::Window;
use cgm_hub::store::Store;
use chrono::Utc;

use crate::helpers::*;

/// A simulator, a store, and one client stack with `user_id` connected.
struct Fixture {
    sim: cgm_hub::simulator::dexcom::RunningSimulator,
    store: Arc<dyn Store>,
    dexcom: Arc<cgm_hub::sources::dexcom::service::DexcomService>,
    _db: TestStore,
}

impl Fixture {
    async fn connected(
        user_id: &str,
        policy: cgm_hub::sources::dexcom::outbound::RetryPolicy,
    ) -> Self {
        let sim = simulator().await;
        let db = sqlite_store().await;
        let dexcom = dexcom_stack(db.store.clone(), &sim, policy, breakers(), 0);
        connect(&dexcom, user_id).await;
        Self {
            sim,
            store: db.store.clone(),
            dexcom,
            _db: db,
        }
    }
}

fn breakers() -> Breakers {
    Breakers::new(1000, Duration::from_secs(60))
}

/// The last day: long enough that a synthetic sensor gap never empties it.
fn recent_day() -> Window {
    let end = Utc::now();
    Window {
        start: end - chrono::Duration::days(1),
        end,
    }
}

/// The last hour of a user's readings, as the client fetches them.
async fn fetch(
    dexcom: &cgm_hub::sources::dexcom::service::DexcomService,
    user_id: &str,
) -> Result<cgm_hub::sources::dexcom::wire::EgvsPage, DexcomError> {
    dexcom.client().egvs(&user(user_id), recent_day()).await
}

/// Makes the stored access token due for refresh, as if its time had come.
async fn make_token_due(store: &Arc<dyn Store>, user_id: &str) {
    let mut c = stored(store, user_id).await;
    c.access_refresh_at = Some(Utc::now() - chrono::Duration::seconds(1));
    store.put_connection(c).await.unwrap();
}

#[tokio::test]
async fn concurrent_fetches_share_one_refresh_across_two_instances() {
    let sim = simulator().await;
    let under_test = sqlite_store().await;
    let one = dexcom_stack(under_test.store.clone(), &sim, fast_policy(), breakers(), 0);
    let two = dexcom_stack(under_test.store.clone(), &sim, fast_policy(), breakers(), 0);
    connect(&one, "alice").await;
    make_token_due(&under_test.store, "alice").await;

    let calls = (0..20).map(|i| {
        let client = if i % 2 == 0 {
            one.client().clone()
        } else {
            two.client().clone()
        };
        tokio::spawn(async move { client.egvs(&user("alice"), recent_day()).await })
    });
    for call in futures_util::future::join_all(calls).await {
        let page = call.unwrap().expect("every fetch succeeds");
        assert!(!page.records.is_empty());
    }
    let stats = sim.sim.stats();
    assert_eq!(
        stats.token_refresh, 1,
        "one refresh for 20 racing fetches on two instances"
    );
    assert_eq!(stats.egvs, 20);
    assert_eq!(stats.unauthorized, 0);
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_once() {
    let Fixture { sim, dexcom, .. } = &Fixture::connected("bob", fast_policy()).await;
    sim.sim.expire_access_tokens();
    let page = fetch(dexcom, "bob").await.unwrap();
    assert!(!page.records.is_empty());
    let stats = sim.sim.stats();
    assert_eq!(
        (
            stats.unauthorized,
            stats.token_refresh,
            stats.egvs,
            stats.data_requests
        ),
        (1, 1, 1, 2)
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_dead_and_reusing_it_requires_reauth() {
    let Fixture { store, dexcom, .. } = &Fixture::connected("carol", fast_policy()).await;
    let stale = stored(store, "carol").await;
    dexcom.refresh_now(&user("carol")).await.unwrap();
    let fresh = stored(store, "carol").await;
    assert_ne!(stale.tokens, fresh.tokens);

    // Put the old (rotated) pair back, as a lost write would: Dexcom refuses it.
    let mut restored = stale.clone();
    restored.access_refresh_at = Some(Utc::now() - chrono::Duration::seconds(1));
    store.put_connection(restored).await.unwrap();
    let err = fetch(dexcom, "carol").await.unwrap_err();
    assert!(err.needs_reauth(), "{err}");
    let c = stored(store, "carol").await;
    assert_eq!(c.status, ConnectionStatus::ReauthRequired);
    assert!(c.tokens.is_none());
}

#[tokio::test]
async fn revocation_stops_calls_until_reconnect() {
    let Fixture {
        sim, store, dexcom, ..
    } = &Fixture::connected("dana", fast_policy()).await;
    sim.sim.revoke_user("dana");
    let err = fetch(dexcom, "dana").await.unwrap_err();
    assert!(err.needs_reauth(), "{err}");
    let c = stored(store, "dana").await;
    assert_eq!(c.status, ConnectionStatus::ReauthRequired);
    assert!(c.last_error.unwrap().contains("invalid_grant"));

    let before = sim.sim.stats();
    let err = fetch(dexcom, "dana").await.unwrap_err();
    assert!(matches!(
        err,
        DexcomError::Access(AccessError::ReauthRequired)
    ));
    let after = sim.sim.stats();
    assert_eq!(
        (after.egvs, after.token_refresh),
        (before.egvs, before.token_refresh),
        "no call for a user who must reconnect"
    );

    connect(dexcom, "dana").await;
    assert!(fetch(dexcom, "dana").await.is_ok());
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let Fixture { sim, dexcom, .. } = &Fixture::connected("erin", fast_policy()).await;
    let mut faults = sim.sim.faults();
    faults.rate_limit_next = 1;
    faults.retry_after_seconds = 1;
    sim.sim.set_faults(faults);
    let started = Instant::now();
    fetch(dexcom, "erin").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    let stats = sim.sim.stats();
    assert_eq!((stats.rate_limited, stats.data_requests), (1, 2));
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_retries() {
    let Fixture { sim, dexcom, .. } = &Fixture::connected("finn", fast_policy()).await;

    let mut faults = sim.sim.faults();
    faults.server_error_next = 2;
    sim.sim.set_faults(faults.clone());
    fetch(dexcom, "finn").await.unwrap();
    assert_eq!(
        sim.sim.stats().data_requests,
        3,
        "two failures, then success"
    );

    faults.server_error_next = 10;
    sim.sim.set_faults(faults);
    let err = fetch(dexcom, "finn").await.unwrap_err();
    assert!(
        matches!(
            err,
            DexcomError::Outbound(OutboundError::ServerError { attempts: 4, .. })
        ),
        "{err}"
    );
    assert_eq!(
        sim.sim.stats().data_requests,
        3 + 4,
        "1 + MAX_RETRIES(3) attempts"
    );
}

#[tokio::test]
async fn a_slow_dexcom_times_out_per_attempt() {
    let mut policy = fast_policy();
    policy.timeout = Duration::from_millis(300);
    policy.max_retries = 1;
    let Fixture { sim, dexcom, .. } = &Fixture::connected("gus", policy).await;
    let mut faults = sim.sim.faults();
    faults.slow_ms = 1_000;
    sim.sim.set_faults(faults);
    let started = Instant::now();
    let err = fetch(dexcom, "gus").await.unwrap_err();
    assert!(
        matches!(
            err,
            DexcomError::Outbound(OutboundError::Timeout { attempts: 2 })
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "gave up on time"
    );
    assert_eq!(sim.sim.stats().data_requests, 2);
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_stops_calling() {
    let sim = simulator().await;
    let under_test = sqlite_store().await;
    let mut policy = fast_policy();
    policy.max_retries = 0;
    let dexcom = dexcom_stack(
        under_test.store.clone(),
        &sim,
        policy,
        Breakers::new(3, Duration::from_secs(1)),
        0,
    );
    connect(&dexcom, "hal").await;
    let mut faults = sim.sim.faults();
    faults.server_error_next = 4;
    sim.sim.set_faults(faults);
    for _ in 0..3 {
        let err = fetch(&dexcom, "hal").await.unwrap_err();
        assert!(matches!(
            err,
            DexcomError::Outbound(OutboundError::ServerError { .. })
        ));
    }
    let err = fetch(&dexcom, "hal").await.unwrap_err();
    assert!(
        matches!(
            err,
            DexcomError::Outbound(OutboundError::CircuitOpen { .. })
        ),
        "{err}"
    );
    assert_eq!(
        sim.sim.stats().data_requests,
        3,
        "the open circuit made no call"
    );

    // After the cool-down one probe goes through; it fails (4th fault): open again.
    let half_open = || {
        let states = dexcom.client().outbound().circuit_states();
        std::future::ready(
            !states.is_empty()
                && states
                    .iter()
                    .all(|(_, s)| *s == cgm_hub::sources::dexcom::outbound::CircuitState::HalfOpen),
        )
    };
    eventually(
        "the circuit half-opens after its cool-down",
        Duration::from_secs(5),
        half_open,
    )
    .await;
    assert!(fetch(&dexcom, "hal").await.is_err());
    assert_eq!(sim.sim.stats().data_requests, 4);
    assert!(matches!(
        fetch(&dexcom, "hal").await.unwrap_err(),
        DexcomError::Outbound(OutboundError::CircuitOpen { .. })
    ));
    // The next probe succeeds and closes it.
    eventually(
        "the circuit half-opens again",
        Duration::from_secs(5),
        half_open,
    )
    .await;
    fetch(&dexcom, "hal").await.unwrap();
    fetch(&dexcom, "hal").await.unwrap();
    assert_eq!(sim.sim.stats().data_requests, 6);
}

#[tokio::test]
async fn a_90_day_backfill_is_three_windows_without_gaps_or_duplicates() {
    let sim = simulator_with(SimConfig::default()).await;
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let dexcom = dexcom_stack(store.clone(), &sim, fast_policy(), breakers(), 0);
    // A demo patient's name: the simulator serves exactly that patient's samples.
    connect(&dexcom, "demo-bob").await;
    // Whole seconds, as Dexcom's query parameters carry them: with a fractional
    // start, a reading in the start's own second was fetched but not expected.
    let end = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
    let start = end - chrono::Duration::days(90);
    let pipeline =
        cgm_hub::pipeline::Pipeline::new(store.clone(), cgm_hub::domain::TimePolicy::default());
    let report = fetch_range(
        dexcom.client(),
        &pipeline,
        store.as_ref(),
        &user("demo-bob"),
        start,
        end,
    )
    .await
    .unwrap();
    assert_eq!(report.windows, 3);
    assert_eq!(sim.sim.stats().egvs, 3);

    let expected: BTreeSet<i64> = demo_patient("demo-bob")
        .unwrap()
        .samples(start, end)
        .iter()
        .map(|s| s.timestamp.timestamp())
        .collect();
    assert!(
        expected.len() > 90 * 250,
        "about 288 a day: {}",
        expected.len()
    );
    let timestamps = all_stored_timestamps(&store, "demo-bob").await;
    let missing: Vec<_> = expected.difference(&timestamps).take(5).collect();
    let extra: Vec<_> = timestamps.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} stored, {} expected; missing {missing:?}, extra {extra:?}",
        timestamps.len(),
        expected.len()
    );
    let counts = report.counts;
    assert_eq!(counts.inserted, expected.len() as u64);
    assert_eq!(counts.rejected, 0);
    assert_eq!(counts.fetched, counts.inserted + counts.duplicates);

    let again = fetch_range(
        dexcom.client(),
        &pipeline,
        store.as_ref(),
        &user("demo-bob"),
        start,
        end,
    )
    .await
    .unwrap();
    assert_eq!(
        again.counts.inserted, 0,
        "a second backfill stores nothing new"
    );
    let c = stored(&store, "demo-bob").await;
    assert!(c.last_sync_at.is_some());
}

/// The user's Dexcom connection as stored.
async fn stored(
    store: &Arc<dyn Store>,
    user_id: &str,
) -> cgm_hub::records::connections::Connection {
    store
        .get_connection(&user(user_id), Provider::Dexcom)
        .await
        .unwrap()
        .expect("a stored connection")
}

/// A client stack whose tokens are sealed with key `[key; 32]`.
fn keyed_stack(
    store: &Arc<dyn Store>,
    sim: &cgm_hub::simulator::dexcom::RunningSimulator,
    key: u8,
    previous: &[[u8; 32]],
) -> Arc<cgm_hub::sources::dexcom::service::DexcomService> {
    dexcom_stack_with(
        store.clone(),
        sim,
        fast_policy(),
        breakers(),
        0,
        cgm_hub::connections::cipher::TokenCipher::new(&[key; 32], previous),
        cgm_hub::config::ApiVersion::V3,
    )
}

/// Every stored reading of a user, oldest first, walked page by page.
async fn all_stored(store: &Arc<dyn Store>, user_id: &str) -> Vec<cgm_hub::domain::StoredReading> {
    use cgm_hub::store::{fetch_page, Order, PageRequest, Seek};
    let mut out = Vec::new();
    let mut seek = None;
    loop {
        let page = fetch_page(
            store.as_ref(),
            &PageRequest {
                user_id: user(user_id),
                start: None,
                end: None,
                order: Order::Asc,
                limit: 1000,
                seek,
            },
        )
        .await
        .unwrap();
        out.extend(page.readings);
        match page.next {
            Some(next @ Seek::After(_)) => seek = Some(next),
            _ => return out,
        }
    }
}

async fn all_stored_timestamps(store: &Arc<dyn Store>, user_id: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for r in all_stored(store, user_id).await {
        assert!(
            out.insert(r.reading.timestamp.unix_seconds()),
            "duplicate timestamp"
        );
    }
    out
}

fn pipeline_over(store: &Arc<dyn Store>) -> cgm_hub::pipeline::Pipeline {
    cgm_hub::pipeline::Pipeline::new(store.clone(), cgm_hub::domain::TimePolicy::default())
}

#[tokio::test]
async fn receiver_records_without_offsets_and_null_highs_are_kept() {
    use cgm_hub::domain::SensorStatus;
    use cgm_hub::simulator::patients::SensorLevel;
    let sim = simulator().await;
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let dexcom = dexcom_stack(store.clone(), &sim, fast_policy(), breakers(), 0);
    let mut faults = sim.sim.faults();
    faults.receiver_without_offsets = true;
    faults.low_high_as_null = true;
    sim.sim.set_faults(faults);
    // demo-carol (type 2, poorly controlled) runs above 400 mg/dL at times.
    connect(&dexcom, "demo-carol").await;
    let end = Utc::now();
    let start = end - chrono::Duration::days(90); // three windows: HIGHs are sure to occur
    let report = fetch_range(
        dexcom.client(),
        &pipeline_over(&store),
        store.as_ref(),
        &user("demo-carol"),
        start,
        end,
    )
    .await
    .unwrap();
    assert_eq!(report.counts.rejected, 0);

    let patient = demo_patient("demo-carol").unwrap();
    let samples = patient.samples(start, end);
    let highs = samples
        .iter()
        .filter(|s| s.level == SensorLevel::High)
        .count();
    assert!(highs > 0, "the window has HIGH readings to check");
    let offset = i16::try_from(patient.local_offset().local_minus_utc() / 60).unwrap();
    let mut stored_highs = 0;
    for r in all_stored(&store, "demo-carol").await {
        assert_eq!(
            r.reading.display_offset_minutes,
            Some(offset),
            "offset from displayTime - systemTime"
        );
        assert!(r.reading.source_record_id.is_some(), "recordId kept");
        if r.reading.glucose.status() == Some(SensorStatus::High) {
            assert_eq!(r.reading.glucose.mg_dl().get(), 401);
            stored_highs += 1;
        }
    }
    assert_eq!(stored_highs, highs, "every HIGH kept as 401, none dropped");
}

#[tokio::test]
async fn v2_endpoints_and_data_range_and_devices() {
    let sim = simulator().await;
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let v2 = dexcom_stack_with(
        store.clone(),
        &sim,
        fast_policy(),
        breakers(),
        0,
        test_cipher(),
        cgm_hub::config::ApiVersion::V2,
    );
    connect(&v2, "demo-alice").await;
    let page = fetch(&v2, "demo-alice").await.unwrap();
    assert!(!page.records.is_empty());
    assert!(
        page.records.iter().all(|r| r.record_id.is_none()),
        "v2 has no recordId"
    );
    let range = v2
        .client()
        .data_range(&user("demo-alice"), None)
        .await
        .unwrap();
    let (first, last) = range.egvs_span().unwrap().expect("an egvs span");
    assert!(first < last && last <= Utc::now());
    let devices = v2.client().devices(&user("demo-alice")).await.unwrap();
    assert!(!devices.records.is_empty());

    let v3 = dexcom_stack(store.clone(), &sim, fast_policy(), breakers(), 0);
    let devices = v3.client().devices(&user("demo-alice")).await.unwrap();
    assert!(devices.records[0].transmitter_generation.is_some());
    let since = Utc::now() + chrono::Duration::hours(1);
    let nothing_new = v3
        .client()
        .data_range(&user("demo-alice"), Some(since))
        .await
        .unwrap();
    assert!(nothing_new.egvs.is_none(), "no egvs after lastSyncTime");
}

#[tokio::test]
async fn a_key_rotation_reseals_every_token_under_the_new_key() {
    use cgm_hub::connections::cipher::key_id;
    let sim = simulator().await;
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let old = keyed_stack(&store, &sim, 1, &[]);
    connect(&old, "ann").await;
    connect(&old, "ben").await;
    let rotated = keyed_stack(&store, &sim, 2, &[[1; 32]]);
    let done = rotated.rewrap_tokens().await.unwrap();
    assert_eq!((done.rewrapped, done.left), (2, 0));
    assert_eq!(
        rotated.rewrap_tokens().await.unwrap().rewrapped,
        0,
        "nothing left under the old key"
    );
    for id in ["ann", "ben"] {
        let c = stored(&store, id).await;
        assert_eq!(c.tokens.as_ref().unwrap().key_id, key_id(&[2; 32]));
    }
    // The new key alone now opens them: the old one can be retired.
    let new_only = keyed_stack(&store, &sim, 2, &[]);
    assert!(fetch(&new_only, "ann").await.is_ok());
    let lost = keyed_stack(&store, &sim, 3, &[]);
    let err = fetch(&lost, "ann").await.unwrap_err();
    assert!(
        err.to_string().contains(&key_id(&[2; 32])),
        "names the missing key: {err}"
    );
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_user_does_not_open() {
    let Fixture { store, dexcom, .. } = &Fixture::connected("victim", fast_policy()).await;
    connect(dexcom, "mallory").await;
    let victim = stored(store, "victim").await;
    let mut mallory = stored(store, "mallory").await;
    mallory.tokens = victim.tokens.clone();
    store.put_connection(mallory).await.unwrap();
    let err = fetch(dexcom, "mallory").await.unwrap_err();
    assert!(
        matches!(err, DexcomError::Access(AccessError::Cipher(_))),
        "{err}"
    );
}

#[tokio::test]
async fn a_refresh_whose_caller_goes_away_is_still_stored() {
    let Fixture {
        sim, store, dexcom, ..
    } = &Fixture::connected("ivy", fast_policy()).await;
    let before = stored(store, "ivy").await;
    let mut faults = sim.sim.faults();
    faults.token_slow_ms = 400; // Dexcom rotates, then answers slowly
    sim.sim.set_faults(faults.clone());
    let caller = {
        let dexcom = dexcom.clone();
        tokio::spawn(async move { dexcom.refresh_now(&user("ivy")).await })
    };
    // The simulator counts a grant before its slow answer: the refresh is then
    // in flight, and the caller is still waiting for it.
    eventually(
        "the refresh reaches the simulator",
        Duration::from_secs(5),
        || std::future::ready(sim.sim.stats().token_refresh == 1),
    )
    .await;
    caller.abort(); // the HTTP request was dropped, or the handler cancelled
    assert!(
        caller.await.expect_err("aborted").is_cancelled(),
        "the caller went away while its refresh was in flight"
    );
    // A second caller right away waits for the first refresh instead of
    // spending the same refresh token again.
    dexcom
        .refresh_now(&user("ivy"))
        .await
        .expect("the first refresh's result");
    assert_eq!(
        sim.sim.stats().token_refresh,
        1,
        "one grant for both callers"
    );
    faults.token_slow_ms = 0;
    sim.sim.set_faults(faults);

    let after = stored(store, "ivy").await;
    assert_eq!(after.status, ConnectionStatus::Connected);
    assert_eq!(
        after.token_version,
        before.token_version + 1,
        "the rotated pair was stored"
    );
    dexcom
        .refresh_now(&user("ivy"))
        .await
        .expect("the stored refresh token is the live one");
    assert_eq!(sim.sim.stats().token_refresh, 2);
    assert_eq!(sim.sim.stats().token_errors, 0);
}

#[tokio::test]
async fn a_refresh_that_may_have_landed_is_not_repeated() {
    let mut policy = fast_policy();
    policy.timeout = Duration::from_millis(200);
    let Fixture {
        sim, store, dexcom, ..
    } = &Fixture::connected("jon", policy).await;
    let mut faults = sim.sim.faults();
    faults.token_slow_ms = 600;
    sim.sim.set_faults(faults);
    let err = dexcom.refresh_now(&user("jon")).await.unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = sim.sim.stats();
    assert_eq!(
        (stats.token_refresh, stats.token_errors),
        (1, 0),
        "one attempt, not MAX_RETRIES: a repeat would spend a rotated token"
    );
    let c = stored(store, "jon").await;
    assert_eq!(
        c.status,
        ConnectionStatus::Connected,
        "a timeout is not a revocation"
    );
    assert!(c.last_error.unwrap().contains("timeout"));
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_is_returned_not_waited() {
    let Fixture { sim, dexcom, .. } = &Fixture::connected("kim", fast_policy()).await;
    let mut faults = sim.sim.faults();
    faults.rate_limit_next = 1;
    faults.retry_after_seconds = 3600;
    sim.sim.set_faults(faults);
    let started = Instant::now();
    let err = fetch(dexcom, "kim").await.unwrap_err();
    assert!(
        matches!(err, DexcomError::Outbound(OutboundError::RateLimited { retry_after: Some(d) }) if d.as_secs() == 3600),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(sim.sim.stats().data_requests, 1);
    // Every caller now holds off until Dexcom's time, without calling.
    let err = fetch(dexcom, "kim").await.unwrap_err();
    assert!(
        matches!(
            err,
            DexcomError::Outbound(OutboundError::RateLimited { .. })
        ),
        "{err}"
    );
    assert_eq!(sim.sim.stats().data_requests, 1);
}

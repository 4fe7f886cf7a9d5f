//! Two `cgm-hub serve` processes on one PostgreSQL and one RabbitMQ, polling
//! 1,000 simulated Dexcom users: between them each user is synced once per
//! interval, no reading is stored or announced twice, and every change reaches
//! the broker.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cgm_hub::config::RabbitSettings;
use cgm_hub::connections::TokenSet;
use cgm_hub::domain::UserId;
use cgm_hub::events::rabbitmq::RabbitBus;
use cgm_hub::records::connections::{Connection, ConnectionStatus, Provider};
use cgm_hub::records::jobs::{JobStatus, SyncJob, Trigger};
use cgm_hub::secret::Secret;
use cgm_hub::simulator::dexcom::SimConfig;
use cgm_hub::store::{JobStore, OutboxStore, Store};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use sqlx::Row;
use tempfile::TempDir;

use crate::helpers::*;

const USERS: usize = 1_000;
/// POLL_INTERVAL_SECONDS. 1,000 users a minute is about 17 polls a second
/// across the two debug builds, which leaves this 2-core machine room for
/// the rest of the suite running beside this test.
const INTERVAL: Duration = Duration::from_secs(30);
/// How long both instances run: the first round, then two more intervals.
const RUN: Duration = Duration::from_secs(100);
/// Room for a loaded machine on top of the scheduler's 10% jitter.
const SLACK: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow (about 100 s): run by the second step of scripts/test.sh"]
async fn two_instances_on_one_postgres_and_one_rabbitmq_sync_each_user_once_per_interval() {
    let sim = simulator_with(SimConfig {
        // Two hours of history: the first sync of a user stores 24 readings.
        history: Duration::from_secs(2 * 3600),
        access_token_ttl: Duration::from_secs(24 * 3600),
        ..SimConfig::default()
    })
    .await;
    let schema = PgSchema::new();
    let store = schema.store().await;
    let key = [7u8; 32];
    let users: Vec<String> = (0..USERS).map(|i| format!("two-{i:04}")).collect();
    connect_all(&store, &sim.sim, &key, &users).await;

    let rabbit = rabbit_settings(BROKER, &unique());
    let consumed = consume(&rabbit).await;

    let dir = TempDir::new().unwrap();
    let database_url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let encoded_key = base64::engine::general_purpose::STANDARD.encode(key);
    let interval = INTERVAL.as_secs().to_string();
    let config = SimConfig::default();
    let mut env = vec![
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", database_url.as_str()),
        ("TOKEN_ENCRYPTION_KEY", encoded_key.as_str()),
        ("DEXCOM_API_BASE_URL", sim.base_url.as_str()),
        ("DEXCOM_CLIENT_ID", config.client_id.as_str()),
        ("DEXCOM_CLIENT_SECRET", config.client_secret.as_str()),
        // Connections were made above; no browser comes back here.
        ("DEXCOM_REDIRECT_URI", "http://127.0.0.1:1/oauth/callback"),
        ("DEXCOM_CALLS_PER_HOUR", "1000000"),
        ("DEXCOM_BACKFILL_DAYS", "1"),
        ("POLL_INTERVAL_SECONDS", interval.as_str()),
        // Room for the first round's backfills beside the polls, on a machine
        // also running the rest of the suite.
        ("SYNC_CONCURRENCY", "16"),
    ];
    env.extend(rabbit_env(&rabbit));
    let client = reqwest::Client::new();
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let mut instance = Binary::start_with(&dir.path().join(format!("{name}.db")), &[], &env);
        instance.wait_healthy(&client).await;
        instances.push(instance);
    }
    let deadlocks_before = deadlocks(&schema).await;
    let started = Utc::now();
    tokio::time::sleep(RUN).await;
    let mut syncs_per_instance = Vec::new();
    for instance in &instances {
        let metrics = scrape(&client, &instance.base).await;
        let series = r#"sync_runs_total{trigger="scheduled",outcome="succeeded"}"#;
        syncs_per_instance.push(metric(&metrics, series).unwrap_or(0.0) as u64);
    }
    let stopping = Utc::now();
    for instance in &mut instances {
        assert!(instance.terminate().await.success());
    }
    // An instance syncs until it has exited (the second one polls on while the
    // first shuts down, and runs in flight finish): what the simulator showed
    // up to then may have been stored.
    let stopped = Utc::now();

    // Claims, checkpoints, ends and polls of two instances never deadlock (a
    // claim that locked job rows before the lease did, once or so a run). The
    // count is the whole database's: any deadlock beside this test is a bug too.
    assert_eq!(
        deadlocks(&schema).await,
        deadlocks_before,
        "PostgreSQL reported deadlocks (its server log names the statements)"
    );

    // Every committed event left the outbox, and the consumer has them all.
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    let events = settle(&consumed).await;
    let _ = delete_topology(&rabbit.exchange, &rabbit.queue).await;

    assert!(
        syncs_per_instance.iter().all(|n| *n > 0),
        "both instances ran scheduled syncs: {syncs_per_instance:?}"
    );

    // No reading stored twice, each announced exactly once, none changed.
    let mut created: HashSet<(String, DateTime<Utc>)> = HashSet::new();
    // Each user's scheduled jobs, by the sync.completed events announcing them.
    let mut announced: HashMap<String, BTreeSet<String>> = HashMap::new();
    for event in &events {
        let data = &event["data"];
        match event["type"].as_str().unwrap() {
            "reading.created" => {
                let key = (
                    data["user_id"].as_str().unwrap().to_owned(),
                    time(&data["timestamp"]),
                );
                assert!(created.insert(key.clone()), "created twice: {key:?}");
            }
            "sync.completed" => {
                assert_eq!(data["trigger"], "scheduled", "{event}");
                announced
                    .entry(data["user_id"].as_str().unwrap().to_owned())
                    .or_default()
                    .insert(data["job_id"].as_str().unwrap().to_owned());
            }
            "reading.updated" | "sync.failed" => panic!("unexpected {event}"),
            _ => {}
        }
    }
    let stored = stored_readings(&schema).await;
    eprintln!(
        "scale-out: {} events, {} readings stored, scheduled syncs per instance {syncs_per_instance:?}",
        events.len(),
        stored.len()
    );
    assert_eq!(stored.len(), created.len(), "one reading.created per row");
    assert!(
        stored.iter().all(|row| created.contains(row)),
        "every stored reading was announced"
    );

    // Each user was synced in every interval: all readings the simulator
    // showed one interval (plus jitter and slack) before the stop are stored,
    // and nothing it had not shown by the time both instances had exited.
    let mut per_user: HashMap<&str, BTreeSet<DateTime<Utc>>> = HashMap::new();
    for (user, at) in &stored {
        per_user.entry(user).or_default().insert(*at);
    }
    let covered = stopping - chrono::Duration::from_std(INTERVAL.mul_f64(1.1) + SLACK).unwrap();
    let mut total_expected = 0;
    for user in &users {
        let have = per_user.remove(user.as_str()).unwrap_or_default();
        let must: BTreeSet<_> = sim.sim.reading_times(user, covered).into_iter().collect();
        let may: BTreeSet<_> = sim.sim.reading_times(user, stopped).into_iter().collect();
        total_expected += must.len();
        assert!(have.is_superset(&must), "{user} misses readings");
        assert!(have.is_subset(&may), "{user} holds readings never served");
    }
    assert!(per_user.is_empty(), "readings of unknown users");
    assert!(total_expected > USERS * 20, "the simulator served readings");

    // Scheduled polls, by when they were queued (the scheduler's decision; how
    // fast they ran is what the reading check above measures): a first round
    // within the first interval, then one per interval, never two in one (the
    // instances plan on one wall-clock grid and the store coalesces their
    // polls). Each that ran succeeded and was announced.
    let first_round = started + chrono::Duration::from_std(INTERVAL + SLACK).unwrap();
    let most_apart = chrono::Duration::from_std(INTERVAL.mul_f64(1.1) + SLACK).unwrap();
    // A second, uncoalesced poll would come within the jitter (a tenth).
    let least_apart = chrono::Duration::from_std(INTERVAL / 3).unwrap();
    let mut coalesced_behind_a_job_in_flight = 0;
    for user in &users {
        let jobs: Vec<SyncJob> = store
            .list_jobs(&UserId::parse(user).unwrap(), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.trigger == Trigger::Scheduled)
            .collect();
        // A poll queued as the instances stopped waits in the store for the
        // next instance; every other one ran, succeeded and was announced.
        let (waiting, ran): (Vec<&SyncJob>, Vec<&SyncJob>) =
            jobs.iter().partition(|j| j.status == JobStatus::Queued);
        assert!(
            waiting
                .iter()
                .all(|j| j.created_at >= stopping - chrono::Duration::from_std(SLACK).unwrap()),
            "{user}: {waiting:?}"
        );
        // ...at the first attempt: a run that failed and was retried (a deadlock
        // once did that) keeps its job open and so delays the user's next poll.
        assert!(jobs.iter().all(|j| j.errors.is_empty()), "{user}: {jobs:?}");
        assert!(
            ran.iter().all(|j| j.status == JobStatus::Succeeded),
            "{user}: {ran:?}"
        );
        let ids: BTreeSet<String> = ran.iter().map(|j| j.id.to_string()).collect();
        assert_eq!(
            Some(&ids),
            announced.get(user.as_str()),
            "{user}: each scheduled job announced once"
        );
        let mut jobs = jobs;
        jobs.sort_by_key(|j| j.created_at);
        let timeline: Vec<String> = jobs.iter().map(timings).collect();
        assert!(
            jobs.first().is_some_and(|j| j.created_at <= first_round),
            "{user}: first sync {timeline:?}, started {started}"
        );
        // A slot that comes while the user's previous job is still queued or
        // running queues nothing (that job fetches up to when it runs), so the
        // gap after a job may grow by as long as it was in flight.
        let in_flight = |j: &SyncJob| j.finished_at.unwrap_or(stopping) - j.created_at;
        for pair in jobs.windows(2) {
            let gap = pair[1].created_at - pair[0].created_at;
            let allowed = most_apart + in_flight(&pair[0]);
            if gap > most_apart {
                coalesced_behind_a_job_in_flight += 1;
            }
            assert!(
                gap >= least_apart && gap <= allowed,
                "{user}: syncs {gap} apart (at most {allowed}): {timeline:?}"
            );
        }
        let last = jobs.last().expect("jobs");
        assert!(
            stopping - last.created_at <= most_apart + in_flight(last),
            "{user}: last sync {timeline:?}, stopped {stopping}"
        );
    }
    eprintln!(
        "scale-out: {coalesced_behind_a_job_in_flight} polls were coalesced behind a job still in flight"
    );
}

/// When a job was queued, started and finished, for failure messages.
fn timings(j: &SyncJob) -> String {
    let t = |at: Option<DateTime<Utc>>| {
        at.map_or("-".to_owned(), |t| t.format("%H:%M:%S%.3f").to_string())
    };
    format!(
        "queued {} started {} finished {} {}",
        t(Some(j.created_at)),
        t(j.started_at),
        t(j.finished_at),
        j.status.as_str()
    )
}

/// Each user connected as a completed login leaves it: tokens the simulator
/// issued, sealed under `key`, no high-water mark yet (the first sync backfills).
async fn connect_all(
    store: &dyn Store,
    sim: &cgm_hub::simulator::dexcom::DexcomSimulator,
    key: &[u8; 32],
    users: &[String],
) {
    let cipher = cgm_hub::connections::cipher::TokenCipher::new(key, &[]);
    let now = Utc::now();
    for name in users {
        let id = user(name);
        let (access, refresh) = sim.provision_tokens(name);
        let tokens = TokenSet {
            access_token: Secret::new(access),
            refresh_token: Secret::new(refresh),
        };
        store
            .put_connection(Connection {
                status: ConnectionStatus::Connected,
                tokens: Some(cipher.seal(&id, Provider::Dexcom, &tokens).unwrap()),
                access_expires_at: Some(now + chrono::Duration::hours(24)),
                access_refresh_at: Some(now + chrono::Duration::hours(23)),
                connected_at: Some(now),
                ..Connection::disconnected(id, Provider::Dexcom, now)
            })
            .await
            .unwrap();
    }
}

/// Declares the instances' topology and consumes from it in the background;
/// each event once, deduplicated by id.
async fn consume(rabbit: &RabbitSettings) -> Arc<Mutex<HashMap<String, Value>>> {
    // The topology as the instances declare it, by the bus's own code.
    RabbitBus::new(rabbit.clone())
        .connect()
        .await
        .expect("RabbitMQ at 127.0.0.1:5672 (start it: rabbitmq-server -detached)");
    let (connection, channel) = broker_channel().await.expect("RabbitMQ channel");
    let mut consumer = channel
        .basic_consume(
            rabbit.queue.as_str().into(),
            "scale-out-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(HashMap::new()));
    let sink = events.clone();
    tokio::spawn(async move {
        let _keep = connection;
        while let Some(Ok(delivery)) = consumer.next().await {
            let event: Value = serde_json::from_slice(&delivery.data).expect("JSON event");
            let id = event["id"].as_str().expect("event id").to_owned();
            sink.lock().unwrap().insert(id, event);
        }
    });
    events
}

/// The events once no new one has arrived for two seconds.
async fn settle(events: &Mutex<HashMap<String, Value>>) -> Vec<Value> {
    const QUIET: Duration = Duration::from_secs(2);
    let mut last = (usize::MAX, Instant::now());
    eventually_ok(
        "events stop arriving (none new for 2 s)",
        Duration::from_secs(60),
        || {
            let events = events.lock().unwrap();
            if events.len() != last.0 {
                last = (events.len(), Instant::now());
            }
            std::future::ready(if last.1.elapsed() >= QUIET {
                Ok(events.values().cloned().collect())
            } else {
                Err(format!(
                    "{} events, the last one {:?} ago",
                    events.len(),
                    last.1.elapsed()
                ))
            })
        },
    )
    .await
}

async fn delete_topology(exchange: &str, queue: &str) -> Result<(), lapin::Error> {
    let (_connection, channel) = broker_channel().await?;
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await
}

/// Deadlocks PostgreSQL has detected in this database so far (the instances'
/// connections report theirs when they close).
async fn deadlocks(schema: &PgSchema) -> i64 {
    let mut conn = schema.connection().await;
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Every (user, time) row in the shared database.
async fn stored_readings(schema: &PgSchema) -> Vec<(String, DateTime<Utc>)> {
    let mut conn = schema.connection().await;
    sqlx::query("SELECT user_id, ts FROM readings")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

//! The sync engine end to end, against the Dexcom simulator: scheduled polls,
//! manual sync jobs with idempotency keys, concurrent syncs of one user, and two
//! engines sharing one store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cgm_hub::events::MemoryBus;
use cgm_hub::records::connections::Provider;
use cgm_hub::records::jobs::{JobStatus, SyncJob, Trigger};
use cgm_hub::simulator::dexcom::{Faults, SimConfig};
use cgm_hub::sync::scheduler::Scheduler;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::helpers::*;

/// When a job ran: first start to finish.
type Span = (DateTime<Utc>, DateTime<Utc>);

fn jobs_of(body: &Value) -> Vec<Value> {
    body["data"]["jobs"].as_array().cloned().unwrap_or_default()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("a time").parse().expect("RFC 3339")
}

/// Asserts that no two runs of one user's jobs overlapped in time.
fn assert_one_at_a_time(jobs: &[Span]) {
    let mut spans = jobs.to_vec();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two syncs of one user overlapped: {pair:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_polls_sync_every_connected_user_each_interval() {
    let sim = simulator().await;
    let app = dexcom_app(
        &sim,
        &[
            ("POLL_INTERVAL_SECONDS", "2"),
            ("DEXCOM_BACKFILL_DAYS", "1"),
        ],
    )
    .await;
    for u in ["sched-a", "sched-b"] {
        connect_over_http(&app.base, u).await;
    }
    for u in ["sched-a", "sched-b"] {
        // The backfill, then at least two scheduled polls (phase within the
        // first interval, then every 2 s plus up to 10%).
        let body = wait_for(
            &app.client,
            &app.url(&format!("/api/users/{u}/jobs?limit=50")),
            Duration::from_secs(15),
            |b| {
                jobs_of(b)
                    .iter()
                    .filter(|j| j["trigger"] == "scheduled" && j["status"] == "succeeded")
                    .count()
                    >= 2
            },
        )
        .await;
        let jobs = jobs_of(&body);
        let backfill = jobs
            .iter()
            .find(|j| j["trigger"] == "backfill")
            .expect("the connection queued a backfill");
        assert_eq!(backfill["status"], "succeeded", "{backfill}");
        assert!(
            backfill["counts"]["inserted"].as_u64().unwrap() > 200,
            "{backfill}"
        );
        let scheduled: Vec<_> = jobs
            .iter()
            .filter(|j| j["trigger"] == "scheduled" && j["status"] == "succeeded")
            .collect();
        for j in &scheduled {
            // Incremental: from the high-water mark minus the 3 h overlap, not
            // the whole backfill day again.
            let range = &j["range"];
            let span = time(&range["end"]) - time(&range["start"]);
            assert!(
                span <= chrono::Duration::hours(3) + chrono::Duration::minutes(10),
                "{j}"
            );
            // The overlap re-read is deduplicated: the 3 h of readings come
            // back as duplicates; at most the one reading the simulator made
            // visible since the last poll (a 5-minute boundary) is new. (How
            // many the 3 h hold depends on the simulated sensor: a warm-up or
            // a signal loss in them leaves fewer than 36, so no fixed count.)
            let count = |k: &str| j["counts"][k].as_u64().unwrap();
            assert!(count("inserted") <= 1, "{j}");
            assert!(count("fetched") >= 2, "{j}");
            assert_eq!(
                count("duplicates"),
                count("fetched") - count("inserted"),
                "{j}"
            );
        }
        // Polls are about one interval apart (coalescing forbids closer than half).
        let mut created: Vec<_> = scheduled.iter().map(|j| time(&j["created_at"])).collect();
        created.sort();
        for pair in created.windows(2) {
            assert!(
                pair[1] - pair[0] >= chrono::Duration::milliseconds(1000),
                "{created:?}"
            );
        }
        let connection = get_json(
            &app.client,
            &app.url(&format!("/api/users/{u}/connections")),
        )
        .await;
        assert!(connection["data"]["connections"][0]["last_sync_at"].is_string());
    }
    let metrics = scrape(&app.client, &app.base).await;
    for name in [
        "sync_runs_total{trigger=\"scheduled\",outcome=\"succeeded\"}",
        "sync_runs_total{trigger=\"backfill\",outcome=\"succeeded\"}",
        "sync_duration_seconds_bucket{",
        "sync_jobs_queued_total{trigger=\"scheduled\"}",
        "reading_data_lag_seconds_bucket{source=\"dexcom\"",
        "sync_backlog_jobs ",
        "sync_scheduled_users ",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_syncs_are_idempotent_and_validated() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &[("DEXCOM_BACKFILL_DAYS", "0")]).await;
    connect_over_http(&app.base, "manual-1").await;
    let post = |path: String, key: Option<&'static str>| {
        let mut request = app.client.post(app.url(&path));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };
    let start = (Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    let path = format!("/api/bg/manual-1/sync?startDate={start}");
    let first = post(path.clone(), Some("key-1")).await.unwrap();
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let id = first["data"]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/jobs/{id}"));
    assert_eq!(first["data"]["trigger"], "manual");
    assert!(["queued", "running", "succeeded"].contains(&first["data"]["status"].as_str().unwrap()));

    // The same key and request: the same job.
    let again = post(path.clone(), Some("key-1")).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["job_id"], id.as_str());
    // The same key with another request: refused.
    let other = post("/api/bg/manual-1/sync".into(), Some("key-1"))
        .await
        .unwrap();
    let error = expect_error(other, 422, "VALIDATION_ERROR").await;
    assert_eq!(error["details"]["errors"][0]["pointer"], "/Idempotency-Key");
    // Another key: another job.
    let second: Value = post(path.clone(), Some("key-2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(second["data"]["job_id"], id.as_str());

    // The job runs to the end and reports what it did.
    let done = wait_for(
        &app.client,
        &app.url(&location),
        Duration::from_secs(10),
        |b| b["data"]["status"] == "succeeded",
    )
    .await;
    let job = &done["data"];
    assert!(job["counts"]["fetched"].as_u64().unwrap() > 400, "{job}");
    assert_eq!(
        job["counts"]["fetched"],
        job["counts"]["inserted"].as_u64().unwrap()
            + job["counts"]["duplicates"].as_u64().unwrap()
            + job["counts"]["rejected"].as_u64().unwrap()
            + job["counts"]["updated"].as_u64().unwrap(),
        "{job}"
    );
    assert!(
        job["finished_at"].is_string() && job["duration_ms"].is_number(),
        "{job}"
    );
    assert_eq!(job["errors"], serde_json::json!([]));

    // Bad requests.
    for bad in [
        "/api/bg/manual-1/sync?endDate=2026-01-01",
        "/api/bg/manual-1/sync?startDate=yesterday",
        "/api/bg/manual-1/sync?startDate=2026-01-02&endDate=2026-01-01",
        "/api/bg/manual-1/sync?since=2026-01-01",
    ] {
        expect_error(
            post(bad.into(), None).await.unwrap(),
            400,
            "VALIDATION_ERROR",
        )
        .await;
    }
    let long_key = Box::leak("k".repeat(256).into_boxed_str());
    expect_error(
        post(path.clone(), Some(long_key)).await.unwrap(),
        400,
        "VALIDATION_ERROR",
    )
    .await;
    expect_error(
        post("/api/bg/never-connected/sync".into(), None)
            .await
            .unwrap(),
        409,
        "CONFLICT",
    )
    .await;
    expect_error(
        app.get("/api/jobs/not-a-uuid").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    expect_error(
        app.get(&format!("/api/jobs/{}", uuid::Uuid::new_v4()))
            .await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_manual_syncs_of_one_user_queue_and_never_overlap() {
    let sim = simulator().await;
    sim.sim.set_faults(Faults {
        slow_ms: 100,
        ..Faults::default()
    });
    let app = dexcom_app(
        &sim,
        &[("DEXCOM_BACKFILL_DAYS", "0"), ("SYNC_CONCURRENCY", "4")],
    )
    .await;
    connect_over_http(&app.base, "busy").await;
    let requests = (0..5).map(|i| {
        let url = app.url(&format!(
            "/api/bg/busy/sync?startDate={}",
            (Utc::now() - chrono::Duration::hours(6 + i)).format("%Y-%m-%dT%H:%M:%SZ")
        ));
        let client = app.client.clone();
        async move { client.post(url).send().await.unwrap() }
    });
    let mut ids = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["data"]["job_id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "five requests, five jobs");
    let mut spans = Vec::new();
    for id in &ids {
        let done = wait_for(
            &app.client,
            &app.url(&format!("/api/jobs/{id}")),
            Duration::from_secs(20),
            |b| b["data"]["status"] == "succeeded",
        )
        .await;
        spans.push((
            time(&done["data"]["started_at"]),
            time(&done["data"]["finished_at"]),
        ));
    }
    assert_one_at_a_time(&spans);
}

/// Two engines (as two instances would run) with their own schedulers on one
/// store: every user is synced, by both engines between them, never by two at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_store_never_sync_one_user_at_once() {
    let sim = simulator_with(SimConfig::default()).await;
    sim.sim.set_faults(Faults {
        slow_ms: 30,
        ..Faults::default()
    });
    let shared = sqlite_store().await;
    let users = ["two-a", "two-b", "two-c", "two-d"];
    let mut events = Vec::new();
    let mut engines = Vec::new();
    let mut finished = Vec::new();
    for _ in 0..2 {
        let bus = Arc::new(MemoryBus::default());
        events.push(bus.subscribe());
        let service = dexcom_engine_stack(shared.store.clone(), &sim, bus, Duration::from_secs(1));
        finished.push(service.engine().subscribe());
        engines.push(service);
    }
    for u in users {
        connect(&engines[0], u).await;
    }
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    for service in &engines {
        tokio::spawn(Scheduler::new(service.engine().clone()).run(stopped.clone()));
    }

    // Either instance's relay may publish any event; a consumer of both sees
    // each event id at least once and deduplicates by it.
    let mut seen = std::collections::HashSet::new();
    let mut completed = 0;
    let mut connected = 0;
    let mut per_engine = vec![0; finished.len()];
    // Five scheduled rounds per user: enough that two instances both polling
    // (twice the rounds) would exceed the bound checked below.
    const ROUNDS: usize = 5;
    eventually_ok(
        "both engines sync every user on schedule five times",
        Duration::from_secs(60),
        || {
            for rx in &mut events {
                while let Ok(message) = rx.try_recv() {
                    if !seen.insert(message.id) {
                        continue;
                    }
                    let json = message.json();
                    assert_eq!(json["schema_version"], 1);
                    assert_eq!(json["id"], message.id.to_string());
                    match message.routing_key.as_str() {
                        "sync.completed" => {
                            completed += 1;
                            assert_eq!(json["type"], "sync.completed");
                            assert!(users.contains(&json["data"]["user_id"].as_str().unwrap()));
                            assert!(json["data"]["job_id"].is_string(), "{json}");
                            assert!(json["data"]["counts"]["fetched"].is_u64(), "{json}");
                        }
                        "connection.connected" => {
                            assert_eq!(json["data"]["status"], "connected");
                            connected += 1;
                        }
                        _ => {}
                    }
                }
            }
            for (n, rx) in per_engine.iter_mut().zip(&mut finished) {
                *n += std::iter::from_fn(|| rx.try_recv().ok()).count();
            }
            let progress = format!(
                "{connected} connected, {completed} completed, runs per engine {per_engine:?}"
            );
            let events_done =
                connected == users.len() && completed > 0 && per_engine.iter().all(|n| *n > 0);
            let store = shared.store.clone();
            async move {
                if !events_done {
                    return Err(progress);
                }
                for u in users {
                    let scheduled = scheduled_successes(&store, u).await;
                    if scheduled < ROUNDS {
                        return Err(format!("{progress}; {u}: {scheduled} scheduled syncs"));
                    }
                }
                Ok(())
            }
        },
    )
    .await;
    assert_eq!(connected, users.len(), "one connection.connected per user");
    assert!(completed > 0, "sync.completed events were published");
    assert!(
        per_engine.iter().all(|n| *n > 0),
        "both engines ran syncs: {per_engine:?}"
    );
    let mut spans: HashMap<&str, Vec<Span>> = HashMap::new();
    for u in users {
        let jobs: Vec<SyncJob> = shared.store.list_jobs(&user(u), 100).await.unwrap();
        let done: Vec<_> = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Succeeded)
            .collect();
        let scheduled = done
            .iter()
            .filter(|j| j.trigger == Trigger::Scheduled)
            .count();
        // At a 1 s interval: one poll per interval between the two, not two (a
        // round at the start, and one of slack for the scheduler's jitter).
        let most = started.elapsed().as_secs() as usize + 2;
        assert!(
            (ROUNDS..=most).contains(&scheduled),
            "{u}: {scheduled} scheduled syncs in {:?}",
            started.elapsed()
        );
        assert!(jobs.iter().all(|j| j.errors.is_empty()), "{jobs:?}");
        spans.entry(u).or_default().extend(
            done.iter()
                .map(|j| (j.started_at.unwrap(), j.finished_at.unwrap())),
        );
        let connection = shared
            .store
            .get_connection(&user(u), Provider::Dexcom)
            .await
            .unwrap()
            .unwrap();
        assert!(
            connection.sync_cursor.is_some(),
            "{u} has a high-water mark"
        );
    }
    for (u, spans) in &spans {
        assert!(!spans.is_empty(), "{u} was synced");
        assert_one_at_a_time(spans);
    }
}

/// `user_id`'s scheduled syncs that succeeded so far.
async fn scheduled_successes(store: &Arc<dyn cgm_hub::store::Store>, user_id: &str) -> usize {
    let jobs: Vec<SyncJob> = store.list_jobs(&user(user_id), 100).await.unwrap();
    jobs.iter()
        .filter(|j| j.status == JobStatus::Succeeded && j.trigger == Trigger::Scheduled)
        .count()
}

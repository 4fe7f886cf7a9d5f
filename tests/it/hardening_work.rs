//! Unbounded per-user work (docs/security.md): identical queued sync requests coalesce
//! into one job, a user's queue is capped, `/oauth/refresh` in a loop makes one
//! token call a minute, each user has a share of the Dexcom call budget,
//! and reading writes have a per-user hourly quota. Black-box over HTTP.

use std::time::Duration;

use cgm_hub::simulator::dexcom::{Faults, RunningSimulator};
use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

/// No scheduled poll gets in the way of what a test counts.
const QUIET: [(&str, &str); 2] = [
    ("POLL_INTERVAL_SECONDS", "86400"),
    ("DEXCOM_BACKFILL_DAYS", "0"),
];

fn day(days_ago: i64) -> String {
    (Utc::now() - chrono::Duration::days(days_ago))
        .format("%Y-%m-%d")
        .to_string()
}

/// A connected user with a slow sync running (Dexcom answers each call after
/// `slow_ms`), so that whatever is requested next for them stays queued behind it.
async fn busy_user(sim: &RunningSimulator, app: &TestApp, user: &str) {
    connect_over_http(&app.base, user).await;
    sim.sim.set_faults(Faults {
        slow_ms: 4000,
        ..Faults::default()
    });
    let blocker = app
        .client
        .post(app.url(&format!("/api/bg/{user}/sync?startDate={}", day(2))))
        .send()
        .await
        .unwrap();
    assert_eq!(blocker.status(), 202);
    let blocker: Value = blocker.json().await.unwrap();
    let id = blocker["data"]["job_id"].as_str().unwrap();
    wait_for(
        &app.client,
        &app.url(&format!("/api/jobs/{id}")),
        Duration::from_secs(10),
        |b| b["data"]["status"] == "running",
    )
    .await;
}

async fn sync(app: &TestApp, user: &str, query: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/bg/{user}/sync{query}")))
        .send()
        .await
        .unwrap()
}

async fn job_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["status"], "queued", "{body}");
    body["data"]["job_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_identical_manual_syncs_coalesce_into_one_queued_job() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &QUIET).await;
    busy_user(&sim, &app, "coalesce").await;
    let window = format!("?startDate={}&endDate={}", day(5), day(4));
    let first = job_id(sync(&app, "coalesce", &window).await).await;
    let again = sync(&app, "coalesce", &window).await;
    assert!(
        !again.headers().contains_key("idempotent-replayed"),
        "not an idempotency replay"
    );
    assert_eq!(job_id(again).await, first, "the same request, the same job");
    // Incremental syncs are one request too; another window is another job.
    let incremental = job_id(sync(&app, "coalesce", "").await).await;
    assert_eq!(job_id(sync(&app, "coalesce", "").await).await, incremental);
    let other = format!("?startDate={}&endDate={}", day(6), day(5));
    let other = job_id(sync(&app, "coalesce", &other).await).await;
    assert_ne!(other, first);
    assert_ne!(incremental, first);

    let listed = get_json(&app.client, &app.url("/api/users/coalesce/jobs")).await;
    let queued = listed["data"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "queued")
        .count();
    assert_eq!(queued, 3, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_concurrent_identical_syncs_get_one_job() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &QUIET).await;
    busy_user(&sim, &app, "stampede").await;
    let window = format!("?startDate={}&endDate={}", day(5), day(4));
    let requests = (0..8).map(|_| sync(&app, "stampede", &window));
    let mut ids = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        ids.push(job_id(response).await);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "eight identical requests, one job: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_a_full_sync_queue_answers_429() {
    let sim = simulator().await;
    let mut vars = QUIET.to_vec();
    vars.push(("SYNC_MAX_QUEUED_JOBS_PER_USER", "2"));
    let app = dexcom_app(&sim, &vars).await;
    busy_user(&sim, &app, "greedy").await;
    for days_ago in [10, 9] {
        let window = format!("?startDate={}&endDate={}", day(days_ago), day(days_ago - 1));
        job_id(sync(&app, "greedy", &window).await).await;
    }
    let window = format!("?startDate={}&endDate={}", day(8), day(7));
    let refused = sync(&app, "greedy", &window).await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let error = expect_error(refused, 429, "RATE_LIMIT_EXCEEDED").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("SYNC_MAX_QUEUED_JOBS_PER_USER"),
        "{error}"
    );
    // A request already queued is still answered with its job.
    let queued = format!("?startDate={}&endDate={}", day(10), day(9));
    job_id(sync(&app, "greedy", &queued).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_refresh_in_a_loop_makes_one_token_call_a_minute() {
    let sim = simulator().await;
    let app = dexcom_app(&sim, &QUIET).await;
    connect_over_http(&app.base, "fresh").await;
    let before = sim.sim.stats().token_refresh;
    let refresh = || async {
        let response = app
            .post_json("/oauth/refresh", &json!({ "user_id": "fresh" }))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["status"], "connected", "{body}");
        body["data"].clone()
    };
    // The contract's refresh happens now: one token call.
    let first = refresh().await;
    assert_eq!(first["refreshed"], true, "{first}");
    assert_eq!(sim.sim.stats().token_refresh, before + 1);
    // Moments later, the same token answers, without a call.
    for _ in 0..5 {
        let again = refresh().await;
        assert_eq!(again["refreshed"], false, "{again}");
        assert_eq!(
            again["access_token_expires_at"], first["access_token_expires_at"],
            "the token just obtained"
        );
    }
    assert_eq!(
        sim.sim.stats().token_refresh,
        before + 1,
        "one token call for six requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_a_user_over_their_dexcom_share_is_deferred_while_another_syncs() {
    let sim = simulator().await;
    // A one-day backfill is 2 calls (dataRange, one egvs window); so is a sync.
    let app = dexcom_app(
        &sim,
        &[
            ("POLL_INTERVAL_SECONDS", "86400"),
            ("DEXCOM_BACKFILL_DAYS", "1"),
            ("DEXCOM_CALLS_PER_USER_PER_HOUR", "3"),
        ],
    )
    .await;
    let backfilled = |user: &'static str| {
        let app = &app;
        async move {
            wait_for(
                &app.client,
                &app.url(&format!("/api/users/{user}/jobs")),
                Duration::from_secs(15),
                |b| {
                    b["data"]["jobs"].as_array().is_some_and(|jobs| {
                        jobs.iter()
                            .any(|j| j["trigger"] == "backfill" && j["status"] == "succeeded")
                    })
                },
            )
            .await
        }
    };
    connect_over_http(&app.base, "spender").await;
    backfilled("spender").await;
    let id = job_id(sync(&app, "spender", "").await).await;
    let deferred = wait_for(
        &app.client,
        &app.url(&format!("/api/jobs/{id}")),
        Duration::from_secs(15),
        |b| {
            b["data"]["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        },
    )
    .await;
    assert_eq!(
        deferred["data"]["status"], "queued",
        "retried later: {deferred}"
    );
    assert!(
        deferred["data"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("DEXCOM_CALLS_PER_USER_PER_HOUR"),
        "{deferred}"
    );
    // Another user's share is untouched: their sync runs.
    connect_over_http(&app.base, "neighbour").await;
    let neighbour = backfilled("neighbour").await;
    let job = neighbour["data"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["trigger"] == "backfill")
        .unwrap()
        .clone();
    assert!(job["counts"]["fetched"].as_u64().unwrap() > 0, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_work_the_write_quota_refuses_a_crossing_batch_whole() {
    let app = TestApp::spawn_with(&[("WRITE_QUOTA_READINGS_PER_HOUR", "5")]).await;
    let t0 = Utc::now() - chrono::Duration::hours(2);
    let batch = |from: i64, n: i64| {
        json!({ "readings": (from..from + n)
            .map(|i| reading_json(t0 + chrono::Duration::minutes(5 * i), 100 + i as u16))
            .collect::<Vec<_>>() })
    };
    let first = app.post_json("/api/bg/writer/readings", &batch(0, 3)).await;
    assert_eq!(first.status(), 201);
    let crossing = app.post_json("/api/bg/writer/readings", &batch(3, 3)).await;
    let retry_after: u64 = crossing.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let error = expect_error(crossing, 429, "RATE_LIMIT_EXCEEDED").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("WRITE_QUOTA_READINGS_PER_HOUR"),
        "{error}"
    );
    let stored = all_readings(
        &app.client,
        &app.url("/api/bg/writer?startDate=2000-01-01&limit=1000"),
    )
    .await;
    assert_eq!(stored.len(), 3, "nothing of the refused batch is stored");
    // What is left of the quota still takes a batch that fits; another user
    // has a quota of their own.
    let fits = app.post_json("/api/bg/writer/readings", &batch(3, 2)).await;
    assert_eq!(fits.status(), 201);
    let other = app.post_json("/api/bg/other/readings", &batch(0, 5)).await;
    assert_eq!(other.status(), 201);
}

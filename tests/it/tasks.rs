//! The general task runner end to end: kinds registered by the test run on
//! real stores under several runners, exactly once, resume after a runner
//! dies, retry with backoff, and report their status over HTTP with the
//! access rules of sync jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::records::roles::Role;
use cgm_hub::store::{Store, TaskStore};
use cgm_hub::tasks::{
    LeaseLost, NewTask, RunContext, RunnerSettings, StoreQueue, Task, TaskEnd, TaskHandler, TaskId,
    TaskRunner, TaskStatus,
};
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::*;

/// Runs of each task, and which runner ran them.
#[derive(Default)]
struct Ledger {
    runs: Mutex<HashMap<TaskId, Vec<String>>>,
}

impl Ledger {
    fn note(&self, task: &Task, run: &RunContext) {
        self.runs
            .lock()
            .unwrap()
            .entry(task.id)
            .or_default()
            .push(run.owner.clone());
    }

    fn runs(&self, id: TaskId) -> Vec<String> {
        self.runs
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

/// A kind whose runs take a moment, succeed on attempt `succeed_on` (failing
/// with a passing error before), or hang on their first attempt.
struct TestKind {
    kind: &'static str,
    ledger: Arc<Ledger>,
    succeed_on: u32,
    hang_first: bool,
    max_attempts: u32,
}

impl TestKind {
    fn new(kind: &'static str, ledger: &Arc<Ledger>) -> Self {
        Self {
            kind,
            ledger: ledger.clone(),
            succeed_on: 1,
            hang_first: false,
            max_attempts: 5,
        }
    }
}

#[async_trait]
impl TaskHandler for TestKind {
    fn kind(&self) -> &str {
        self.kind
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    fn retry_delay(&self, _attempt: u32) -> Duration {
        Duration::from_millis(50)
    }

    async fn run(&self, task: &Task, run: &RunContext) -> Result<TaskEnd, LeaseLost> {
        self.ledger.note(task, run);
        if self.hang_first && task.attempts == 1 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(if task.attempts >= self.succeed_on {
            TaskEnd::Succeeded
        } else {
            TaskEnd::Retry {
                not_before: Utc::now(),
                error: Some(format!("flaky run {}", task.attempts)),
            }
        })
    }
}

fn runner(store: &Arc<dyn Store>, name: &str, lease: Duration) -> Arc<TaskRunner<StoreQueue>> {
    let store: Arc<dyn TaskStore> = store.clone();
    TaskRunner::new(
        StoreQueue::new(store),
        RunnerSettings {
            workers: 3,
            lease,
            idle_poll: Duration::from_millis(50),
            backlog_sample: Duration::from_millis(200),
        },
        name,
    )
}

async fn status_of(store: &Arc<dyn Store>, id: TaskId) -> Task {
    store.get_task(id).await.unwrap().expect("the task exists")
}

async fn runs_once_across_two_runners(store: Arc<dyn Store>) {
    let ledger = Arc::new(Ledger::default());
    let (stop, stopped) = watch::channel(false);
    let runners = [
        runner(&store, "runner-a", Duration::from_secs(10)),
        runner(&store, "runner-b", Duration::from_secs(10)),
    ];
    for r in &runners {
        r.register(Arc::new(TestKind::new("count", &ledger)));
        r.start(stopped.clone());
    }
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut task = NewTask::new("count", json!({"i": i}), Utc::now());
        task.user_id = Some(user("runs"));
        // Submitted through either runner: both claim from the one store.
        ids.push(runners[i % 2].submit(task).await.unwrap().into_task().id);
    }
    for &id in &ids {
        let store = store.clone();
        eventually("every task succeeded", Duration::from_secs(20), move || {
            let store = store.clone();
            async move { status_of(&store, id).await.status == TaskStatus::Succeeded }
        })
        .await;
    }
    let mut by_runner: HashMap<String, usize> = HashMap::new();
    for &id in &ids {
        let runs = ledger.runs(id);
        assert_eq!(runs.len(), 1, "{id} ran once: {runs:?}");
        *by_runner.entry(runs[0].clone()).or_default() += 1;
        let task = status_of(&store, id).await;
        assert_eq!((task.attempts, task.errors.len()), (1, 0));
        assert!(task.started_at.is_some() && task.finished_at.is_some());
    }
    assert_eq!(by_runner.values().sum::<usize>(), 12);
    let _ = stop.send(true);
    for r in &runners {
        r.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_exactly_once_across_two_runners_on_sqlite() {
    let s = sqlite_store().await;
    runs_once_across_two_runners(s.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_exactly_once_across_two_runners_on_postgres() {
    let s = postgres_store().await;
    runs_once_across_two_runners(s.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_resumes_on_another_runner_when_its_runner_dies() {
    let app = TestApp::spawn().await;
    let ledger = Arc::new(Ledger::default());
    let (_stop, stopped) = watch::channel(false);
    let lease = Duration::from_millis(900);
    let doomed = runner(&app.store, "doomed", lease);
    doomed.register(Arc::new(TestKind {
        hang_first: true,
        ..TestKind::new("resumable", &ledger)
    }));
    doomed.start(stopped.clone());
    let id = doomed
        .submit(NewTask::new("resumable", json!({}), Utc::now()))
        .await
        .unwrap()
        .into_task()
        .id;
    let store = app.store.clone();
    eventually(
        "the first runner holds the task",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move { status_of(&store, id).await.lease_owner.as_deref() == Some("doomed") }
        },
    )
    .await;
    // The heartbeat keeps the lease past its first length while the runner lives.
    let held_until = status_of(&app.store, id).await.lease_until.unwrap();
    eventually("the lease is renewed", Duration::from_secs(5), || {
        let store = store.clone();
        async move { status_of(&store, id).await.lease_until.unwrap() > held_until }
    })
    .await;
    let heir = runner(&app.store, "heir", lease);
    heir.register(Arc::new(TestKind::new("resumable", &ledger)));
    heir.start(stopped.clone());
    doomed.kill();
    eventually(
        "the heir resumes and finishes it",
        Duration::from_secs(15),
        || {
            let store = store.clone();
            async move { status_of(&store, id).await.status == TaskStatus::Succeeded }
        },
    )
    .await;
    assert_eq!(ledger.runs(id), ["doomed", "heir"]);
    let task = status_of(&app.store, id).await;
    assert_eq!(task.attempts, 2);
    // Over HTTP (AUTH_DISABLED: the development admin).
    let body = get_json(&app.client, &app.url(&format!("/api/tasks/{id}"))).await;
    assert_eq!(body["data"]["status"], "succeeded");
    assert_eq!(body["data"]["kind"], "resumable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_is_retried_with_backoff_then_succeeds_or_gives_up() {
    let app = TestApp::spawn().await;
    let ledger = Arc::new(Ledger::default());
    let (_stop, stopped) = watch::channel(false);
    let r = runner(&app.store, "retrier", Duration::from_secs(10));
    r.register(Arc::new(TestKind {
        succeed_on: 3,
        ..TestKind::new("flaky", &ledger)
    }));
    r.register(Arc::new(TestKind {
        succeed_on: u32::MAX,
        max_attempts: 2,
        ..TestKind::new("hopeless", &ledger)
    }));
    r.start(stopped);
    let flaky = r
        .submit(NewTask::new("flaky", json!({}), Utc::now()))
        .await
        .unwrap()
        .into_task()
        .id;
    let hopeless = r
        .submit(NewTask::new("hopeless", json!({}), Utc::now()))
        .await
        .unwrap()
        .into_task()
        .id;
    let store = app.store.clone();
    for id in [flaky, hopeless] {
        eventually("both tasks end", Duration::from_secs(15), || {
            let store = store.clone();
            async move { status_of(&store, id).await.status.is_finished() }
        })
        .await;
    }
    let done = status_of(&app.store, flaky).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert_eq!(done.attempts, 3);
    assert_eq!(done.errors, ["flaky run 1", "flaky run 2"]);
    let failed = status_of(&app.store, hopeless).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.attempts, 2);
    assert_eq!(
        failed.errors,
        ["flaky run 1", "flaky run 2 (gave up after 2 attempts)"]
    );
    let body = get_json(&app.client, &app.url(&format!("/api/tasks/{hopeless}"))).await;
    assert_eq!(body["data"]["status"], "failed");
    assert_eq!(
        body["data"]["error"],
        "flaky run 2 (gave up after 2 attempts)"
    );
    assert!(body["data"]["finished_at"].is_string());
    // Metrics: runs by kind and outcome.
    let metrics = scrape(&app.client, &app.base).await;
    assert!(
        metric(&metrics, r#"task_runs_total{kind="flaky",outcome="retry"}"#)
            .is_some_and(|v| v >= 2.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_puts_an_unfinished_task_back_within_the_grace_period() {
    let app = TestApp::spawn().await;
    let ledger = Arc::new(Ledger::default());
    let (stop, stopped) = watch::channel(false);
    let r = runner(&app.store, "stopping", Duration::from_secs(30));
    r.register(Arc::new(TestKind {
        hang_first: true,
        ..TestKind::new("long", &ledger)
    }));
    r.start(stopped);
    let id = r
        .submit(NewTask::new("long", json!({}), Utc::now()))
        .await
        .unwrap()
        .into_task()
        .id;
    let store = app.store.clone();
    eventually("the task runs", Duration::from_secs(10), || {
        let store = store.clone();
        async move { status_of(&store, id).await.status == TaskStatus::Running }
    })
    .await;
    let _ = stop.send(true);
    let grace = Duration::from_secs(2);
    let started = std::time::Instant::now();
    r.shutdown(grace).await;
    assert!(
        started.elapsed() <= grace + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // Back in the queue at once, not lost and not failed: no error, no lease.
    let back = status_of(&app.store, id).await;
    assert_eq!(back.status, TaskStatus::Queued);
    assert_eq!((back.attempts, back.errors.len()), (1, 0));
    assert_eq!((back.lease_owner, back.lease_until), (None, None));
    assert!(back.not_before <= Utc::now());
    // The next runner takes it up.
    let (_stop, stopped) = watch::channel(false);
    let next = runner(&app.store, "next", Duration::from_secs(30));
    next.register(Arc::new(TestKind::new("long", &ledger)));
    next.start(stopped);
    eventually(
        "the next runner finishes it",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move { status_of(&store, id).await.status == TaskStatus::Succeeded }
        },
    )
    .await;
    assert_eq!(ledger.runs(id), ["stopping", "next"]);
    // The backlog gauge of the kind is exported.
    let client = app.client.clone();
    let base = app.base.clone();
    eventually("task_backlog is sampled", Duration::from_secs(10), || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let metrics = scrape(&client, &base).await;
            metric(&metrics, r#"task_backlog{kind="long"}"#) == Some(0.0)
        }
    })
    .await;
}

const SECRET: &str = "tasks-test-secret-0123456789abcdef";

fn token(sub: &str, role: Role) -> String {
    mint_hs256(SECRET, sub, &[role], Duration::from_secs(600), None, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_status_over_http_follows_the_access_rules_of_jobs() {
    let app = TestApp::spawn_with(&[("AUTH_DISABLED", "false"), ("AUTH_JWT_SECRET", SECRET)]).await;
    let now = Utc::now();
    let mut own = NewTask::new("insights", json!({"window_days": 30}), now);
    own.user_id = Some(user("pat"));
    let own = app.store.create_task(own).await.unwrap().into_task();
    let system = app
        .store
        .create_task(NewTask::new("aggregate-daily", json!({}), now))
        .await
        .unwrap()
        .into_task();
    let job = cgm_hub::records::jobs::NewJob::new(
        user("pat"),
        cgm_hub::records::connections::Provider::Dexcom,
        cgm_hub::records::jobs::Trigger::Manual,
        None,
        now,
    );
    let job_id = job.id;
    app.store.create_job(job, None).await.unwrap();

    let get = |path: String, bearer: String| {
        let request = app.client.get(app.url(&path)).bearer_auth(bearer);
        async move { request.send().await.unwrap() }
    };
    let pat = token("pat", Role::Patient);
    let response = get(format!("/api/tasks/{}", own.id), pat.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success");
    let data = body["data"].as_object().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "error",
            "finished_at",
            "kind",
            "started_at",
            "status",
            "task_id",
            "user_id"
        ]
    );
    assert_eq!(data["task_id"], own.id.to_string());
    assert_eq!(data["kind"], "insights");
    assert_eq!(data["user_id"], "pat");
    assert_eq!(data["status"], "queued");
    assert!(data["started_at"].is_null() && data["error"].is_null());

    // A sync job answers as a task of kind `sync`.
    let response = get(format!("/api/tasks/{job_id}"), pat.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (
            &body["data"]["kind"],
            &body["data"]["user_id"],
            &body["data"]["status"]
        ),
        (&json!("sync"), &json!("pat"), &json!("queued"))
    );

    // Someone else's task, or a system task for a patient: 403; admins see all,
    // services see system tasks.
    let other = token("other", Role::Patient);
    for (path, bearer, want) in [
        (format!("/api/tasks/{}", own.id), other.clone(), 403),
        (format!("/api/tasks/{job_id}"), other.clone(), 403),
        (
            format!("/api/tasks/{}", own.id),
            token("ml", Role::Service),
            403,
        ),
        (format!("/api/tasks/{}", system.id), pat.clone(), 403),
        (
            format!("/api/tasks/{}", system.id),
            token("ml", Role::Service),
            200,
        ),
        (
            format!("/api/tasks/{}", system.id),
            token("ops", Role::Admin),
            200,
        ),
        (
            format!("/api/tasks/{}", own.id),
            token("ops", Role::Admin),
            200,
        ),
    ] {
        let response = get(path.clone(), bearer).await;
        if want == 403 {
            expect_error(response, 403, "FORBIDDEN").await;
        } else {
            assert_eq!(response.status(), want, "{path}");
        }
    }
    let body: Value = get(
        format!("/api/tasks/{}", system.id),
        token("ops", Role::Admin),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(body["data"]["user_id"].is_null(), "{body}");

    expect_error(
        get(format!("/api/tasks/{}", TaskId::new()), pat.clone()).await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
    let malformed = expect_error(
        get("/api/tasks/not-a-task".into(), pat.clone()).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(malformed.to_string().contains("taskId"), "{malformed}");
    expect_error(
        app.client
            .get(app.url(&format!("/api/tasks/{}", own.id)))
            .send()
            .await
            .unwrap(),
        401,
        "AUTH_ERROR",
    )
    .await;

    // Audited like jobs: the decision on the owner's data, allowed or denied.
    let store = app.store.clone();
    eventually(
        "the reads are on the audit trail",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            async move {
                let trail = store
                    .query_audit(cgm_hub::records::audit::AuditQuery {
                        target_user: Some(user("pat")),
                        from: None,
                        until: None,
                        after_seq: None,
                        limit: 100,
                    })
                    .await
                    .unwrap();
                let reads: Vec<_> = trail
                    .iter()
                    .filter(|r| r.entry.action == "read_tasks")
                    .map(|r| {
                        (
                            r.entry.actor.as_str().to_owned(),
                            r.entry.decision,
                            r.entry.status,
                        )
                    })
                    .collect();
                reads.contains(&("pat".to_owned(), "allowed", 200))
                    && reads.contains(&("other".to_owned(), "denied", 403))
            }
        },
    )
    .await;
}

//! General task cases: every backend keeps a task to one runner at a time
//! (exclusive claims, one running task per concurrency key), hands it on when
//! its lease lapses, returns the same task for the same idempotency key, claims
//! in priority order, and refuses renewals and ends from anyone but the holder.

use cgm_hub::records::tasks::{Enqueued, NewTask, TaskEnd, TaskId, TaskStatus};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

fn kinds(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| (*k).to_owned()).collect()
}

/// A task of `kind` created a moment ago (so it is due at `now`).
fn task(kind: &str, now: DateTime<Utc>) -> NewTask {
    NewTask::new(kind, json!({"n": 1}), now - chrono::Duration::seconds(1))
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub(super) async fn task_claims_are_exclusive_under_concurrency(s: S) {
    let now = Utc::now();
    let mut created = BTreeSet::new();
    for i in 0..6 {
        let mut t = task("exclusive", now);
        t.user_id = Some(user(&format!("tu{i}")));
        created.insert(s.create_task(t).await.unwrap().into_task().id);
    }
    // Twelve claimers at once: every task is claimed once, by one of them.
    let claims = (0..12).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(t) = s
                .claim_task(
                    &kinds(&["exclusive"]),
                    &format!("runner-{i}"),
                    now,
                    now + secs(60),
                )
                .await
                .unwrap()
            {
                assert_eq!(
                    t.lease_owner.as_deref(),
                    Some(format!("runner-{i}").as_str())
                );
                got.push(t.id);
            }
            got
        })
    });
    let mut claimed = Vec::new();
    for c in claims {
        claimed.extend(c.await.unwrap());
    }
    assert_eq!(
        claimed.len(),
        6,
        "each task claimed exactly once: {claimed:?}"
    );
    assert_eq!(claimed.iter().copied().collect::<BTreeSet<_>>(), created);
    for id in created {
        let t = s.get_task(id).await.unwrap().unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Running, 1));
    }
}

pub(super) async fn a_lapsed_task_lease_is_reclaimed(s: S) {
    let now = Utc::now();
    let mut t = task("resume", now);
    t.concurrency_key = Some("resume-key".into());
    let id = s.create_task(t).await.unwrap().into_task().id;
    let ks = kinds(&["resume"]);
    let first = s
        .claim_task(&ks, "dead", now, now + secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, id);
    assert!(
        s.claim_task(&ks, "other", now + secs(10), now + secs(40))
            .await
            .unwrap()
            .is_none(),
        "held while the lease is live"
    );
    // The holder died: once the lease lapsed, another runner resumes it.
    let later = now + secs(31);
    let resumed = s
        .claim_task(&ks, "heir", later, later + secs(30))
        .await
        .unwrap()
        .expect("a lapsed lease is reclaimable");
    assert_eq!(resumed.id, id);
    assert_eq!(resumed.attempts, 2);
    assert_eq!(resumed.lease_owner.as_deref(), Some("heir"));
    assert_eq!(resumed.started_at, first.started_at, "first start kept");
    // The dead holder can neither renew nor finish it any more.
    assert!(!s
        .renew_task_lease(id, "dead", later + secs(60))
        .await
        .unwrap());
    assert!(s
        .finish_task(id, "dead", TaskEnd::Succeeded, later)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .renew_task_lease(id, "heir", later + secs(60))
        .await
        .unwrap());
    let done = s
        .finish_task(id, "heir", TaskEnd::Succeeded, later + secs(1))
        .await
        .unwrap()
        .expect("the holder finishes");
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert_eq!(done.lease_owner, None);
    assert!(
        s.claim_task(&ks, "late", later + secs(120), later + secs(150))
            .await
            .unwrap()
            .is_none(),
        "a finished task is never claimed"
    );
}

pub(super) async fn tasks_are_idempotent_by_key(s: S) {
    let now = Utc::now();
    let mut first = task("idem", now);
    first.idempotency_key = Some("daily-2026-12-01".into());
    first.user_id = Some(user("iu1"));
    let created = s.create_task(first.clone()).await.unwrap();
    let Enqueued::New(created) = created else {
        panic!("first create: {created:?}")
    };
    assert_eq!(created.kind, "idem");
    assert_eq!(created.payload, json!({"n": 1}));
    assert_eq!(created.user_id, Some(user("iu1")));
    assert_eq!((created.status, created.attempts), (TaskStatus::Queued, 0));
    let again = NewTask {
        id: TaskId::new(),
        payload: json!({"n": 2}),
        ..first.clone()
    };
    assert_eq!(
        s.create_task(again).await.unwrap(),
        Enqueued::Existing(created.clone()),
        "the same key: the first task"
    );
    // Concurrent creates with one key: one task.
    let racing = (0..6).map(|_| {
        let s = s.clone();
        let mut t = task("idem", now);
        t.idempotency_key = Some("race".into());
        tokio::spawn(async move { s.create_task(t).await.unwrap() })
    });
    let mut ids = BTreeSet::new();
    let mut new = 0;
    for r in racing {
        let e = r.await.unwrap();
        new += usize::from(matches!(e, Enqueued::New(_)));
        ids.insert(e.into_task().id);
    }
    assert_eq!((ids.len(), new), (1, 1), "one task for one key");
    // Keys are per kind; no key: always a new task.
    let mut other_kind = task("idem-other", now);
    other_kind.idempotency_key = Some("daily-2026-12-01".into());
    assert!(matches!(
        s.create_task(other_kind).await.unwrap(),
        Enqueued::New(_)
    ));
    let a = s.create_task(task("idem", now)).await.unwrap().into_task();
    let b = s.create_task(task("idem", now)).await.unwrap().into_task();
    assert_ne!(a.id, b.id);
}

pub(super) async fn tasks_are_claimed_by_priority_then_age(s: S) {
    let now = Utc::now();
    let make = |priority: i16, age: i64| {
        let mut t = NewTask::new("prio", json!({}), now - secs(age));
        t.priority = priority;
        t
    };
    let low_old = s.create_task(make(5, 50)).await.unwrap().into_task().id;
    let urgent = s.create_task(make(-1, 10)).await.unwrap().into_task().id;
    let normal_new = s.create_task(make(0, 20)).await.unwrap().into_task().id;
    let normal_old = s.create_task(make(0, 30)).await.unwrap().into_task().id;
    let mut later = make(-5, 60);
    later.not_before = now + secs(60);
    let not_due = s.create_task(later).await.unwrap().into_task().id;
    let most_urgent = s.create_task(make(-9, 70)).await.unwrap().into_task().id;
    // Another kind is not claimed by a runner that does not run it.
    let mut other = make(-9, 70);
    other.kind = "not-mine".into();
    s.create_task(other).await.unwrap();
    let mut order = Vec::new();
    while let Some(t) = s
        .claim_task(&kinds(&["prio"]), "r", now, now + secs(60))
        .await
        .unwrap()
    {
        order.push(t.id);
        if order.len() > 10 {
            break;
        }
    }
    assert_eq!(order.len(), 5, "due tasks of the kind: {order:?}");
    assert_eq!(
        order,
        [most_urgent, urgent, normal_old, normal_new, low_old]
    );
    assert!(!order.contains(&not_due));
    let backlog = s
        .task_backlog(&kinds(&["prio", "not-mine", "none"]), now + secs(61))
        .await
        .unwrap();
    assert_eq!(backlog[0].0, "prio");
    assert_eq!(backlog[0].1.due, 1, "the one not due before");
    assert_eq!(
        backlog[0].1.oldest_due.map(|t| t.timestamp_millis()),
        Some((now + secs(60)).timestamp_millis())
    );
    assert_eq!(backlog[1].1.due, 1);
    assert_eq!(backlog[2].1.due, 0);
    assert_eq!(backlog[2].1.oldest_due, None);
}

pub(super) async fn one_running_task_per_concurrency_key(s: S) {
    let now = Utc::now();
    let keyed = |key: &str, age: i64| {
        let mut t = NewTask::new("keyed", json!({}), now - secs(age));
        t.concurrency_key = Some(key.to_owned());
        t
    };
    let a1 = s
        .create_task(keyed("user-a", 30))
        .await
        .unwrap()
        .into_task()
        .id;
    let a2 = s
        .create_task(keyed("user-a", 20))
        .await
        .unwrap()
        .into_task()
        .id;
    let b1 = s
        .create_task(keyed("user-b", 10))
        .await
        .unwrap()
        .into_task()
        .id;
    let ks = kinds(&["keyed"]);
    let claim = |owner: &'static str, at: DateTime<Utc>| {
        let s = s.clone();
        let ks = ks.clone();
        async move {
            s.claim_task(&ks, owner, at, at + secs(30))
                .await
                .unwrap()
                .map(|t| t.id)
        }
    };
    assert_eq!(claim("r1", now).await, Some(a1));
    assert_eq!(claim("r2", now).await, Some(b1), "a2 waits for a1's key");
    assert_eq!(claim("r3", now).await, None);
    // Concurrent claimers cannot take the second task of a busy key.
    let racing: Vec<_> = (0..4)
        .map(|_| tokio::spawn(claim("racer", now + secs(1))))
        .collect();
    for r in racing {
        assert_eq!(r.await.unwrap(), None);
    }
    // a1 retried: its key is free, and a2 (older than a1's retry) runs.
    let retry = TaskEnd::Retry {
        not_before: now + secs(5),
        error: Some("passing".into()),
    };
    let back = s.finish_task(a1, "r1", retry, now).await.unwrap().unwrap();
    assert_eq!(back.status, TaskStatus::Queued);
    assert_eq!(back.errors, ["passing"]);
    assert_eq!(back.finished_at, None);
    assert_eq!(claim("r4", now + secs(1)).await, Some(a2));
    assert_eq!(claim("r5", now + secs(6)).await, None, "a1 due but a2 runs");
    let failed = TaskEnd::Failed {
        error: "final".into(),
    };
    let ended = s
        .finish_task(a2, "r4", failed, now + secs(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.status, ended.errors.clone()),
        (TaskStatus::Failed, vec!["final".to_owned()])
    );
    assert_eq!(claim("r6", now + secs(8)).await, Some(a1));
    // A lapsed holder of a key frees it too.
    assert_eq!(
        claim("r7", now + secs(100)).await,
        Some(a1),
        "a1's lease lapsed"
    );
}

pub(super) async fn task_renewals_and_ends_need_the_lease(s: S) {
    let now = Utc::now();
    let id = s
        .create_task(task("own", now))
        .await
        .unwrap()
        .into_task()
        .id;
    let ks = kinds(&["own"]);
    assert!(
        !s.renew_task_lease(id, "r", now + secs(60)).await.unwrap(),
        "queued: nobody holds it"
    );
    assert!(s
        .finish_task(id, "r", TaskEnd::Succeeded, now)
        .await
        .unwrap()
        .is_none());
    let held = s
        .claim_task(&ks, "r", now, now + secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.lease_until.map(|t| t.timestamp()),
        Some((now + secs(30)).timestamp())
    );
    assert!(!s
        .renew_task_lease(id, "intruder", now + secs(90))
        .await
        .unwrap());
    assert!(s
        .finish_task(id, "intruder", TaskEnd::Succeeded, now)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.get_task(id).await.unwrap().unwrap().status,
        TaskStatus::Running
    );
    assert!(s.renew_task_lease(id, "r", now + secs(90)).await.unwrap());
    // Renewed: still held after the first lease would have lapsed.
    assert!(s
        .claim_task(&ks, "other", now + secs(60), now + secs(120))
        .await
        .unwrap()
        .is_none());
    let put_back = TaskEnd::Retry {
        not_before: now,
        error: None,
    };
    let back = s
        .finish_task(id, "r", put_back, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.status, back.errors.len()), (TaskStatus::Queued, 0));
    assert!(s.get_task(TaskId::new()).await.unwrap().is_none());
}

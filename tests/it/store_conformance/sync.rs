//! Conformance cases for the sync engine's storage: jobs, the per-user sync
//! lease, checkpoints and the high-water mark, and the webhook inbox.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use cgm_hub::records::connections::Provider;
use cgm_hub::records::inbox::{Accepted, DeliveryEnd, DeliveryStatus, NewDelivery};
use cgm_hub::records::jobs::{
    Checkpoint, Created, Idempotency, JobBacklog, JobCounts, JobEnd, JobStatus, NewJob, TimeRange,
    Trigger,
};

use super::{connected, S};
use crate::helpers::user;

fn job(u: &str, trigger: Trigger, at: DateTime<Utc>) -> NewJob {
    NewJob::new(user(u), Provider::Dexcom, trigger, None, at)
}

/// Stores keep times to the millisecond.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("in range")
}

fn keyed(u: &str, key: &str, hash: &str, at: DateTime<Utc>) -> NewJob {
    NewJob {
        idempotency: Some(Idempotency {
            key: key.into(),
            request_hash: hash.into(),
        }),
        ..job(u, Trigger::Manual, at)
    }
}

fn new(created: Created) -> cgm_hub::records::jobs::SyncJob {
    match created {
        Created::New(job) => job,
        other => panic!("expected a new job, got {other:?}"),
    }
}

pub(super) async fn jobs_are_idempotent_and_scheduled_polls_coalesce(s: S) {
    let t0 = Utc::now();
    let first = new(s
        .create_job(keyed("u1", "k1", "h1", t0), None)
        .await
        .unwrap());
    assert_eq!(first.status, JobStatus::Queued);
    assert_eq!(first.trigger, Trigger::Manual);
    match s
        .create_job(keyed("u1", "k1", "h1", t0), None)
        .await
        .unwrap()
    {
        Created::Existing(j) => assert_eq!(j.id, first.id),
        other => panic!("same key and request: {other:?}"),
    }
    match s
        .create_job(keyed("u1", "k1", "other", t0), None)
        .await
        .unwrap()
    {
        Created::KeyReused(j) => assert_eq!(j.id, first.id),
        other => panic!("same key, other request: {other:?}"),
    }
    // Keys are per user.
    new(s
        .create_job(keyed("u2", "k1", "h1", t0), None)
        .await
        .unwrap());

    let window = Some(Duration::minutes(7));
    // u1 has a queued job: a scheduled poll coalesces into it.
    assert_eq!(
        s.create_job(job("u1", Trigger::Scheduled, t0), window)
            .await
            .unwrap(),
        Created::Coalesced
    );
    // u3 has nothing: queued; then a second poll coalesces while it waits.
    let polled = new(s
        .create_job(job("u3", Trigger::Scheduled, t0), window)
        .await
        .unwrap());
    assert_eq!(
        s.create_job(job("u3", Trigger::Scheduled, t0), window)
            .await
            .unwrap(),
        Created::Coalesced
    );
    // Once it ran, a poll within the window (another instance's) still coalesces,
    // and one after it is queued.
    let claimed = s
        .claim_job("a", t0, t0 + Duration::minutes(1))
        .await
        .unwrap();
    let claimed = claimed.expect("a job to claim");
    assert_eq!(
        claimed.trigger,
        Trigger::Manual,
        "manual jobs run before scheduled ones"
    );
    // Drain until u3's scheduled job has run.
    let mut ran = vec![claimed];
    while let Some(j) = s
        .claim_job("a", t0, t0 + Duration::minutes(1))
        .await
        .unwrap()
    {
        ran.push(j);
    }
    for j in &ran {
        assert!(s
            .finish_job(j.id, "a", JobEnd::Succeeded, t0)
            .await
            .unwrap()
            .is_some());
    }
    assert!(ran.iter().any(|j| j.id == polled.id));
    let later = t0 + Duration::minutes(5);
    assert_eq!(
        s.create_job(job("u3", Trigger::Scheduled, later), window)
            .await
            .unwrap(),
        Created::Coalesced
    );
    new(s
        .create_job(
            job("u3", Trigger::Scheduled, t0 + Duration::minutes(8)),
            window,
        )
        .await
        .unwrap());
}

pub(super) async fn one_sync_lease_per_user_and_priority_order(s: S) {
    let t0 = Utc::now();
    let until = t0 + Duration::minutes(1);
    let backfill = new(s
        .create_job(job("u1", Trigger::Backfill, t0), None)
        .await
        .unwrap());
    let scheduled = new(s
        .create_job(job("u2", Trigger::Scheduled, t0), None)
        .await
        .unwrap());
    let manual = new(s
        .create_job(job("u1", Trigger::Manual, t0), None)
        .await
        .unwrap());
    let hook = new(s
        .create_job(job("u3", Trigger::Webhook, t0), None)
        .await
        .unwrap());

    let a = s
        .claim_job("a", t0, until)
        .await
        .unwrap()
        .expect("webhook first");
    assert_eq!(a.id, hook.id);
    assert_eq!((a.status, a.attempts), (JobStatus::Running, 1));
    assert!(a.started_at.is_some());
    let b = s
        .claim_job("b", t0, until)
        .await
        .unwrap()
        .expect("then manual");
    assert_eq!(b.id, manual.id);
    let c = s
        .claim_job("c", t0, until)
        .await
        .unwrap()
        .expect("then scheduled");
    assert_eq!(c.id, scheduled.id);
    // u1's backfill waits: u1 is leased to b.
    assert_eq!(s.claim_job("d", t0, until).await.unwrap(), None);
    // Only the holder can end a run.
    assert!(s
        .finish_job(manual.id, "a", JobEnd::Succeeded, t0)
        .await
        .unwrap()
        .is_none());
    assert!(!s.renew_job_lease(manual.id, "a", until).await.unwrap());
    assert!(s.renew_job_lease(manual.id, "b", until).await.unwrap());
    assert!(s
        .finish_job(manual.id, "b", JobEnd::Succeeded, t0)
        .await
        .unwrap()
        .is_some());
    let d = s
        .claim_job("d", t0, until)
        .await
        .unwrap()
        .expect("u1 is free again");
    assert_eq!(d.id, backfill.id);
    assert_eq!(s.claim_job("e", t0, until).await.unwrap(), None);
    assert_eq!(
        s.get_job(manual.id).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );
}

pub(super) async fn a_lapsed_lease_hands_the_job_on_with_its_checkpoint(s: S) {
    s.put_connection(connected("u1", 1)).await.unwrap();
    let t0 = Utc::now();
    let created = new(s
        .create_job(job("u1", Trigger::Backfill, t0), None)
        .await
        .unwrap());
    let ran = s
        .claim_job("a", t0, t0 + Duration::seconds(10))
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(ran.id, created.id);
    let resolved = TimeRange {
        start: t0 - Duration::days(90),
        end: t0,
    };
    let counts = JobCounts {
        fetched: 8640,
        inserted: 8600,
        updated: 0,
        duplicates: 30,
        rejected: 10,
    };
    let newest = t0 - Duration::days(60);
    let checkpoint = Checkpoint {
        resolved,
        resume_from: t0 - Duration::days(60),
        counts,
        newest: Some(newest),
    };
    assert!(s
        .checkpoint_job(
            created.id,
            "a",
            checkpoint.clone(),
            t0 + Duration::seconds(10)
        )
        .await
        .unwrap());
    let cursor = |c: Option<cgm_hub::records::connections::Connection>| c.unwrap().sync_cursor;
    let stored_cursor = cursor(
        s.get_connection(&user("u1"), Provider::Dexcom)
            .await
            .unwrap(),
    );
    assert_eq!(
        stored_cursor.map(|t| t.timestamp_millis()),
        Some(newest.timestamp_millis())
    );
    // Replacing the connection (a reconnect) keeps the high-water mark.
    s.put_connection(connected("u1", 2)).await.unwrap();
    assert_eq!(
        cursor(
            s.get_connection(&user("u1"), Provider::Dexcom)
                .await
                .unwrap()
        ),
        stored_cursor
    );

    // While the lease holds, nobody else gets the job; once it lapses, b does,
    // with the checkpoint.
    let soon = t0 + Duration::seconds(5);
    assert_eq!(
        s.claim_job("b", soon, soon + Duration::seconds(10))
            .await
            .unwrap(),
        None
    );
    let lapsed = t0 + Duration::seconds(11);
    let resumed = s
        .claim_job("b", lapsed, lapsed + Duration::seconds(10))
        .await
        .unwrap()
        .expect("a lapsed lease is taken over");
    assert_eq!(resumed.id, created.id);
    assert_eq!(resumed.attempts, 2);
    assert_eq!(resumed.counts, counts);
    assert_eq!(
        resumed
            .resolved
            .map(|r| (r.start.timestamp_millis(), r.end.timestamp_millis())),
        Some((
            resolved.start.timestamp_millis(),
            resolved.end.timestamp_millis()
        ))
    );
    assert_eq!(
        resumed.resume_from.map(|t| t.timestamp_millis()),
        Some(checkpoint.resume_from.timestamp_millis())
    );
    assert_eq!(
        resumed.started_at, ran.started_at,
        "started_at is the first start"
    );
    // The old holder can no longer write anything.
    assert!(!s
        .checkpoint_job(
            created.id,
            "a",
            checkpoint.clone(),
            lapsed + Duration::seconds(10)
        )
        .await
        .unwrap());
    assert!(s
        .finish_job(created.id, "a", JobEnd::Succeeded, lapsed)
        .await
        .unwrap()
        .is_none());
    // An older newest reading never lowers the high-water mark.
    let older = Checkpoint {
        newest: Some(newest - Duration::days(1)),
        ..checkpoint
    };
    assert!(s
        .checkpoint_job(created.id, "b", older, lapsed + Duration::seconds(10))
        .await
        .unwrap());
    assert_eq!(
        cursor(
            s.get_connection(&user("u1"), Provider::Dexcom)
                .await
                .unwrap()
        ),
        stored_cursor
    );
    assert!(s
        .finish_job(created.id, "b", JobEnd::Succeeded, lapsed)
        .await
        .unwrap()
        .is_some());
}

pub(super) async fn job_ends_update_the_connection_and_retries_wait(s: S) {
    s.put_connection(connected("u1", 1)).await.unwrap();
    let t0 = Utc::now();
    let until = t0 + Duration::minutes(1);
    let first = new(s
        .create_job(job("u1", Trigger::Manual, t0), None)
        .await
        .unwrap());
    let backlog = s.job_backlog(t0).await.unwrap();
    assert_eq!(backlog.due, 1);
    assert_eq!(
        backlog.oldest_due,
        Some(ms(first.created_at)),
        "due since it was queued"
    );
    s.claim_job("a", t0, until).await.unwrap().expect("claimed");
    assert_eq!(
        s.job_backlog(t0).await.unwrap(),
        JobBacklog::default(),
        "a running job is not backlog"
    );
    let retry_at = t0 + Duration::seconds(30);
    let retry = JobEnd::Retry {
        not_before: retry_at,
        error: Some("Dexcom answered 503".into()),
    };
    assert!(s
        .finish_job(first.id, "a", retry, t0)
        .await
        .unwrap()
        .is_some());
    let waiting = s.get_job(first.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, JobStatus::Queued);
    assert_eq!(waiting.errors, ["Dexcom answered 503"]);
    assert_eq!(
        s.claim_job("a", t0, until).await.unwrap(),
        None,
        "not before its time"
    );
    assert_eq!(s.job_backlog(t0).await.unwrap().due, 0);
    let backlog = s
        .job_backlog(retry_at + Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(backlog.due, 1);
    assert_eq!(
        backlog.oldest_due,
        Some(ms(retry_at)),
        "due since its retry time"
    );
    s.claim_job("a", retry_at, retry_at + Duration::minutes(1))
        .await
        .unwrap()
        .expect("due again");
    let failed = JobEnd::Failed {
        error: "the user has no working Dexcom connection".into(),
    };
    assert!(s
        .finish_job(first.id, "a", failed, retry_at)
        .await
        .unwrap()
        .is_some());
    let ended = s.get_job(first.id).await.unwrap().unwrap();
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(ended.attempts, 2);
    assert_eq!(ended.errors.len(), 2);
    assert!(ended.finished_at.is_some());
    let conn = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        conn.last_error.as_deref(),
        Some("the user has no working Dexcom connection")
    );
    assert_eq!(conn.last_sync_at, None);

    let second = new(s
        .create_job(job("u1", Trigger::Manual, t0 + Duration::seconds(1)), None)
        .await
        .unwrap());
    s.claim_job("a", retry_at, until)
        .await
        .unwrap()
        .expect("claimed");
    assert!(s
        .finish_job(second.id, "a", JobEnd::Succeeded, retry_at)
        .await
        .unwrap()
        .is_some());
    let conn = s
        .get_connection(&user("u1"), Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.last_error, None);
    assert_eq!(
        conn.last_sync_at.map(|t| t.timestamp_millis()),
        Some(retry_at.timestamp_millis())
    );
    let listed: Vec<Uuid> = s
        .list_jobs(&user("u1"), 10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(listed, [second.id, first.id], "newest first");
    assert_eq!(s.list_jobs(&user("u1"), 1).await.unwrap().len(), 1);
    assert!(s.list_jobs(&user("nobody"), 10).await.unwrap().is_empty());
    assert_eq!(s.get_job(Uuid::new_v4()).await.unwrap(), None);
}

pub(super) async fn finished_scheduled_jobs_are_pruned(s: S) {
    let t0 = Utc::now();
    for i in 0..25 {
        let at = t0 + Duration::seconds(i);
        let created = new(s
            .create_job(job("u1", Trigger::Scheduled, at), None)
            .await
            .unwrap());
        s.claim_job("a", at, at + Duration::minutes(1))
            .await
            .unwrap()
            .expect("claimed");
        assert!(s
            .finish_job(created.id, "a", JobEnd::Succeeded, at)
            .await
            .unwrap()
            .is_some());
    }
    let manual = new(s
        .create_job(job("u1", Trigger::Manual, t0), None)
        .await
        .unwrap());
    let jobs = s.list_jobs(&user("u1"), 100).await.unwrap();
    let scheduled = jobs
        .iter()
        .filter(|j| j.trigger == Trigger::Scheduled)
        .count();
    assert_eq!(scheduled, 20, "the newest 20 scheduled jobs are kept");
    assert!(
        jobs.iter().any(|j| j.id == manual.id),
        "other jobs are kept"
    );
}

/// Records one end; true if `owner` held the claim.
async fn finish(s: &S, id: Uuid, owner: &str, end: DeliveryEnd, now: DateTime<Utc>) -> bool {
    s.finish_deliveries(owner, vec![(id, end)], now)
        .await
        .unwrap()
        == 1
}

fn delivery(u: &str, signature: &str, at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        id: Uuid::new_v4(),
        user_id: user(u),
        signature_hash: signature.into(),
        kind: "egvs".into(),
        body: format!("{{\"type\":\"egvs\",\"records\":[],\"sig\":\"{signature}\"}}").into_bytes(),
        received_at: at,
    }
}

pub(super) async fn webhook_inbox_stores_claims_and_finishes(s: S) {
    let t0 = Utc::now();
    let first = delivery("u1", "sig-1", t0);
    let id1 = first.id;
    assert_eq!(
        s.put_delivery(first.clone()).await.unwrap(),
        Accepted::New(id1)
    );
    // The same signed delivery again is a replay of the first.
    let again = NewDelivery {
        id: Uuid::new_v4(),
        ..first.clone()
    };
    assert_eq!(s.put_delivery(again).await.unwrap(), Accepted::Replay(id1));
    let second = delivery("u2", "sig-2", t0 + Duration::milliseconds(5));
    let id2 = second.id;
    s.put_delivery(second).await.unwrap();
    let third = delivery("u1", "sig-3", t0 + Duration::milliseconds(10));
    let id3 = third.id;
    s.put_delivery(third).await.unwrap();
    assert_eq!(s.inbox_backlog().await.unwrap(), 3);

    // Claims happen a moment after the deliveries arrived.
    let now = t0 + Duration::milliseconds(20);
    let until = now + Duration::minutes(1);
    let claimed = s.claim_deliveries("a", now, until, 2).await.unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|d| d.id).collect();
    assert_eq!(ids, [id1, id2], "oldest first, up to the limit");
    assert_eq!(claimed[0].status, DeliveryStatus::Processing);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].body.as_deref(), Some(first.body.as_slice()));
    // Claimed ones are not handed out twice.
    let rest = s.claim_deliveries("b", now, until, 10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), [id3]);
    assert!(
        !finish(
            &s,
            id1,
            "b",
            DeliveryEnd::Done {
                outcome: "{}".into()
            },
            t0
        )
        .await
    );

    // Done clears the body; a retry waits for its time; failed keeps the body.
    assert!(
        finish(
            &s,
            id1,
            "a",
            DeliveryEnd::Done {
                outcome: "{\"inserted\":3}".into()
            },
            t0
        )
        .await
    );
    let done = s.get_delivery(id1).await.unwrap().unwrap();
    assert_eq!(done.status, DeliveryStatus::Done);
    assert_eq!(done.body, None);
    assert_eq!(done.outcome.as_deref(), Some("{\"inserted\":3}"));
    assert!(done.processed_at.is_some());

    let retry_at = t0 + Duration::seconds(2);
    let retry = DeliveryEnd::Retry {
        not_before: retry_at,
        error: "storage unavailable".into(),
    };
    assert!(finish(&s, id2, "a", retry, t0).await);
    assert!(s
        .claim_deliveries("a", now, until, 10)
        .await
        .unwrap()
        .is_empty());
    let again = s.claim_deliveries("a", retry_at, until, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (id2, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("storage unavailable"));
    assert!(
        finish(
            &s,
            id2,
            "a",
            DeliveryEnd::Failed {
                error: "gave up".into()
            },
            retry_at
        )
        .await
    );
    let failed = s.get_delivery(id2).await.unwrap().unwrap();
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert!(
        failed.body.is_some(),
        "a failed delivery keeps its body for a replay"
    );

    // A lapsed claim (the processor died) is taken over.
    let lapsed = until + Duration::seconds(1);
    let taken = s
        .claim_deliveries("c", lapsed, lapsed + Duration::minutes(1), 10)
        .await
        .unwrap();
    assert_eq!(taken.iter().map(|d| d.id).collect::<Vec<_>>(), [id3]);
    assert!(
        finish(
            &s,
            id3,
            "c",
            DeliveryEnd::Ignored {
                reason: "unknown type".into()
            },
            lapsed
        )
        .await
    );
    assert_eq!(
        s.get_delivery(id3).await.unwrap().unwrap().status,
        DeliveryStatus::Ignored
    );
    assert_eq!(s.inbox_backlog().await.unwrap(), 0);
    assert_eq!(s.get_delivery(Uuid::new_v4()).await.unwrap(), None);

    // Ends are recorded together, each only where the claim is held.
    let later = lapsed + Duration::minutes(5);
    let batch: Vec<NewDelivery> = (0..3)
        .map(|i| delivery("u3", &format!("sig-batch-{i}"), later))
        .collect();
    for d in &batch {
        s.put_delivery(d.clone()).await.unwrap();
    }
    let mine = s
        .claim_deliveries("d", later, later + Duration::minutes(1), 2)
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    let not_mine = batch
        .iter()
        .find(|d| mine.iter().all(|m| m.id != d.id))
        .unwrap()
        .id;
    let done = |id| {
        (
            id,
            DeliveryEnd::Done {
                outcome: "{}".into(),
            },
        )
    };
    let ends = vec![done(mine[0].id), done(not_mine), done(mine[1].id)];
    assert_eq!(s.finish_deliveries("d", ends, later).await.unwrap(), 2);
    assert_eq!(
        s.get_delivery(not_mine).await.unwrap().unwrap().status,
        DeliveryStatus::Queued
    );
    assert_eq!(s.inbox_backlog().await.unwrap(), 1);
}

pub(super) async fn a_job_behind_its_users_running_sync_is_due_but_not_lagging(s: S) {
    s.put_connection(connected("u1", 1)).await.unwrap();
    s.put_connection(connected("u2", 1)).await.unwrap();
    let t0 = Utc::now();
    let running = new(s
        .create_job(job("u1", Trigger::Backfill, t0), None)
        .await
        .unwrap());
    s.claim_job("a", t0, t0 + Duration::minutes(1))
        .await
        .unwrap()
        .expect("claimed");
    let behind = new(s
        .create_job(job("u1", Trigger::Manual, t0 + Duration::seconds(1)), None)
        .await
        .unwrap());
    let later = t0 + Duration::seconds(10);
    let backlog = s.job_backlog(later).await.unwrap();
    assert_eq!(backlog.due, 1);
    assert_eq!(backlog.oldest_due, None, "u1's own backfill is running");
    let other = new(s
        .create_job(job("u2", Trigger::Manual, t0 + Duration::seconds(2)), None)
        .await
        .unwrap());
    let backlog = s.job_backlog(later).await.unwrap();
    assert_eq!(backlog.due, 2);
    assert_eq!(backlog.oldest_due, Some(ms(other.created_at)));
    assert!(s
        .finish_job(running.id, "a", JobEnd::Succeeded, later)
        .await
        .unwrap()
        .is_some());
    let backlog = s.job_backlog(later).await.unwrap();
    assert_eq!(
        backlog.oldest_due,
        Some(ms(behind.created_at)),
        "free again"
    );
}

/// `create_requested_job`: the same request while its job waits is that job
/// (also when asked concurrently); a started job is not; a user's queue is capped.
pub(super) async fn requested_jobs_coalesce_while_queued_and_are_capped(s: S) {
    let t0 = Utc::now();
    let window = TimeRange {
        start: ms(t0 - Duration::days(2)),
        end: ms(t0 - Duration::days(1)),
    };
    let hook = |at| NewJob {
        requested: Some(window),
        ..job("u1", Trigger::Webhook, at)
    };
    let manual = new(s
        .create_requested_job(job("u1", Trigger::Manual, t0), 3)
        .await
        .unwrap());
    match s
        .create_requested_job(
            job("u1", Trigger::Manual, t0 + Duration::milliseconds(1)),
            3,
        )
        .await
        .unwrap()
    {
        Created::Queued(same) => assert_eq!(same.id, manual.id),
        other => panic!("expected the queued job, got {other:?}"),
    }

    // Concurrent identical requests: one job.
    let asked = (0..5).map(|i| {
        let s = s.clone();
        async move {
            s.create_requested_job(hook(t0 + Duration::milliseconds(2 + i)), 3)
                .await
                .unwrap()
        }
    });
    let answers = futures_util::future::join_all(asked).await;
    let mut ids: Vec<Uuid> = answers
        .iter()
        .map(|a| match a {
            Created::New(j) | Created::Queued(j) => j.id,
            other => panic!("expected a job, got {other:?}"),
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let webhook = ids[0];
    assert_eq!(
        answers
            .iter()
            .filter(|a| matches!(a, Created::New(_)))
            .count(),
        1
    );

    // A started job is not a request still waiting: the same request queues anew.
    let soon = t0 + Duration::seconds(1);
    let claimed = s
        .claim_job("a", soon, soon + Duration::minutes(1))
        .await
        .unwrap()
        .expect("the webhook job runs first");
    assert_eq!(claimed.id, webhook);
    let again = new(s
        .create_requested_job(hook(t0 + Duration::milliseconds(10)), 3)
        .await
        .unwrap());
    assert_ne!(again.id, webhook);
    // Three queued (the manual job, the new webhook job, and this one): full.
    let other_window = NewJob {
        requested: Some(TimeRange {
            start: window.start - Duration::days(1),
            end: window.start,
        }),
        ..job("u1", Trigger::Manual, t0 + Duration::milliseconds(11))
    };
    new(s
        .create_requested_job(other_window.clone(), 3)
        .await
        .unwrap());
    assert_eq!(
        s.create_requested_job(
            NewJob {
                requested: Some(TimeRange {
                    start: window.start - Duration::days(3),
                    end: window.start,
                }),
                ..job("u1", Trigger::Manual, t0 + Duration::milliseconds(12))
            },
            3
        )
        .await
        .unwrap(),
        Created::QueueFull { max_queued: 3 }
    );
    // A full queue still answers a request already queued with its job.
    s.finish_job(webhook, "a", JobEnd::Succeeded, soon)
        .await
        .unwrap()
        .expect("ended");
    assert!(matches!(
        s.create_requested_job(
            NewJob {
                id: Uuid::new_v4(),
                ..other_window
            },
            3
        )
        .await
        .unwrap(),
        Created::Queued(_)
    ));
    // Another user has a queue of their own.
    new(s
        .create_requested_job(job("u2", Trigger::Manual, t0), 3)
        .await
        .unwrap());
}

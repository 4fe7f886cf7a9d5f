//! What only the PostgreSQL backend promises: partitions made ahead and rows
//! never lost for want of one, migrations once across instances, claims and
//! batches shared safely by several instances on one database.

use std::collections::BTreeSet;
use std::sync::Arc;

use cgm_hub::records::inbox::NewDelivery;
use cgm_hub::records::readings::Outcome;
use cgm_hub::store::postgres::PostgresStore;
use cgm_hub::store::{AuditStore, JobStore, Order, ReadingStore, Scan, Store, StoreError};
use chrono::{Duration, Months, Utc};
use uuid::Uuid;

use crate::helpers::*;

/// The partition a reading's row is in.
async fn partition_of(schema: &PgSchema, user: &str, unix_seconds: i64) -> String {
    let mut conn = schema.connection().await;
    sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM readings WHERE user_id = $1 AND ts = to_timestamp($2)",
    )
    .bind(user)
    .bind(unix_seconds as f64)
    .fetch_one(&mut conn)
    .await
    .expect("the row exists")
}

#[tokio::test]
async fn months_around_now_get_partitions_at_start_and_writes_make_their_own() {
    let schema = PgSchema::new();
    let store = schema.store().await;
    let mut conn = schema.connection().await;
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'readings'::regclass ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let now = Utc::now();
    let name = |t: chrono::DateTime<Utc>| t.format("readings_%Y_%m").to_string();
    for months_ahead in 0..=3 {
        let month = now.checked_add_months(Months::new(months_ahead)).unwrap();
        assert!(partitions.contains(&name(month)), "{partitions:?}");
    }
    assert!(partitions.contains(&"readings_default".to_owned()));

    // A backfill two years back: its month's partition is made before the write.
    let old = (now - Duration::days(730)).timestamp().div_euclid(300) * 300;
    let at = cgm_hub::domain::ReadingTime::from_unix_seconds(old).unwrap();
    store
        .upsert_readings(vec![cgm("u1", at, 100)])
        .await
        .unwrap();
    assert_eq!(
        partition_of(&schema, "u1", old).await,
        name(at.as_datetime())
    );
    // Far outside the horizon, no table is made: the row waits in DEFAULT, and
    // reads still find it.
    let ancient = cgm_hub::domain::ReadingTime::from_unix_seconds(0).unwrap();
    store
        .upsert_readings(vec![cgm("u1", ancient, 90)])
        .await
        .unwrap();
    assert_eq!(partition_of(&schema, "u1", 0).await, "readings_default");
    let found = store
        .scan_readings(Scan {
            user_id: user("u1"),
            from: i64::MIN,
            until: i64::MAX,
            order: Order::Asc,
            limit: 10,
        })
        .await
        .unwrap();
    let times: Vec<i64> = found
        .iter()
        .map(|r| r.reading.timestamp.unix_seconds())
        .collect();
    assert_eq!(times, [0, old]);
}

#[tokio::test]
async fn rows_waiting_in_default_move_to_their_partition_at_the_next_start() {
    let schema = PgSchema::new();
    let store = schema.store().await;
    let at = slot(1);
    store
        .upsert_readings(vec![cgm("u1", at, 120)])
        .await
        .unwrap();
    // As if the month's partition could not be made: detach it, and put its
    // rows where a write would have put them.
    let month = at.as_datetime().format("readings_%Y_%m").to_string();
    let mut conn = schema.connection().await;
    for step in [
        format!("ALTER TABLE readings DETACH PARTITION {month}"),
        format!("INSERT INTO readings_default SELECT * FROM {month}"),
        format!("DROP TABLE {month}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(step))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        partition_of(&schema, "u1", at.unix_seconds()).await,
        "readings_default"
    );
    let before = store.latest_reading(&user("u1")).await.unwrap().unwrap();

    let restarted = schema.store().await;
    assert_eq!(
        partition_of(&schema, "u1", at.unix_seconds()).await,
        month,
        "moved into the month's new partition"
    );
    let after = restarted
        .latest_reading(&user("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, before, "moved as it was");
    let again = restarted
        .upsert_readings(vec![cgm("u1", at, 120)])
        .await
        .unwrap();
    assert_eq!(again[0].version, 1);
    assert!(matches!(again[0].outcome, Outcome::Duplicate(_)));
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let schema = PgSchema::new();
    let (a, b, c) = tokio::join!(schema.store(), schema.store(), schema.store());
    let mut conn = schema.connection().await;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    for store in [a, b, c] {
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn a_database_newer_than_the_build_is_refused() {
    let schema = PgSchema::new();
    drop(schema.store().await);
    let mut conn = schema.connection().await;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (9999)")
        .execute(&mut conn)
        .await
        .unwrap();
    let refused = PostgresStore::connect_in_schema(&schema.url, 2, &schema.name)
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("newer"), "{refused}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 9 (discard) on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:9/test", 2)
        .await
        .err()
        .expect("no server");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[tokio::test]
async fn the_audit_log_refuses_changes() {
    let schema = PgSchema::new();
    let store = schema.store().await;
    let entry = cgm_hub::records::audit::AuditEntry {
        at: Utc::now(),
        actor: user("doc"),
        actor_roles: [cgm_hub::records::roles::Role::Clinician].into(),
        action: "read_readings",
        target_user: user("pat"),
        decision: "allowed",
        status: 200,
        request_id: "r1".into(),
    };
    store.append_audit(Arc::new(vec![entry])).await.unwrap();
    let mut conn = schema.connection().await;
    for change in [
        "UPDATE audit_log SET status = 500",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let refused = sqlx::raw_sql(change).execute(&mut conn).await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
}

/// Two instances, one database: every queued item is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_claims_without_overlap() {
    let schema = PgSchema::new();
    let (a, b) = tokio::join!(schema.store(), schema.store());
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a), Arc::new(b));
    let now = Utc::now();

    // Webhook deliveries.
    let mut ids = BTreeSet::new();
    for i in 0..60 {
        let d = NewDelivery {
            id: Uuid::new_v4(),
            user_id: user(&format!("u{i}")),
            signature_hash: format!("sig-{i}"),
            kind: "egvs".into(),
            body: b"{}".to_vec(),
            received_at: now,
        };
        ids.insert(d.id);
        a.put_delivery(d).await.unwrap();
    }
    let until = now + Duration::minutes(1);
    let claimers = [a.clone(), b.clone(), a.clone(), b.clone()].map(|s| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_deliveries("x", now, until, 7).await.unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|d| d.id));
            }
        })
    });
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    assert_eq!(claimed.len(), ids.len(), "none twice");
    assert_eq!(claimed.into_iter().collect::<BTreeSet<_>>(), ids);

    // Outbox messages (reading events), claimed by two relays.
    let batch = (0..50).map(|i| cgm("u1", slot(i), 100)).collect();
    a.upsert_readings(batch).await.unwrap();
    let relays = [(a.clone(), "relay-a"), (b.clone(), "relay-b")].map(|(s, owner)| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.claim_outbox(owner, now, until, 5).await.unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.iter().map(|m| m.id));
                s.ack_outbox(got.iter().map(|m| m.id).collect())
                    .await
                    .unwrap();
            }
        })
    });
    let mut published = Vec::new();
    for r in relays {
        published.extend(r.await.unwrap());
    }
    assert_eq!(published.len(), 50);
    assert_eq!(published.iter().collect::<BTreeSet<_>>().len(), 50);
    assert_eq!(a.outbox_backlog().await.unwrap(), 0);

    // Sync jobs: one run per job, one holder per user at a time.
    for i in 0..20 {
        let job = cgm_hub::records::jobs::NewJob::new(
            user(&format!("j{i}")),
            cgm_hub::records::connections::Provider::Dexcom,
            cgm_hub::records::jobs::Trigger::Manual,
            None,
            now,
        );
        a.create_job(job, None).await.unwrap();
    }
    let workers = [a.clone(), b.clone(), a, b].map(|s| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = s.claim_job("w", now, until).await.unwrap() {
                mine.push(job.id);
            }
            mine
        })
    });
    let mut ran = Vec::new();
    for w in workers {
        ran.extend(w.await.unwrap());
    }
    assert_eq!(ran.len(), 20);
    assert_eq!(ran.iter().collect::<BTreeSet<_>>().len(), 20);
}

/// Batches from two instances to the same readings settle like batches from one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_writing_the_same_readings_settle_each_once() {
    let schema = PgSchema::new();
    let (a, b) = tokio::join!(schema.store(), schema.store());
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    let writers = (0..6u16).map(|w| {
        let s = stores[usize::from(w % 2)].clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..5i64 {
                // Overlapping keys, in different orders per writer.
                let mut batch: Vec<_> = (0..40)
                    .map(|i| cgm("u1", slot(i + round), 100 + w))
                    .collect();
                if w % 2 == 1 {
                    batch.reverse();
                }
                outcomes.extend(s.upsert_readings(batch).await.unwrap());
            }
            outcomes
        })
    });
    let (mut inserted, mut updated) = (0, 0);
    for w in writers {
        for o in w.await.unwrap() {
            match o.outcome {
                Outcome::Inserted => inserted += 1,
                Outcome::Updated => updated += 1,
                Outcome::Duplicate(_) => {}
            }
        }
    }
    assert_eq!(inserted, 44, "each slot inserted once");
    let rows = stores[0]
        .scan_readings(Scan {
            user_id: user("u1"),
            from: i64::MIN,
            until: i64::MAX,
            order: Order::Asc,
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 44);
    let versions: u32 = rows.iter().map(|r| r.version).sum();
    assert_eq!(
        versions as usize,
        44 + updated,
        "versions count every update"
    );
    // One event per insert or update, none for duplicates.
    assert_eq!(
        stores[1].outbox_backlog().await.unwrap() as usize,
        inserted + updated
    );
}

/// A claim and the holder's checkpoint take a job's rows in one order (lease, then
/// job). Here the holder renews a lapsed lease while another instance claims the
/// job: the holder's transaction holds the lease row and then updates the job row.
/// A claim that had locked the job row first waited for the lease: a deadlock,
/// which PostgreSQL broke by failing one side (the two-instance test saw it).
#[tokio::test]
async fn a_claim_never_deadlocks_with_the_holder_renewing_its_lease() {
    use cgm_hub::records::connections::Provider;
    use cgm_hub::records::jobs::{Created, NewJob, Trigger};
    let schema = PgSchema::new();
    let store = schema.store().await;
    let now = Utc::now();
    let Created::New(job) = store
        .create_job(
            NewJob::new(user("u1"), Provider::Dexcom, Trigger::Manual, None, now),
            None,
        )
        .await
        .unwrap()
    else {
        panic!("queued")
    };
    store
        .claim_job("a", now, now + Duration::milliseconds(500))
        .await
        .unwrap()
        .expect("a holds it");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;

    // The holder, still alive, renews: its transaction holds the lease row...
    let mut holder = schema.connection().await;
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("UPDATE sync_leases SET until = now() + interval '1 minute' WHERE job_id = $1")
        .bind(job.id)
        .execute(&mut holder)
        .await
        .unwrap();
    // ...while b, seeing the lapsed lease, claims.
    let claimer = store.clone();
    let claim = tokio::spawn(async move {
        let now = Utc::now();
        claimer
            .claim_job("b", now, now + Duration::minutes(1))
            .await
    });
    // Only once b waits on a row the holder locked is there contention to test.
    let probe = tokio::sync::Mutex::new(schema.connection().await);
    eventually(
        "b's claim waits on a lock the holder holds",
        std::time::Duration::from_secs(10),
        || async {
            let blocked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            )
            .bind(holder_pid)
            .fetch_one(&mut *probe.lock().await)
            .await
            .unwrap();
            blocked > 0
        },
    )
    .await;
    // The holder's next statement (a checkpoint's) updates the job row.
    sqlx::query("UPDATE sync_jobs SET updated_at = now() WHERE id = $1")
        .bind(job.id)
        .execute(&mut holder)
        .await
        .expect("the holder is not part of a deadlock");
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let claimed = claim
        .await
        .unwrap()
        .expect("the claim is not part of a deadlock");
    assert_eq!(claimed, None, "the holder renewed its lease in time");
}

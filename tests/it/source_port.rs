//! The sync engine's source port (`SourceAdapter`): a source that is not
//! Dexcom, registered in the test, is synced by the same engine, store and
//! pipeline, window by window, and each failure disposition (retry, final,
//! reauth) reaches the job and the connection as it should.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cgm_hub::config::SyncSettings;
use cgm_hub::connections::TokenSet;
use cgm_hub::domain::{FieldError, Reading, ReadingTime, TimePolicy, UserId};
use cgm_hub::pipeline::Pipeline;
use cgm_hub::records::connections::{Connection, ConnectionStatus, Provider};
use cgm_hub::records::jobs::{JobStatus, NewJob, SyncJob, TimeRange, Trigger};
use cgm_hub::store::Store;
use cgm_hub::sync::engine::SyncEngine;
use cgm_hub::sync::scheduler::Scheduler;
use cgm_hub::sync::source::{
    Disposition, FetchWindow, FetchedRecord, SourceAdapter, SourceError, Sources,
};
use chrono::{DateTime, DurationRound, Utc};

use crate::helpers::*;

/// A source that serves readings held in memory, in windows of at most six
/// hours, and fails for the users told to with the disposition given.
#[derive(Default)]
struct MemorySource {
    readings: Mutex<HashMap<UserId, Vec<Reading>>>,
    failing: Mutex<HashMap<UserId, Disposition>>,
    /// The windows fetched, per user (to see that the engine split the range).
    windows: Mutex<HashMap<UserId, Vec<FetchWindow>>>,
}

impl MemorySource {
    fn failure(&self, user: &UserId) -> Result<(), SourceError> {
        match self.failing.lock().unwrap().get(user) {
            None => Ok(()),
            Some(d) => Err(SourceError::new(*d, format!("memory source says {d:?}"))),
        }
    }
}

#[async_trait::async_trait]
impl SourceAdapter for MemorySource {
    fn provider(&self) -> Provider {
        // The only provider there is; this adapter takes Dexcom's place.
        Provider::Dexcom
    }

    fn max_window(&self) -> chrono::Duration {
        chrono::Duration::hours(6)
    }

    async fn data_range(
        &self,
        user: &UserId,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, SourceError> {
        let held = self.readings.lock().unwrap();
        let times = held
            .get(user)
            .into_iter()
            .flatten()
            .map(|r| r.timestamp.as_datetime());
        let first = times.clone().min();
        Ok(first.zip(times.max()))
    }

    async fn fetch(
        &self,
        user: &UserId,
        window: FetchWindow,
    ) -> Result<Vec<FetchedRecord>, SourceError> {
        self.failure(user)?;
        self.windows
            .lock()
            .unwrap()
            .entry(user.clone())
            .or_default()
            .push(window);
        let held = self.readings.lock().unwrap();
        let mut records: Vec<FetchedRecord> = held
            .get(user)
            .into_iter()
            .flatten()
            .filter(|r| {
                let at = r.timestamp.as_datetime();
                window.start <= at && at < window.end
            })
            .cloned()
            .map(Ok)
            .collect();
        // One record per window the source could not read: rejected, counted.
        records.push(Err(vec![FieldError::new("/value", "unreadable")]));
        Ok(records)
    }
}

async fn connect(store: &dyn Store, user: &UserId) {
    let now = Utc::now();
    let tokens = test_cipher()
        .seal(
            user,
            Provider::Dexcom,
            &TokenSet {
                access_token: cgm_hub::secret::Secret::new("memory-access".into()),
                refresh_token: cgm_hub::secret::Secret::new("memory-refresh".into()),
            },
        )
        .unwrap();
    store
        .put_connection(Connection {
            status: ConnectionStatus::Connected,
            tokens: Some(tokens),
            connected_at: Some(now),
            ..Connection::disconnected(user.clone(), Provider::Dexcom, now)
        })
        .await
        .unwrap();
}

/// The job once `done` accepts it (every state waited for here lasts: a
/// finished job, or one queued again 30 s ahead).
async fn job_when(
    store: &dyn Store,
    id: uuid::Uuid,
    what: &str,
    done: impl Fn(&SyncJob) -> bool,
) -> SyncJob {
    let done = &done;
    eventually(what, Duration::from_secs(10), || async move {
        done(&store.get_job(id).await.unwrap().expect("the job exists"))
    })
    .await;
    store.get_job(id).await.unwrap().expect("the job exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_source_is_synced_and_its_failures_reach_jobs_and_connections() {
    let test_store = sqlite_store().await;
    let store = test_store.store.clone();
    let source = Arc::new(MemorySource::default());
    // A day of five-minute readings, both ends included, ending an hour ago.
    let end = Utc::now()
        .duration_trunc(chrono::Duration::minutes(5))
        .unwrap()
        - chrono::Duration::hours(1);
    let start = end - chrono::Duration::days(1);
    let synced = user("port-ok");
    let (retried, failed, revoked) = (user("port-retry"), user("port-final"), user("port-reauth"));
    for u in [&synced, &retried, &failed, &revoked] {
        let day: Vec<Reading> = (0..=288)
            .map(|i| {
                let at = ReadingTime::from_utc(start + chrono::Duration::minutes(5 * i));
                cgm(u.as_str(), at, 100 + (i % 50) as u16)
            })
            .collect();
        source.readings.lock().unwrap().insert(u.clone(), day);
    }
    // Their data range resolves; fetching a window fails.
    {
        let mut failing = source.failing.lock().unwrap();
        failing.insert(retried.clone(), Disposition::Retry);
        failing.insert(failed.clone(), Disposition::Final);
        failing.insert(revoked.clone(), Disposition::Reauth);
    }
    for u in [&synced, &retried, &failed, &revoked] {
        connect(store.as_ref(), u).await;
    }

    let pipeline = Pipeline::new(store.clone(), TimePolicy::default());
    let engine = SyncEngine::new(
        store.clone(),
        store.clone(),
        pipeline,
        Sources::new().with(source.clone()),
        SyncSettings {
            interval: Duration::from_secs(1),
            lease: Duration::from_secs(5),
            ..SyncSettings::default()
        },
    );
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    engine.start(stopped.clone());

    // A requested range: fetched in six-hour windows, stored, counted.
    let range = TimeRange {
        start,
        end: end + chrono::Duration::minutes(1),
    };
    let submit = |u: &UserId| {
        let engine = engine.clone();
        let job = NewJob::new(
            u.clone(),
            Provider::Dexcom,
            Trigger::Manual,
            Some(range),
            Utc::now(),
        );
        async move {
            match engine.submit_requested(job).await.unwrap() {
                cgm_hub::records::jobs::Created::New(job) => job.id,
                other => panic!("not queued: {other:?}"),
            }
        }
    };
    let ok = submit(&synced).await;
    let job = job_when(store.as_ref(), ok, "the sync succeeds", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    let windows = source.windows.lock().unwrap()[&synced].clone();
    assert_eq!(
        windows.len(),
        5,
        "a day and a second (clipped to the readings held) in six-hour windows"
    );
    assert!(windows
        .iter()
        .all(|w| w.end - w.start <= chrono::Duration::hours(6)));
    assert_eq!(job.counts.inserted, 289, "{job:?}");
    assert_eq!(job.counts.rejected, windows.len() as u64, "{job:?}");
    assert_eq!(job.counts.fetched, 289 + windows.len() as u64, "{job:?}");
    let latest = store
        .latest_reading(&synced)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        latest.reading.timestamp.as_datetime(),
        end,
        "the newest reading came through the pipeline"
    );
    let connection = store
        .get_connection(&synced, Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.status, ConnectionStatus::Connected);
    assert_eq!(
        connection.sync_cursor,
        Some(end),
        "the high-water mark moved"
    );

    // Retry: back in the queue with its error, the connection untouched.
    let retry = submit(&retried).await;
    let job = job_when(
        store.as_ref(),
        retry,
        "the failed run is queued again",
        |j| j.attempts >= 1 && j.status == JobStatus::Queued && !j.errors.is_empty(),
    )
    .await;
    assert!(job.errors[0].contains("Retry"), "{job:?}");
    let connection = store
        .get_connection(&retried, Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.status, ConnectionStatus::Connected);
    assert!(connection.tokens.is_some());

    // Final: the job fails; the connection stays connected.
    let fin = submit(&failed).await;
    let job = job_when(store.as_ref(), fin, "the job fails", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.attempts, 1, "no retry of a final failure: {job:?}");
    assert!(job.errors.iter().any(|e| e.contains("Final")), "{job:?}");
    let connection = store
        .get_connection(&failed, Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.status, ConnectionStatus::Connected);
    assert!(connection.tokens.is_some());

    // Reauth: the job fails and the connection needs the user again, tokens gone.
    let reauth = submit(&revoked).await;
    let job = job_when(store.as_ref(), reauth, "the job fails", |j| {
        j.status.is_finished()
    })
    .await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.attempts, 1, "{job:?}");
    assert!(job.errors.iter().any(|e| e.contains("Reauth")), "{job:?}");
    let connection = store
        .get_connection(&revoked, Provider::Dexcom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.status, ConnectionStatus::ReauthRequired);
    assert!(connection.tokens.is_none());
    assert!(
        connection
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Reauth")),
        "{connection:?}"
    );

    // The scheduler polls the registered source's connected users: a
    // scheduled job for the connected user, none for the revoked one.
    tokio::spawn(Scheduler::new(engine.clone()).run(stopped));
    eventually(
        "a scheduled poll of the source runs",
        Duration::from_secs(10),
        || {
            let jobs = store.list_jobs(&synced, 20);
            async move {
                jobs.await
                    .unwrap()
                    .iter()
                    .any(|j| j.trigger == Trigger::Scheduled && j.status == JobStatus::Succeeded)
            }
        },
    )
    .await;
    let revoked_jobs = store.list_jobs(&revoked, 20).await.unwrap();
    assert!(
        revoked_jobs.iter().all(|j| j.trigger != Trigger::Scheduled),
        "a connection that needs the user is not polled: {revoked_jobs:?}"
    );
}

//! The outbox relay: publishes what stores committed to their outbox, in commit
//! order, and deletes each message once the bus holds it.
//!
//! At least once: a crash after the publish and before the delete publishes the
//! message again (consumers deduplicate by event id). Nothing is lost: a message
//! leaves the outbox only after the bus confirmed it. With several instances on
//! one store, each relay claims its own batches; a relay that dies leaves its
//! claim to lapse and another takes the messages over.
//!
//! Durable sinks (`EventSink`, e.g. notification delivery) get each batch after
//! the bus holds it and before it is deleted, so what they enqueue survives a
//! crash at any point: at worst the batch is handed to them again.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::{BusError, EventBus, EventSink, SinkError};
use crate::store::{OutboxStore, StoreError};

/// Messages per claim and publish.
const BATCH: usize = 500;
/// How long a claim holds before another relay may take the messages over; far
/// longer than publishing one batch takes.
const CLAIM: Duration = Duration::from_secs(30);
/// Commits by other instances are not signalled here: look this often anyway.
const POLL: Duration = Duration::from_secs(1);
/// Retry delays after failures: 100 ms doubling up to 30 s.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the backlog gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

pub struct Relay {
    store: Arc<dyn OutboxStore>,
    bus: Arc<dyn EventBus>,
    /// This relay's name on claims.
    owner: String,
    /// Durable consumers handed each batch before it leaves the outbox.
    sinks: std::sync::RwLock<Vec<Arc<dyn EventSink>>>,
}

impl Relay {
    pub fn new(store: Arc<dyn OutboxStore>, bus: Arc<dyn EventBus>) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            owner: format!("relay-{}", uuid::Uuid::new_v4()),
            sinks: Default::default(),
        })
    }

    /// Adds a durable consumer: from the next batch on, every batch is handed
    /// to it after the bus holds it and before it is deleted from the outbox.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sink);
    }

    /// Runs until `stop`, then tries once more to publish what is waiting.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let relay = self.clone();
        tokio::spawn(async move { relay.run(stop).await })
    }

    /// Publishes one batch: claim, publish, delete. Returns how many were published.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        // No claims while the broker is out of reach (see `EventBus::ready`).
        self.bus.ready().await?;
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(CLAIM).unwrap_or_default();
        let batch = self
            .store
            .claim_outbox(&self.owner, now, until, BATCH)
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        self.bus.publish(&batch).await?;
        let sinks = self
            .sinks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for sink in sinks {
            // A failure keeps the batch in the outbox: handed over again later.
            sink.accept(&batch).await?;
        }
        for message in &batch {
            metrics::counter!("events_published_total", "type" => message.routing_key.clone())
                .increment(1);
            let age = (Utc::now() - message.created_at).num_milliseconds().max(0) as f64;
            metrics::histogram!("event_publish_delay_seconds").record(age / 1000.0);
        }
        // A failure here publishes the batch again later: at least once.
        self.store
            .ack_outbox(batch.iter().map(|m| m.id).collect())
            .await?;
        Ok(batch.len())
    }

    /// Publishes until the outbox is empty (or a failure); returns how many.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.publish_batch().await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        let mut gauge_at = tokio::time::Instant::now();
        loop {
            // Registered before looking, so a commit in between still wakes us.
            let signal = self.store.outbox_signal().notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            let wait = match self.drain().await {
                Ok(_) => {
                    failures = 0;
                    POLL
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!("event_publish_failures_total").increment(1);
                    let delay = backoff(failures);
                    tracing::warn!(error = %e, attempt = failures, retry_in_ms = delay.as_millis() as u64,
                        "cannot publish events; they wait in the outbox");
                    delay
                }
            };
            if gauge_at.elapsed() >= GAUGE_EVERY {
                gauge_at = tokio::time::Instant::now();
                if let Ok(n) = self.store.outbox_backlog().await {
                    metrics::gauge!("outbox_backlog").set(n as f64);
                }
            }
            tokio::select! {
                _ = &mut signal, if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        match self.drain().await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e,
                "events left in the outbox at shutdown; the next start publishes them"),
        }
    }
}

/// The delay before retry number `failures` (from 1).
pub(super) fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::events::Message;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Fails while `failing`, then counts what it accepted.
    struct Sink {
        failing: AtomicBool,
        accepted: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl EventSink for Sink {
        fn name(&self) -> &'static str {
            "test"
        }
        async fn accept(&self, messages: &[Message]) -> Result<(), SinkError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(SinkError {
                    sink: "test",
                    message: "down".into(),
                });
            }
            self.accepted.fetch_add(messages.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_batch_leaves_the_outbox_only_once_every_sink_took_it() {
        use crate::domain::{
            DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, UserId,
        };
        use crate::store::sqlite::SqliteStore;
        use crate::store::ReadingStore;
        let dir = tempfile::TempDir::new().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("t.db"), crate::config::Durability::Normal).unwrap(),
        );
        store
            .upsert_readings(vec![Reading {
                user_id: UserId::parse("sink-user").unwrap(),
                timestamp: ReadingTime::from_unix_seconds(1_700_000_000).unwrap(),
                glucose: Glucose::value(MgDl::new(100).unwrap()),
                trend: None,
                trend_rate: None,
                device: DeviceInfo::default(),
                reading_type: ReadingType::Cgm,
                source: Source::api(),
                source_record_id: None,
                display_offset_minutes: None,
            }])
            .await
            .unwrap();
        let relay = Relay::new(store.clone(), Arc::new(super::super::MemoryBus::default()));
        let sink = Arc::new(Sink {
            failing: AtomicBool::new(true),
            accepted: AtomicUsize::new(0),
        });
        relay.add_sink(sink.clone());
        assert!(matches!(relay.drain().await, Err(RelayError::Sink(_))));
        assert_eq!(store.outbox_backlog().await.unwrap(), 1, "kept for later");
        sink.failing.store(false, Ordering::SeqCst);
        // The same relay claims its own messages again at once.
        assert_eq!(relay.drain().await.unwrap(), 1);
        assert_eq!(sink.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(12), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}

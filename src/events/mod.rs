//! Carrying events: the bus, the outbox relay, and subscriptions.
//!
//! A store writes the events of a change into its outbox in the same transaction
//! as the change (readings, a job's end, a connection's new status); the relay
//! (`relay`) publishes them to the configured `EventBus` and deletes them once the
//! bus has them. So an event is published at least once for every committed
//! change, through broker outages and crashes; consumers deduplicate by `id`.
//!
//! Every bus also feeds a `Hub` with the events this instance sees, which
//! `Subscriber`s read: with the in-process bus, what the relay published; with
//! RabbitMQ, what this instance's own queue receives from the exchange (every
//! instance's events, this one's included, once each).
//!
//! The schema (`Event`, `Message`, ...) lives below the store in
//! `crate::records::events`, so that stores can write it in their own transactions.

pub mod hub;
pub mod live;
mod memory;
pub mod rabbitmq;
pub mod relay;
pub mod subscriber;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::records::events::Message;

pub use hub::{Hub, Received, Subscription};
pub use memory::MemoryBus;
pub use subscriber::Subscriber;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker cannot be reached or did not confirm; the relay retries.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// A durable consumer of committed events, fed by the relay **before** it
/// deletes them from the outbox (unlike subscribers, which read the in-memory
/// hub after the fact): a crash between the two hands the batch over again, so
/// a sink sees every event at least once and must accept repeats (by event id).
/// Sinks should be quick (enqueue durable work, do not perform it): the relay
/// waits for them.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Takes the batch in hand durably. An Err keeps the batch in the outbox
    /// and the relay tries again later (publishing it again too).
    async fn accept(&self, messages: &[Message]) -> Result<(), SinkError>;
}

#[derive(Debug, thiserror::Error)]
#[error("event sink {sink} failed: {message}")]
pub struct SinkError {
    pub sink: &'static str,
    pub message: String,
}

/// Where the relay publishes committed events.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Publishes the messages in order. Ok means the bus holds every one of
    /// them (a broker confirmed them), so the outbox may forget them.
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError>;

    /// Makes the bus ready to publish (connecting if needed). The relay asks
    /// before it claims messages, so an instance that cannot reach its broker
    /// holds no claims: after it crashes, another instance (or its own restart)
    /// publishes at once instead of waiting for the claims to lapse.
    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// For `/health`: Err with the reason when the bus cannot publish now, or
    /// cannot receive what it feeds the hub.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Where the events this instance sees reach its subscribers.
    fn hub(&self) -> &Hub;

    /// Starts feeding the hub from outside this process (RabbitMQ: a queue of
    /// this instance's own), until `stop`. Returns once the first attempt to
    /// connect has ended, whether or not it succeeded (the task keeps trying),
    /// so events published after a successful start are not missed. None when
    /// the bus feeds the hub as it publishes (the in-process bus).
    async fn start_consuming(&self, _stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        None
    }
}

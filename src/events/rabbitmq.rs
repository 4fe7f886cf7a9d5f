//! The RabbitMQ event bus (`EVENT_BUS=rabbitmq`): a durable topic exchange, a
//! durable queue bound to every routing key, persistent messages and publisher
//! confirms. A publish is Ok only once the broker confirmed every message, so
//! the relay deletes nothing the broker does not hold.
//!
//! Reconnection: any failure drops the connection; the next publish (the relay
//! retries with backoff) connects again and declares the topology again.
//!
//! Consuming: each instance also declares a queue of its own (exclusive,
//! deleted with its connection), bound to the exchange for every routing key,
//! and feeds what arrives there into its hub. So every instance's subscribers
//! see every instance's events, their own included, once: the relay publishes
//! to the broker only, never to the local hub. That consumer reconnects with
//! backoff after a broker restart; what is published while it is away does not
//! reach this instance's subscribers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::relay::backoff;
use super::{BusError, EventBus, Hub};
use crate::records::events::Message;

/// A connect or a batch's confirms taking longer than this count as an outage.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// At stop, the consumer keeps taking deliveries until none came for this
/// long, so the relay's last batch (published just before) still reaches the
/// subscribers of this instance.
const QUIET_AT_STOP: Duration = Duration::from_millis(250);

use crate::config::RabbitSettings;

pub struct RabbitBus {
    settings: RabbitSettings,
    /// The open connection and its confirm-mode channel, if any. One publisher
    /// at a time (the relay), so a mutex costs nothing.
    link: Mutex<Option<(Connection, Channel)>>,
    connected: AtomicBool,
    hub: Arc<Hub>,
    /// Whether the consumer was started, and whether it is receiving now.
    consuming: Arc<ConsumerState>,
}

#[derive(Default)]
struct ConsumerState {
    started: AtomicBool,
    connected: AtomicBool,
}

impl RabbitBus {
    pub fn new(settings: RabbitSettings) -> Self {
        Self {
            settings,
            link: Mutex::new(None),
            connected: AtomicBool::new(false),
            hub: Arc::default(),
            consuming: Arc::default(),
        }
    }

    /// Connects now (the relay would on its first publish anyway), so start-up
    /// logs say at once whether the broker is there.
    pub async fn connect(&self) -> Result<(), BusError> {
        let mut link = self.link.lock().await;
        self.ensure(&mut link).await.map(|_| ())
    }

    async fn ensure<'a>(
        &self,
        link: &'a mut Option<(Connection, Channel)>,
    ) -> Result<&'a Channel, BusError> {
        let alive =
            matches!(link, Some((c, ch)) if c.status().connected() && ch.status().connected());
        if !alive {
            *link = None;
            self.set_connected(false);
            let opened = tokio::time::timeout(BROKER_TIMEOUT, self.open())
                .await
                .map_err(|_| BusError::Unavailable("connecting to RabbitMQ timed out".into()))??;
            tracing::info!(exchange = %self.settings.exchange, queue = %self.settings.queue,
                "connected to RabbitMQ");
            *link = Some(opened);
            self.set_connected(true);
        }
        Ok(&link.as_ref().expect("set above").1)
    }

    async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let s = &self.settings;
        let (connection, channel) = connect(s).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        channel
            .queue_declare(
                s.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        bind_every_key(&channel, &s.queue, &s.exchange).await?;
        Ok((connection, channel))
    }

    async fn publish_on(&self, channel: &Channel, messages: &[Message]) -> Result<(), BusError> {
        let mut confirms = Vec::with_capacity(messages.len());
        for m in messages {
            let properties = BasicProperties::default()
                .with_delivery_mode(2) // persistent
                .with_content_type("application/json".into())
                .with_message_id(m.id.to_string().into())
                .with_type(m.routing_key.as_str().into())
                .with_timestamp(m.created_at.timestamp().max(0) as u64);
            let confirm = channel
                .basic_publish(
                    self.settings.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    m.payload.as_bytes(),
                    properties,
                )
                .await
                .map_err(unavailable)?;
            confirms.push(confirm);
        }
        // All in flight at once; then wait for every confirm.
        let confirmed = tokio::time::timeout(BROKER_TIMEOUT, async {
            for confirm in confirms {
                if confirm.await.map_err(unavailable)?.is_nack() {
                    return Err(BusError::Unavailable("RabbitMQ refused a message".into()));
                }
            }
            Ok(())
        });
        confirmed
            .await
            .map_err(|_| BusError::Unavailable("RabbitMQ confirms timed out".into()))?
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        metrics::gauge!("event_bus_connected", "bus" => "rabbitmq").set(if up { 1.0 } else { 0.0 });
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        let mut link = self.link.lock().await;
        let channel = self.ensure(&mut link).await?;
        let published = self.publish_on(channel, messages).await;
        if published.is_err() {
            // Start over with a fresh connection on the next attempt.
            *link = None;
            self.set_connected(false);
        }
        published
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.connect().await
    }

    fn check(&self) -> Result<(), String> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err("not connected to RabbitMQ; events wait in the outbox".into());
        }
        if self.consuming.started.load(Ordering::Relaxed)
            && !self.consuming.connected.load(Ordering::Relaxed)
        {
            return Err(
                "not receiving events from RabbitMQ; this instance's subscribers \
                        miss events until it reconnects"
                    .into(),
            );
        }
        Ok(())
    }

    fn hub(&self) -> &Hub {
        &self.hub
    }

    async fn start_consuming(&self, stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        self.consuming.started.store(true, Ordering::Relaxed);
        let consumer = Consumer {
            settings: self.settings.clone(),
            hub: self.hub.clone(),
            state: self.consuming.clone(),
            queue: format!("{}.live.{}", self.settings.queue, Uuid::new_v4().simple()),
        };
        let (ready_tx, ready) = oneshot::channel();
        let task = tokio::spawn(consumer.run(stop, ready_tx));
        // Err: the task ended before its first attempt did (it was stopped).
        let _ = ready.await;
        Some(task)
    }
}

/// This instance's consumer: its own queue, fed into its hub.
struct Consumer {
    settings: RabbitSettings,
    hub: Arc<Hub>,
    state: Arc<ConsumerState>,
    queue: String,
}

/// Why receiving ended.
enum Ended {
    Stopped,
    Lost(String),
}

impl Consumer {
    async fn run(self, mut stop: watch::Receiver<bool>, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            let opened = tokio::time::timeout(BROKER_TIMEOUT, self.open())
                .await
                .unwrap_or_else(|_| {
                    Err(BusError::Unavailable(
                        "connecting to RabbitMQ timed out".into(),
                    ))
                });
            match opened {
                Ok((connection, deliveries)) => {
                    self.set_connected(true);
                    tracing::info!(exchange = %self.settings.exchange, queue = %self.queue,
                        "receiving events from RabbitMQ");
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    let ended = self.receive(deliveries, &mut stop).await;
                    self.set_connected(false);
                    // Closing deletes the queue at once; a lost connection's
                    // queue goes with it anyway.
                    let _ = tokio::time::timeout(
                        BROKER_TIMEOUT,
                        connection.close(200, "cgm-hub stopping".into()),
                    )
                    .await;
                    match ended {
                        Ended::Stopped => break,
                        Ended::Lost(reason) => {
                            failures = 0;
                            tracing::warn!(error = %reason,
                                "lost the RabbitMQ consumer; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, attempt = failures,
                        "cannot receive events from RabbitMQ; retrying");
                }
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(failures.max(1))) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!("stopped receiving events from RabbitMQ");
    }

    async fn open(&self) -> Result<(Connection, lapin::Consumer), BusError> {
        let s = &self.settings;
        let (connection, channel) = connect(s).await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        bind_every_key(&channel, &self.queue, &s.exchange).await?;
        // No acks: what the hub was handed is done with, and a crash loses the
        // queue anyway.
        let deliveries = channel
            .basic_consume(
                self.queue.as_str().into(),
                "cgm-hub".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok((connection, deliveries))
    }

    async fn receive(
        &self,
        mut deliveries: lapin::Consumer,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        loop {
            tokio::select! {
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => self.deliver(&delivery),
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("the broker cancelled the consumer".into()),
                },
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(QUIET_AT_STOP, deliveries.next()).await
        {
            self.deliver(&delivery);
        }
        Ended::Stopped
    }

    fn deliver(&self, delivery: &Delivery) {
        match message_of(delivery) {
            Some(message) => {
                metrics::counter!("events_received_total", "bus" => "rabbitmq").increment(1);
                self.hub.deliver(Arc::new(message));
            }
            None => tracing::warn!(routing_key = %delivery.routing_key,
                "ignored a message on the event exchange that is not an event"),
        }
    }

    fn set_connected(&self, up: bool) {
        self.state.connected.store(up, Ordering::Relaxed);
        metrics::gauge!("event_consumer_connected", "bus" => "rabbitmq").set(if up {
            1.0
        } else {
            0.0
        });
    }
}

/// The message a delivery carries: the event's JSON as published, its id and
/// time read from it (the AMQP timestamp has whole seconds only).
fn message_of(delivery: &Delivery) -> Option<Message> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: Uuid,
        occurred_at: DateTime<Utc>,
    }
    let payload = String::from_utf8(delivery.data.clone()).ok()?;
    let head: Head = serde_json::from_str(&payload).ok()?;
    Some(Message::stored(
        head.id,
        delivery.routing_key.to_string(),
        payload,
        head.occurred_at,
    ))
}

/// A connection and a channel on it, with the event exchange declared: alike
/// for the publisher and every consumer, so either may come first (a
/// declaration that differs from the existing exchange's is refused).
async fn connect(s: &RabbitSettings) -> Result<(Connection, Channel), BusError> {
    let connection = Connection::connect(s.url.expose().as_str(), ConnectionProperties::default())
        .await
        .map_err(unavailable)?;
    let channel = connection.create_channel().await.map_err(unavailable)?;
    channel
        .exchange_declare(
            s.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    Ok((connection, channel))
}

/// Binds `queue` to every routing key of the exchange.
async fn bind_every_key(channel: &Channel, queue: &str, exchange: &str) -> Result<(), BusError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

fn unavailable(e: lapin::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

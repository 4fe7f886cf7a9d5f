//! The RabbitMQ event bus (`EVENT_BUS=rabbitmq`): a durable topic exchange, a
//! durable queue bound to every routing key, persistent messages and publisher
//! confirms. A publish is Ok only once the broker confirmed every message, so
//! the relay deletes nothing the broker does not hold.
//!
//! Reconnection: any failure drops the connection; the next publish (the relay
//! retries with backoff) connects again and declares the topology again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{BusError, EventBus, Message};

/// A connect or a batch's confirms taking longer than this count as an outage.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::config::RabbitSettings;

pub struct RabbitBus {
    settings: RabbitSettings,
    /// The open connection and its confirm-mode channel, if any. One publisher
    /// at a time (the relay), so a mutex costs nothing.
    link: Mutex<Option<(Connection, Channel)>>,
    connected: AtomicBool,
}

impl RabbitBus {
    pub fn new(settings: RabbitSettings) -> Self {
        Self {
            settings,
            link: Mutex::new(None),
            connected: AtomicBool::new(false),
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
        let connection =
            Connection::connect(s.url.expose().as_str(), ConnectionProperties::default())
                .await
                .map_err(unavailable)?;
        let channel = connection.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
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
        channel
            .queue_declare(
                s.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        channel
            .queue_bind(
                s.queue.as_str().into(),
                s.exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
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
        if self.connected.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not connected to RabbitMQ; events wait in the outbox".into())
        }
    }
}

fn unavailable(e: lapin::Error) -> BusError {
    BusError::Unavailable(e.to_string())
}

//! The events section (EVENT_BUS, RABBITMQ_*): where the outbox relay publishes.

use super::{invalid, ConfigError, Vars};
use crate::secret::Secret;

#[derive(Clone)]
pub enum EventBusKind {
    Memory,
    RabbitMq(RabbitSettings),
}

impl std::fmt::Debug for EventBusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventBusKind::Memory => f.write_str("Memory"),
            EventBusKind::RabbitMq(r) => f
                .debug_struct("RabbitMq")
                .field("exchange", &r.exchange)
                .field("queue", &r.queue)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Clone)]
pub struct RabbitSettings {
    /// May hold a password: never logged.
    pub url: Secret<String>,
    pub exchange: String,
    pub queue: String,
}

pub(super) fn parse(v: &Vars<'_>) -> Result<EventBusKind, ConfigError> {
    let event_bus =
        match v.get("EVENT_BUS").to_ascii_lowercase().as_str() {
            "memory" => EventBusKind::Memory,
            "rabbitmq" => EventBusKind::RabbitMq(RabbitSettings {
                url: Secret::new(v.optional("RABBITMQ_URL").map(str::to_owned).ok_or_else(
                    || invalid("RABBITMQ_URL", "is required when EVENT_BUS=rabbitmq"),
                )?),
                exchange: v.get("RABBITMQ_EXCHANGE").to_owned(),
                queue: v.get("RABBITMQ_QUEUE").to_owned(),
            }),
            other => {
                return Err(invalid(
                    "EVENT_BUS",
                    format!("{other:?} is not memory or rabbitmq"),
                ))
            }
        };
    if let Some(url) = v.optional("RABBITMQ_URL") {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(invalid(
                "RABBITMQ_URL",
                "must be an amqp:// or amqps:// URL",
            ));
        }
    }
    Ok(event_bus)
}

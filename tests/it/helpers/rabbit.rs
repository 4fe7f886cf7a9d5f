//! The local RabbitMQ broker and per-test exchanges and queues on it.

use cgm_hub::config::RabbitSettings;
use cgm_hub::secret::Secret;

/// The local broker (`rabbitmq-server`, guest/guest).
pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A channel on the local broker and the connection carrying it (keep both
/// alive while the channel is in use).
pub async fn broker_channel() -> Result<(lapin::Connection, lapin::Channel), lapin::Error> {
    let connection =
        lapin::Connection::connect(BROKER, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// An exchange and queue of their own per test, so tests never read each
/// other's messages.
pub fn rabbit_settings(url: &str, name: &str) -> RabbitSettings {
    RabbitSettings {
        url: Secret::new(url.to_owned()),
        exchange: format!("test_events_{name}"),
        queue: format!("test_queue_{name}"),
    }
}

/// The environment that points a `Binary` at `s`.
pub fn rabbit_env(s: &RabbitSettings) -> [(&'static str, &str); 4] {
    [
        ("EVENT_BUS", "rabbitmq"),
        ("RABBITMQ_URL", s.url.expose().as_str()),
        ("RABBITMQ_EXCHANGE", s.exchange.as_str()),
        ("RABBITMQ_QUEUE", s.queue.as_str()),
    ]
}

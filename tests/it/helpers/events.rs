//! The outbox relay and an in-process bus, for tests that watch the events a
//! store's writes produce.

use std::sync::Arc;
use std::time::Duration;

use cgm_hub::events::MemoryBus;
use cgm_hub::store::Store;
use serde_json::Value;

/// A pipeline over `store`, and a subscription to the events its outbox relay
/// publishes to an in-process bus (the relay runs for the rest of the test).
pub fn pipeline_with_events(
    store: Arc<dyn Store>,
) -> (
    cgm_hub::pipeline::Pipeline,
    tokio::sync::broadcast::Receiver<Arc<cgm_hub::records::events::Message>>,
) {
    let bus = Arc::new(MemoryBus::default());
    let events = bus.subscribe();
    start_relay(store.clone(), bus);
    let pipeline = cgm_hub::pipeline::Pipeline::new(store, cgm_hub::domain::TimePolicy::default());
    (pipeline, events)
}

/// Publishes `store`'s outbox to `bus` for the rest of the test, as an app does.
pub fn start_relay(store: Arc<dyn Store>, bus: Arc<dyn cgm_hub::events::EventBus>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Box::leak(Box::new(stop));
    cgm_hub::events::relay::Relay::new(store, bus).start(stopped);
}

/// The next event on `events`, waiting up to 5 s for the relay.
pub async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<Arc<cgm_hub::records::events::Message>>,
) -> Value {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("event bus open")
        .json()
}

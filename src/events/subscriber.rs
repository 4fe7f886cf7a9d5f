//! Consumers of this instance's events (alert evaluation, live streams, ...):
//! each one a `Subscriber` with a runner of its own, so a slow one delays only
//! itself.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::hub::{Hub, Received, Subscription};
use crate::records::events::Message;

/// Something that reacts to every event this instance sees (its own and, with
/// `EVENT_BUS=rabbitmq`, every other instance's): at least once, and in the
/// order the bus delivered them. Handlers that must not act twice deduplicate
/// by `Message::id` (the hub already drops repeats it still remembers).
#[async_trait]
pub trait Subscriber: Send + Sync + 'static {
    /// Names the subscriber in logs and metrics.
    fn name(&self) -> &'static str;

    /// Handles one event. Failures are the subscriber's to log or retry: the
    /// runner moves on to the next event.
    async fn handle(&self, message: &Message);

    /// Told that `count` events were dropped for it because it fell behind
    /// (already logged and counted in `event_subscriber_missed_total`), for
    /// example to catch up from the store.
    async fn missed(&self, _count: u64) {}
}

/// Runs `subscriber` on `hub` until `stop`, then hands it what had already
/// arrived before returning. Subscribes before returning, so nothing delivered
/// after this call is missed.
pub fn run(
    hub: &Hub,
    subscriber: Arc<dyn Subscriber>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut subscription = hub.subscribe(subscriber.name());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // Events first: a stop does not overtake what already arrived.
                biased;
                next = subscription.recv() => match next {
                    Some(received) => handle(&*subscriber, received).await,
                    None => return,
                },
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        drain(&*subscriber, &mut subscription).await;
    })
}

async fn drain(subscriber: &dyn Subscriber, subscription: &mut Subscription) {
    while let Some(received) = subscription.try_recv() {
        handle(subscriber, received).await;
    }
}

async fn handle(subscriber: &dyn Subscriber, received: Received) {
    match received {
        Received::Message(message) => {
            subscriber.handle(&message).await;
            metrics::counter!("events_handled_total", "subscriber" => subscriber.name())
                .increment(1);
        }
        Received::Missed(count) => subscriber.missed(count).await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::records::events::Event;

    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<uuid::Uuid>>,
    }

    #[async_trait]
    impl Subscriber for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn handle(&self, message: &Message) {
            self.seen.lock().expect("not poisoned").push(message.id);
        }
    }

    #[tokio::test]
    async fn a_stopped_runner_still_handles_what_had_arrived() {
        let hub = Hub::default();
        let recorder = Arc::new(Recorder::default());
        let (stop_tx, stop) = watch::channel(false);
        let runner = run(&hub, recorder.clone(), stop);
        let user = crate::domain::UserId::parse("sub-user").expect("valid id");
        let sent: Vec<_> = (0..3)
            .map(|_| {
                let m = Event::connection_changed(
                    &user,
                    crate::records::connections::Provider::Dexcom,
                    crate::records::connections::ConnectionStatus::Connected,
                )
                .to_message();
                hub.deliver(Arc::new(m.clone()));
                m.id
            })
            .collect();
        let _ = stop_tx.send(true);
        runner.await.expect("runner ends");
        assert_eq!(*recorder.seen.lock().expect("not poisoned"), sent);
    }
}

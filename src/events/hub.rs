//! In-process fan-out of the events this instance sees, so that several
//! consumers in one process (alert evaluation, live streams) read one stream.
//!
//! Bounded: a subscriber that falls more than `CAPACITY` events behind loses the
//! oldest ones and is told how many (`Received::Missed`), counted in
//! `event_subscriber_missed_total`; whoever delivers never waits for it.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::records::events::Message;

/// How far a subscriber may fall behind before it misses events.
pub const CAPACITY: usize = 4096;
/// How many recent event ids the hub remembers to drop a second delivery of
/// the same event (a relay that published a batch again after a failed delete,
/// a broker redelivering): far more than arrive while a duplicate can.
const REMEMBERED: usize = 16_384;

pub struct Hub {
    sender: broadcast::Sender<Arc<Message>>,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Recent {
    /// False when `id` was seen lately.
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        true
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl Hub {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
            recent: Mutex::default(),
        }
    }

    /// Hands `message` to every current subscriber, unless this hub already
    /// delivered an event with its id. Never waits. Returns whether it was new.
    pub fn deliver(&self, message: Arc<Message>) -> bool {
        let new = match self.recent.lock() {
            Ok(mut recent) => recent.first_time(message.id),
            // A panic while holding the set cannot leave it unusable for this.
            Err(poisoned) => poisoned.into_inner().first_time(message.id),
        };
        if new {
            // No subscriber is not an error: nobody in this process listens.
            let _ = self.sender.send(message);
        }
        new
    }

    /// A named subscription to what is delivered from now on.
    pub fn subscribe(&self, name: &'static str) -> Subscription {
        Subscription {
            name,
            receiver: self.sender.subscribe(),
        }
    }

    /// The bare channel, for callers that handle lagging themselves.
    pub fn receiver(&self) -> broadcast::Receiver<Arc<Message>> {
        self.sender.subscribe()
    }

    /// How many subscriptions are open now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// What a subscription yields next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Message(Arc<Message>),
    /// The subscriber fell behind and this many events were dropped for it;
    /// the next ones follow.
    Missed(u64),
}

pub struct Subscription {
    name: &'static str,
    receiver: broadcast::Receiver<Arc<Message>>,
}

impl Subscription {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The next message, or how many were missed; None once the hub is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(message) => Some(Received::Message(message)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(self.missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// What is already waiting, without waiting; None when nothing is.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.receiver.try_recv() {
            Ok(message) => Some(Received::Message(message)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(self.missed(n)),
            Err(_) => None,
        }
    }

    fn missed(&self, n: u64) -> Received {
        metrics::counter!("event_subscriber_missed_total", "subscriber" => self.name).increment(n);
        tracing::warn!(
            subscriber = self.name,
            missed = n,
            "event subscriber fell behind; the oldest events were dropped for it"
        );
        Received::Missed(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::events::Event;

    fn message() -> Arc<Message> {
        let user = crate::domain::UserId::parse("hub-user").expect("valid id");
        Arc::new(
            Event::connection_changed(
                &user,
                crate::records::connections::Provider::Dexcom,
                crate::records::connections::ConnectionStatus::Connected,
            )
            .to_message(),
        )
    }

    #[tokio::test]
    async fn every_subscriber_gets_each_event_once() {
        let hub = Hub::default();
        let (mut a, mut b) = (hub.subscribe("a"), hub.subscribe("b"));
        let m = message();
        assert!(hub.deliver(m.clone()));
        assert!(
            !hub.deliver(m.clone()),
            "the same event id again is dropped"
        );
        for s in [&mut a, &mut b] {
            assert_eq!(s.recv().await, Some(Received::Message(m.clone())));
            assert_eq!(s.try_recv(), None, "delivered once");
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_many_it_missed_and_the_sender_never_waits() {
        let hub = Hub::with_capacity(4);
        let mut slow = hub.subscribe("slow");
        let sent: Vec<_> = (0..10).map(|_| message()).collect();
        for m in &sent {
            assert!(hub.deliver(m.clone()));
        }
        assert_eq!(slow.recv().await, Some(Received::Missed(6)));
        for m in &sent[6..] {
            assert_eq!(slow.recv().await, Some(Received::Message(m.clone())));
        }
    }

    #[test]
    fn the_hub_forgets_old_ids_beyond_its_window() {
        let mut recent = Recent::default();
        let first = Uuid::new_v4();
        assert!(recent.first_time(first));
        for _ in 0..REMEMBERED {
            assert!(recent.first_time(Uuid::new_v4()));
        }
        assert_eq!(recent.order.len(), REMEMBERED);
        assert!(recent.first_time(first), "forgotten, so new again");
    }
}

//! The in-process event bus: a broadcast channel that subscribers in this process read.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Event, EventBus};

/// Slow subscribers that fall more than this many events behind lose the oldest ones
/// (and are told so by `RecvError::Lagged`); publishers never wait.
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl MemoryBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

impl EventBus for MemoryBus {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, events: Vec<Event>) {
        for event in events {
            metrics::counter!("events_published_total", "type" => event.kind.routing_key())
                .increment(1);
            // No subscriber is not an error: nobody is listening in this process.
            let _ = self.sender.send(Arc::new(event));
        }
    }
}

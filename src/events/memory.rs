//! The in-process event bus: what the relay publishes goes straight to this
//! process's hub, for subscribers in this process.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{BusError, EventBus, Hub};
use crate::records::events::Message;

#[derive(Clone, Default)]
pub struct MemoryBus {
    hub: Arc<Hub>,
}

impl MemoryBus {
    /// The bare channel of the hub (lagging is the caller's to handle).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.hub.receiver()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        // With nobody subscribed in this process there is nobody to hand a copy
        // to (a subscriber that comes later starts from then on).
        if self.hub.subscribers() == 0 {
            return Ok(());
        }
        for message in messages {
            // Slow subscribers lose the oldest events rather than hold us up.
            self.hub.deliver(Arc::new(message.clone()));
        }
        Ok(())
    }

    fn hub(&self) -> &Hub {
        &self.hub
    }
}

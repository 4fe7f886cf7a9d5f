//! The in-process event bus: a broadcast channel that subscribers in this process read.

use std::sync::Arc;

use tokio::sync::broadcast;

use async_trait::async_trait;

use super::{BusError, EventBus, Message};

/// Slow subscribers that fall more than this many events behind lose the oldest ones
/// (and are told so by `RecvError::Lagged`); publishers never wait.
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<Message>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl MemoryBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.sender.subscribe()
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        for message in messages {
            // No subscriber is not an error: nobody is listening in this process.
            let _ = self.sender.send(Arc::new(message.clone()));
        }
        Ok(())
    }
}

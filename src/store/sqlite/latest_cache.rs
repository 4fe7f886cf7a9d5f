//! The newest reading of each recently asked-about user, kept in memory.
//!
//! `GET latest` is the hottest read (apps poll it); answering it from memory spares a
//! trip through the blocking pool. The cache is exact, not "eventually" right:
//! - only this process writes the database file (the store holds an exclusive lock
//!   file), and the writer updates the cache while it still holds the writer lock;
//! - a reader that missed fills the cache only if no write committed meanwhile
//!   (a generation counter), so it can never put back an older reading.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::domain::StoredReading;

pub struct LatestCache {
    entries: RwLock<HashMap<String, Arc<StoredReading>>>,
    generation: AtomicU64,
    capacity: usize,
}

impl LatestCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            capacity,
        }
    }

    pub fn get(&self, user: &str) -> Option<Arc<StoredReading>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }

    /// Taken before a database read whose result may fill the cache.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fills a missing entry with what the database returned, unless a write
    /// committed since `generation` was taken.
    pub fn fill(&self, generation: u64, reading: &StoredReading) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let user = reading.reading.user_id.as_str();
        if !entries.contains_key(user) {
            if entries.len() >= self.capacity {
                // Bounded memory: drop an arbitrary entry; it is refilled on demand.
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
            entries.insert(user.to_owned(), Arc::new(reading.clone()));
        }
    }

    /// Called by the writer, after commit and before releasing the writer lock,
    /// with every reading it inserted or replaced.
    pub fn committed(&self, written: &[StoredReading]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for reading in written {
            if let Some(cached) = entries.get_mut(reading.reading.user_id.as_str()) {
                if reading.reading.timestamp >= cached.reading.timestamp {
                    *cached = Arc::new(reading.clone());
                }
            }
        }
    }
}

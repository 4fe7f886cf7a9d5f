//! The newest reading of each recently asked-about user, kept in memory.
//!
//! `GET latest` is the hottest read (apps poll it); answering it from memory spares a
//! trip through the blocking pool. The cache is exact, not "eventually" right:
//! - only this process writes the database file (the store holds an exclusive lock
//!   file), and the writer updates the cache after commit while it still holds the
//!   writer lock;
//! - a reader that missed fills the cache only if no write for that user committed
//!   meanwhile (generation counters, striped by user so that steady ingest for
//!   other users does not keep a cold user out of the cache), so it can never put
//!   back an older reading.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::domain::StoredReading;

const STRIPES: usize = 256;

pub struct LatestCache {
    entries: RwLock<HashMap<String, Arc<StoredReading>>>,
    generations: Vec<AtomicU64>,
    capacity: usize,
}

/// What a reader noted before its database read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl LatestCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            capacity,
        }
    }

    fn stripe(&self, user: &str) -> &AtomicU64 {
        let mut h = DefaultHasher::new();
        user.hash(&mut h);
        &self.generations[(h.finish() as usize) % STRIPES]
    }

    pub fn get(&self, user: &str) -> Option<Arc<StoredReading>> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }

    /// Taken before a database read whose result may fill the cache.
    pub fn generation(&self, user: &str) -> Generation {
        Generation(self.stripe(user).load(Ordering::Acquire))
    }

    /// Fills a missing entry with what the database returned, unless a write for
    /// this user (or one sharing its stripe) committed since `seen` was taken.
    pub fn fill(&self, seen: Generation, reading: &StoredReading) {
        let user = reading.reading.user_id.as_str();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation(user) != seen || entries.contains_key(user) {
            return;
        }
        if entries.len() >= self.capacity {
            // Bounded memory: drop an arbitrary entry; it is refilled on demand.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(user.to_owned(), Arc::new(reading.clone()));
    }

    /// Called by the writer, after commit and before releasing the writer lock,
    /// with every reading it inserted or replaced.
    pub fn committed(&self, written: &[StoredReading]) {
        for reading in written {
            self.stripe(reading.reading.user_id.as_str())
                .fetch_add(1, Ordering::AcqRel);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, UserId,
    };
    use chrono::Utc;

    fn stored(user: &str, ts: i64, version: u32) -> StoredReading {
        StoredReading {
            reading: Reading {
                user_id: UserId::parse(user).unwrap(),
                timestamp: ReadingTime::from_unix_seconds(ts).unwrap(),
                glucose: Glucose::value(MgDl::new(100).unwrap()),
                trend: None,
                trend_rate: None,
                device: DeviceInfo::default(),
                reading_type: ReadingType::Cgm,
                source: Source::api(),
                source_record_id: None,
                display_offset_minutes: None,
            },
            version,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_fill_racing_a_commit_is_dropped() {
        let cache = LatestCache::new(10);
        // Reader notes the generation, reads v1 from the database...
        let seen = cache.generation("u1");
        let from_db = stored("u1", 100, 1);
        // ...meanwhile the writer commits v2 (not cached yet, so nothing to update)...
        cache.committed(&[stored("u1", 100, 2)]);
        // ...and the reader's stale fill must not land.
        cache.fill(seen, &from_db);
        assert!(cache.get("u1").is_none());
        // A fresh read after the commit fills normally.
        cache.fill(cache.generation("u1"), &stored("u1", 100, 2));
        assert_eq!(cache.get("u1").unwrap().version, 2);
    }

    #[test]
    fn commits_update_cached_entries_only_forward() {
        let cache = LatestCache::new(10);
        cache.fill(cache.generation("u1"), &stored("u1", 100, 1));
        cache.committed(&[stored("u1", 50, 1)]);
        assert_eq!(
            cache.get("u1").unwrap().reading.timestamp.unix_seconds(),
            100
        );
        cache.committed(&[stored("u1", 100, 2)]);
        assert_eq!(cache.get("u1").unwrap().version, 2);
        cache.committed(&[stored("u1", 200, 1)]);
        assert_eq!(
            cache.get("u1").unwrap().reading.timestamp.unix_seconds(),
            200
        );
    }

    #[test]
    fn other_users_writes_do_not_block_a_fill_and_capacity_holds() {
        let cache = LatestCache::new(3);
        let seen = cache.generation("cold");
        // Writes for other users land between the note and the fill; unless they
        // share the stripe, the fill still counts.
        let others: Vec<_> = (0..20)
            .map(|i| format!("busy{i}"))
            .filter(|u| !std::ptr::eq(cache.stripe(u), cache.stripe("cold")))
            .collect();
        for u in &others {
            cache.committed(&[stored(u, 1, 1)]);
        }
        cache.fill(seen, &stored("cold", 1, 1));
        assert!(cache.get("cold").is_some());
        for u in others.iter().take(5) {
            cache.fill(cache.generation(u), &stored(u, 1, 1));
        }
        assert!(cache.entries.read().unwrap().len() <= 3);
    }
}

//! The newest reading of each recently asked-about user, kept in memory.
//!
//! `GET latest` is the hottest read (apps poll it); answering it from memory spares a
//! trip through the blocking pool. The cache is exact, not "eventually" right: a
//! reader never sees an older latest than one it, or anyone, saw before.
//! - Only this process writes the database file (the store holds an exclusive lock
//!   file), through one writer thread.
//! - Just before the writer commits, it takes the written users' entries out of the
//!   cache and marks their stripes "write in progress" (odd generation); after the
//!   commit it puts back the newer of the old entry and what it wrote, and marks the
//!   stripes settled (even). While a write is in progress its users are read from
//!   the database, which answers either the old or the new state, never a mix.
//! - A reader that missed fills the cache only if its stripe was settled when it
//!   looked and no write began since (generation counters, striped by user so that
//!   steady ingest for other users does not keep a cold user out of the cache), so it
//!   can never put back an older reading.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use crate::domain::StoredReading;

const STRIPES: usize = 256;

type Entries = HashMap<String, Arc<StoredReading>>;

pub struct LatestCache {
    entries: RwLock<Entries>,
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

    fn stripe_of(user: &str) -> usize {
        let mut h = DefaultHasher::new();
        user.hash(&mut h);
        (h.finish() as usize) % STRIPES
    }

    fn lock(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
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
        Generation(self.generations[Self::stripe_of(user)].load(Ordering::Acquire))
    }

    /// Fills a missing entry with what the database returned, unless a write for
    /// this user (or one sharing its stripe) was in progress when `seen` was taken
    /// or began since.
    pub fn fill(&self, seen: Generation, reading: &StoredReading) {
        let user = reading.reading.user_id.as_str();
        let mut entries = self.lock();
        let now = self.generation(user);
        if now != seen || now.0 % 2 == 1 || entries.contains_key(user) {
            return;
        }
        self.insert_bounded(&mut entries, Arc::new(reading.clone()));
    }

    fn insert_bounded(&self, entries: &mut Entries, reading: Arc<StoredReading>) {
        if entries.len() >= self.capacity {
            // Bounded memory: drop an arbitrary entry; it is refilled on demand.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(reading.reading.user_id.as_str().to_owned(), reading);
    }

    /// Called by the writer, holding the writer lock, just before it commits writes
    /// for `users`. Until the returned guard is dropped those users are answered by
    /// the database and no reader may fill them.
    pub fn begin_write<'a>(&self, users: impl Iterator<Item = &'a str>) -> PendingWrite<'_> {
        let mut stripes: Vec<usize> = Vec::new();
        let mut taken = Vec::new();
        let mut entries = self.lock();
        for user in users {
            let stripe = Self::stripe_of(user);
            if !stripes.contains(&stripe) {
                stripes.push(stripe);
                self.generations[stripe].fetch_add(1, Ordering::AcqRel);
            }
            if let Some(cached) = entries.remove(user) {
                taken.push(cached);
            }
        }
        PendingWrite {
            cache: self,
            stripes,
            taken,
        }
    }
}

/// A write between "about to commit" and "committed"; dropping it without
/// [`PendingWrite::committed`] (a failed commit) leaves its users uncached.
pub struct PendingWrite<'a> {
    cache: &'a LatestCache,
    stripes: Vec<usize>,
    taken: Vec<Arc<StoredReading>>,
}

impl PendingWrite<'_> {
    /// After a successful commit: users that were cached get the newer of their old
    /// entry and the newest reading written for them (a replacement at the same
    /// instant wins, being the newer version).
    pub fn committed(mut self, written: &[StoredReading]) {
        if self.taken.is_empty() {
            return;
        }
        let written: HashMap<&str, &StoredReading> = written
            .iter()
            .map(|w| (w.reading.user_id.as_str(), w))
            .collect();
        let mut entries = self.cache.lock();
        for old in std::mem::take(&mut self.taken) {
            let newest = match written.get(old.reading.user_id.as_str()) {
                Some(w) if w.reading.timestamp >= old.reading.timestamp => Arc::new((*w).clone()),
                _ => old,
            };
            self.cache.insert_bounded(&mut entries, newest);
        }
        drop(entries); // before Drop settles the stripes, which locks again
    }
}

impl Drop for PendingWrite<'_> {
    fn drop(&mut self) {
        // Under the entries lock, so that a fill sees either the odd generation or
        // the restored entries, never a settled stripe with entries missing.
        let _entries = self.cache.lock();
        for &stripe in &self.stripes {
            self.cache.generations[stripe].fetch_add(1, Ordering::AcqRel);
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

    /// A write as the store makes it: begin, commit, publish.
    fn write(cache: &LatestCache, written: &[StoredReading]) {
        let users: Vec<&str> = written.iter().map(|w| w.reading.user_id.as_str()).collect();
        cache.begin_write(users.into_iter()).committed(written);
    }

    #[test]
    fn a_fill_racing_a_commit_is_dropped() {
        let cache = LatestCache::new(10);
        // Reader notes the generation, reads v1 from the database...
        let seen = cache.generation("u1");
        let from_db = stored("u1", 100, 1);
        // ...meanwhile the writer commits v2 (not cached yet, so nothing to update)...
        write(&cache, &[stored("u1", 100, 2)]);
        // ...and the reader's stale fill must not land.
        cache.fill(seen, &from_db);
        assert!(cache.get("u1").is_none());
        // A fresh read after the commit fills normally.
        cache.fill(cache.generation("u1"), &stored("u1", 100, 2));
        assert_eq!(cache.get("u1").unwrap().version, 2);
    }

    #[test]
    fn no_fill_and_no_stale_hit_while_a_commit_is_in_flight() {
        let cache = LatestCache::new(10);
        cache.fill(cache.generation("u1"), &stored("u1", 100, 1));
        // The writer is about to commit a newer reading: the cached entry must not be
        // served while the database may already hold the newer one.
        let pending = cache.begin_write(["u1"].into_iter());
        assert!(cache.get("u1").is_none());
        // A reader that looks now reads the database (old or new state); it may not
        // put either back, nor may one that looked before the write began.
        let during = cache.generation("u1");
        cache.fill(during, &stored("u1", 100, 1));
        assert!(cache.get("u1").is_none());
        pending.committed(&[stored("u1", 200, 1)]);
        assert_eq!(
            cache.get("u1").unwrap().reading.timestamp.unix_seconds(),
            200
        );
        cache.fill(during, &stored("u1", 100, 1));
        assert_eq!(
            cache.get("u1").unwrap().reading.timestamp.unix_seconds(),
            200
        );
    }

    #[test]
    fn a_failed_commit_leaves_the_user_uncached_and_fillable() {
        let cache = LatestCache::new(10);
        cache.fill(cache.generation("u1"), &stored("u1", 100, 1));
        drop(cache.begin_write(["u1"].into_iter()));
        assert!(cache.get("u1").is_none());
        cache.fill(cache.generation("u1"), &stored("u1", 100, 1));
        assert_eq!(cache.get("u1").unwrap().version, 1);
    }

    #[test]
    fn commits_update_cached_entries_only_forward() {
        let cache = LatestCache::new(10);
        cache.fill(cache.generation("u1"), &stored("u1", 100, 1));
        write(&cache, &[stored("u1", 50, 1)]);
        assert_eq!(
            cache.get("u1").unwrap().reading.timestamp.unix_seconds(),
            100
        );
        write(&cache, &[stored("u1", 100, 2)]);
        assert_eq!(cache.get("u1").unwrap().version, 2);
        write(&cache, &[stored("u1", 200, 1)]);
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
            .filter(|u| LatestCache::stripe_of(u) != LatestCache::stripe_of("cold"))
            .collect();
        for u in &others {
            write(&cache, &[stored(u, 1, 1)]);
        }
        cache.fill(seen, &stored("cold", 1, 1));
        assert!(cache.get("cold").is_some());
        for u in others.iter().take(5) {
            cache.fill(cache.generation(u), &stored(u, 1, 1));
        }
        assert!(cache.entries.read().unwrap().len() <= 3);
    }
}

//! When each connected user is polled: once per POLL_INTERVAL_SECONDS, at the
//! user's slot plus up to 10% jitter, with backoff after failed syncs. Slots lie
//! on a wall-clock grid: the user's phase (a hash of the id, spread evenly over
//! the interval) after each whole multiple of the interval since the Unix epoch.
//! Every instance computes the same slots, so instances sharing a store plan a
//! user's poll within the jitter of one another and the store coalesces them
//! into one job (rhythms kept per process would drift apart until a user was
//! polled twice an interval). A restart with many users is no thundering herd:
//! phases spread them over the interval.
//!
//! `Plan` is the pure timetable (tested on paused time); `Scheduler` feeds it
//! the connected users and queues a job for each due one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::SyncEngine;
use crate::domain::UserId;
use crate::records::connections::{ConnectionStatus, Provider};
use crate::records::jobs::{Created, NewJob, Trigger};

/// The jitter added to each slot: up to this fraction of the interval.
pub const JITTER: f64 = 0.1;
/// Consecutive failures double the delay up to this many intervals.
const MAX_BACKOFF_INTERVALS: u32 = 8;
/// Seeds the hash that places each user's phase within the interval.
const PHASE_SEED: u64 = 0x0063_676d_2d68_7562;
/// How often the set of connected users is read again.
const REFRESH: Duration = Duration::from_secs(60);

/// A time on the plan's clock: nanoseconds after its anchor (negative before).
/// Signed, because a slot can lie before the process started.
type Nanos = i128;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The slot this poll belongs to (on the grid).
    slot: Nanos,
    /// When it is queued: the slot plus jitter.
    due: Instant,
    failures: u32,
}

/// The timetable: when each user is next due.
pub struct Plan {
    interval: Duration,
    /// The plan's clock: this instant is `anchor_into` past a grid line (a whole
    /// multiple of the interval since the Unix epoch).
    anchor: Instant,
    anchor_into: Duration,
    entries: HashMap<UserId, Entry>,
    /// Due times, soonest first; an item whose time no longer matches its
    /// entry's is stale and skipped.
    queue: BinaryHeap<Reverse<(Instant, UserId)>>,
    rng: StdRng,
}

impl Plan {
    /// A plan on the wall-clock grid, as every instance computes it.
    pub fn new(interval: Duration, seed: u64) -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let period = interval.as_nanos().max(1);
        let into = u64::try_from(since_epoch.as_nanos() % period).unwrap_or(0);
        Self::with_clock(interval, seed, Instant::now(), Duration::from_nanos(into))
    }

    /// A plan whose grid has a line `anchor_into` before `anchor` (tests place
    /// the grid where they want it).
    pub fn with_clock(
        interval: Duration,
        seed: u64,
        anchor: Instant,
        anchor_into: Duration,
    ) -> Self {
        Self {
            interval,
            anchor,
            anchor_into,
            entries: HashMap::new(),
            queue: BinaryHeap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, user: &UserId) -> bool {
        self.entries.contains_key(user)
    }

    /// When `user` is next due, if planned.
    pub fn due(&self, user: &UserId) -> Option<Instant> {
        self.entries.get(user).map(|e| e.due)
    }

    /// The user's fixed phase within the interval: a hash of the id mapped onto
    /// `[0, interval)`, so phases are spread evenly and stay put across restarts.
    pub fn phase(&self, user: &UserId) -> Duration {
        // A fixed-seed hasher: the same id gets the same phase in every process
        // of one build (a foldhash upgrade may move phases once; harmless).
        let hash = foldhash::fast::FixedState::with_seed(PHASE_SEED).hash_one(user.as_str());
        let fraction = (hash >> 11) as f64 / (1u64 << 53) as f64;
        self.interval.mul_f64(fraction)
    }

    fn period(&self) -> Nanos {
        self.interval.as_nanos().max(1) as Nanos
    }

    fn nanos(d: Duration) -> Nanos {
        d.as_nanos() as Nanos
    }

    /// `t` on the plan's clock.
    fn at(&self, t: Instant) -> Nanos {
        if t >= self.anchor {
            Self::nanos(t - self.anchor)
        } else {
            -Self::nanos(self.anchor - t)
        }
    }

    /// The instant of `n`; times before the anchor (all past) become the anchor.
    fn instant(&self, n: Nanos) -> Instant {
        self.anchor + Duration::from_nanos(u64::try_from(n.max(0)).unwrap_or(u64::MAX))
    }

    /// The first slot of `user` at or after `from`.
    fn slot_from(&self, user: &UserId, from: Nanos) -> Nanos {
        // Slots are where (time + anchor_into - phase) is a multiple of the period.
        let position = from + Self::nanos(self.anchor_into) - Self::nanos(self.phase(user));
        from + (-position).rem_euclid(self.period())
    }

    fn jitter(&mut self) -> Nanos {
        Self::nanos(self.interval.mul_f64(self.rng.random_range(0.0..JITTER)))
    }

    fn set(&mut self, user: UserId, slot: Nanos, due: Nanos, failures: u32) {
        let due = self.instant(due);
        self.queue.push(Reverse((due, user.clone())));
        self.entries.insert(
            user,
            Entry {
                slot,
                due,
                failures,
            },
        );
    }

    /// Plans a user not planned yet. `since_last_sync`: how long ago it last
    /// synced, if ever. A user synced within the last interval is due at its
    /// first slot at least half an interval after that sync (plus jitter; at
    /// once if that slot passed while the process was down); the others at
    /// their next slot, which spreads them evenly over the coming interval.
    pub fn add(&mut self, user: UserId, now: Instant, since_last_sync: Option<Duration>) {
        if self.entries.contains_key(&user) {
            return;
        }
        let now = self.at(now);
        let half = Self::nanos(self.interval / 2);
        match since_last_sync {
            Some(ago) if ago < self.interval => {
                let slot = self.slot_from(&user, now - Self::nanos(ago) + half);
                let due = slot + self.jitter();
                self.set(user, slot, due, 0);
            }
            _ => {
                let slot = self.slot_from(&user, now);
                self.set(user, slot, slot, 0);
            }
        }
    }

    /// Forgets users who are no longer connected.
    pub fn retain(&mut self, connected: &HashSet<UserId>) {
        self.entries.retain(|user, _| connected.contains(user));
        if self.queue.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.queue
                .retain(|Reverse((due, user))| entries.get(user).is_some_and(|e| e.due == *due));
        }
    }

    /// The soonest due time.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((due, user))) = self.queue.peek() {
            if self.entries.get(user).is_some_and(|e| e.due == *due) {
                return Some(*due);
            }
            self.queue.pop();
        }
        None
    }

    /// Users due at `now`, each planned again at its next slot (plus fresh
    /// jitter), so periods do not drift with processing time. A user that fell
    /// more than an interval behind gets its first slot half an interval from
    /// `now`, not one poll per missed slot.
    pub fn pop_due(&mut self, now: Instant) -> Vec<UserId> {
        let mut due_users = Vec::new();
        let now_at = self.at(now);
        while let Some(due) = self.next_due() {
            if due > now {
                break;
            }
            let Some(Reverse((_, user))) = self.queue.pop() else {
                break;
            };
            let Some(entry) = self.entries.get(&user).copied() else {
                continue;
            };
            let next = if now_at - entry.slot > self.period() {
                self.slot_from(&user, now_at + Self::nanos(self.interval / 2))
            } else {
                entry.slot + self.period()
            };
            let due = next + self.jitter();
            self.set(user.clone(), next, due, entry.failures);
            due_users.push(user);
        }
        due_users
    }

    /// A sync of `user` failed for good: try again at its first slot after a
    /// delay that doubles with each consecutive failure (one interval, two,
    /// four, ... at most eight).
    pub fn failed(&mut self, user: &UserId, now: Instant) {
        let Some(entry) = self.entries.get(user).copied() else {
            return;
        };
        let failures = entry.failures.saturating_add(1);
        let slot = self.slot_from(user, self.at(now) + Self::nanos(self.backoff(failures)));
        let due = slot + self.jitter();
        self.set(user.clone(), slot, due, failures);
    }

    /// A sync of `user` succeeded: back to the regular period.
    pub fn succeeded(&mut self, user: &UserId) {
        if let Some(entry) = self.entries.get_mut(user) {
            entry.failures = 0;
        }
    }

    /// The delay after `failures` consecutive failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            << failures
                .saturating_sub(1)
                .min(MAX_BACKOFF_INTERVALS.ilog2());
        self.interval * factor.min(MAX_BACKOFF_INTERVALS)
    }
}

/// Feeds one plan per registered provider with its connected users and queues
/// a scheduled job for each due one. Several instances may run on one store: a
/// user with a job queued or running, or polled within half an interval, gets
/// no second job.
pub struct Scheduler {
    engine: Arc<SyncEngine>,
    plans: Vec<(Provider, Plan)>,
}

impl Scheduler {
    pub fn new(engine: Arc<SyncEngine>) -> Self {
        let interval = engine.settings().interval;
        let plans = engine
            .sources()
            .providers()
            .into_iter()
            .map(|p| (p, Plan::new(interval, rand::random())))
            .collect();
        Self { engine, plans }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut finished = self.engine.subscribe();
        let mut refresh = tokio::time::interval(REFRESH.min(self.engine.settings().interval));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self
                .plans
                .iter_mut()
                .filter_map(|(_, plan)| plan.next_due())
                .min()
                .unwrap_or_else(|| Instant::now() + REFRESH);
            tokio::select! {
                _ = refresh.tick() => self.refresh().await,
                _ = tokio::time::sleep_until(next) => self.queue_due().await,
                ended = finished.recv() => match ended {
                    Ok(f) if f.trigger == Trigger::Scheduled => {
                        // A run names its user, not its provider: every plan
                        // that polls the user hears of it.
                        for (_, plan) in self.plans.iter_mut().filter(|(_, p)| p.contains(&f.user)) {
                            if f.succeeded {
                                plan.succeeded(&f.user);
                            } else {
                                plan.failed(&f.user, Instant::now());
                            }
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            }
        }
    }

    async fn refresh(&mut self) {
        for (provider, plan) in &mut self.plans {
            let connected = match self
                .engine
                .connections()
                .connections_with_status(*provider, ConnectionStatus::Connected)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%provider, error = %e, "scheduler cannot list connected users");
                    return;
                }
            };
            let now = Instant::now();
            let wall = Utc::now();
            let mut users = HashSet::with_capacity(connected.len());
            for c in connected {
                let since = c.last_sync_at.and_then(|at| (wall - at).to_std().ok());
                plan.add(c.user_id.clone(), now, since);
                users.insert(c.user_id);
            }
            plan.retain(&users);
        }
        let scheduled: usize = self.plans.iter().map(|(_, p)| p.len()).sum();
        metrics::gauge!("sync_scheduled_users").set(scheduled as f64);
    }

    async fn queue_due(&mut self) {
        let coalesce = chrono::Duration::from_std(self.engine.settings().interval / 2)
            .unwrap_or(chrono::Duration::MAX);
        for (provider, plan) in &mut self.plans {
            for user in plan.pop_due(Instant::now()) {
                let job = NewJob::new(
                    user.clone(),
                    *provider,
                    Trigger::Scheduled,
                    None,
                    Utc::now(),
                );
                match self.engine.submit(job, Some(coalesce)).await {
                    Ok(Created::Coalesced) => {
                        metrics::counter!("sync_polls_coalesced_total").increment(1);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(user_id = %user, %provider, error = %e, "cannot queue a scheduled sync");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(900);

    fn users(n: usize) -> Vec<UserId> {
        (0..n)
            .map(|i| UserId::parse(&format!("user-{i}")).unwrap())
            .collect()
    }

    /// Pops everything due until `until`, advancing paused time to each due
    /// instant, and returns (user, when) in order.
    async fn run_until(plan: &mut Plan, until: Instant) -> Vec<(UserId, Instant)> {
        let mut fired = Vec::new();
        while let Some(due) = plan.next_due() {
            if due > until {
                break;
            }
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            fired.extend(plan.pop_due(now).into_iter().map(|u| (u, now)));
        }
        fired
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_with_many_users_is_spread_evenly_over_one_interval() {
        let start = Instant::now();
        let mut plan = Plan::with_clock(INTERVAL, 7, start, Duration::ZERO);
        let all = users(100_000);
        for u in &all {
            plan.add(u.clone(), start, None);
        }
        // Each tenth of the interval gets about a tenth of the users.
        let mut buckets = [0usize; 10];
        for u in &all {
            let offset = plan.due(u).unwrap() - start;
            assert!(offset < INTERVAL);
            buckets[(offset.as_secs_f64() / INTERVAL.as_secs_f64() * 10.0) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!((9_500..=10_500).contains(n), "bucket {i}: {n} users");
        }
        // And the busiest second of the first interval holds few of them.
        let fired = run_until(&mut plan, start + INTERVAL).await;
        assert_eq!(
            fired.len(),
            all.len(),
            "everyone is polled within one interval"
        );
        let mut per_second = HashMap::new();
        for (_, at) in &fired {
            *per_second.entry((*at - start).as_secs()).or_insert(0usize) += 1;
        }
        let busiest = per_second.values().max().copied().unwrap_or(0);
        assert!(busiest < 200, "{busiest} polls in one second (mean 111)");
    }

    #[test]
    fn phases_are_stable_across_plans() {
        let a = Plan::new(INTERVAL, 1);
        let b = Plan::new(INTERVAL, 2);
        for u in users(50) {
            assert_eq!(
                a.phase(&u),
                b.phase(&u),
                "a restart keeps each user's phase"
            );
        }
    }

    /// Where `at` falls after `user`'s slot: (which slot, how far past it).
    fn slot_of(plan: &Plan, start: Instant, user: &UserId, at: Instant) -> (u64, Duration) {
        let since = (at - start).saturating_sub(plan.phase(user));
        let k = since.as_nanos() / INTERVAL.as_nanos();
        (k as u64, since - INTERVAL * k as u32)
    }

    #[tokio::test(start_paused = true)]
    async fn each_user_is_polled_once_per_interval_within_the_jitter_of_its_slot() {
        let start = Instant::now();
        let mut plan = Plan::with_clock(INTERVAL, 11, start, Duration::ZERO);
        let all = users(200);
        for u in &all {
            plan.add(u.clone(), start, None);
        }
        let fired = run_until(&mut plan, start + INTERVAL * 10).await;
        let mut times: HashMap<UserId, Vec<Instant>> = HashMap::new();
        for (u, at) in fired {
            times.entry(u).or_default().push(at);
        }
        let mut jitters = Vec::new();
        for u in &all {
            let t = &times[u];
            let slots: Vec<u64> = t.iter().map(|at| slot_of(&plan, start, u, *at).0).collect();
            assert_eq!(
                slots,
                (0..slots.len() as u64).collect::<Vec<_>>(),
                "{u}: one poll per slot"
            );
            assert!((9..=10).contains(&t.len()), "{u}: {} polls", t.len());
            for at in t {
                let (_, past) = slot_of(&plan, start, u, *at);
                assert!(
                    past <= INTERVAL.mul_f64(JITTER),
                    "{u}: {past:?} after its slot"
                );
                jitters.push(past.as_secs_f64());
            }
            for pair in t.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    gap >= INTERVAL.mul_f64(1.0 - JITTER),
                    "{u}: polled again after {gap:?}"
                );
                assert!(gap <= INTERVAL.mul_f64(1.0 + JITTER), "{u}: waited {gap:?}");
            }
        }
        // The jitter is spread over its whole range, not stuck at one value
        // (the first poll of each user is at its slot exactly).
        let max = JITTER * INTERVAL.as_secs_f64();
        let low = jitters.iter().filter(|j| **j < max / 4.0).count();
        let high = jitters.iter().filter(|j| **j > max * 3.0 / 4.0).count();
        assert!(
            low > jitters.len() / 8 && high > jitters.len() / 8,
            "{low} low, {high} high of {}",
            jitters.len()
        );
    }

    /// Two instances started at different times, with their own random jitter,
    /// plan every poll of a user within the jitter of each other, forever: the
    /// store can coalesce them into one. (Per-process rhythms drifted apart.)
    #[tokio::test(start_paused = true)]
    async fn two_instances_plan_each_poll_within_the_jitter_of_each_other() {
        let start = Instant::now();
        let all = users(100);
        let mut a = Plan::with_clock(INTERVAL, 1, start, Duration::ZERO);
        for u in &all {
            a.add(u.clone(), start, None);
        }
        // The second process starts 123.4 s later; its clock shows where it is
        // on the same wall-clock grid.
        tokio::time::advance(Duration::from_millis(123_400)).await;
        let b_start = Instant::now();
        let mut b = Plan::with_clock(INTERVAL, 2, b_start, Duration::from_millis(123_400));
        for u in &all {
            b.add(u.clone(), b_start, None);
        }
        let until = start + INTERVAL * 200;
        let mut polls: HashMap<(UserId, u64), Vec<Instant>> = HashMap::new();
        loop {
            let next = [a.next_due(), b.next_due()].into_iter().flatten().min();
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            tokio::time::sleep_until(next).await;
            let now = Instant::now();
            for plan in [&mut a, &mut b] {
                for u in plan.pop_due(now) {
                    let (slot, _) = slot_of(plan, start, &u, now);
                    polls.entry((u, slot)).or_default().push(now);
                }
            }
        }
        let mut both = 0;
        for ((u, slot), times) in &polls {
            assert!(times.len() <= 2, "{u} slot {slot}: {times:?}");
            if let [x, y] = times[..] {
                let apart = if x > y { x - y } else { y - x };
                assert!(
                    apart <= INTERVAL.mul_f64(JITTER),
                    "{u} slot {slot}: {apart:?} apart"
                );
                both += 1;
            }
        }
        // After B's first interval, both plan every slot of every user.
        assert!(both >= all.len() * 198, "{both} slots planned by both");
    }

    #[tokio::test(start_paused = true)]
    async fn a_recent_sync_is_not_repeated_within_half_an_interval_after_a_restart() {
        let start = Instant::now();
        let mut plan = Plan::with_clock(INTERVAL, 3, start, Duration::ZERO);
        let half = INTERVAL / 2;
        for (i, u) in users(200).into_iter().enumerate() {
            // Last synced 0 to 900 s before the restart.
            let ago = Duration::from_secs((i as u64 * 37) % 900);
            plan.add(u.clone(), start, Some(ago));
            let due = plan.due(&u).unwrap();
            // Either at least half an interval after that sync, or at once (its
            // slot passed while the process was down) when that is already so.
            if due > start {
                assert!(
                    (due - start) + ago >= half,
                    "{u}: due {:?} after a sync {ago:?} ago",
                    due - start
                );
                assert!((due - start) + ago <= half + INTERVAL.mul_f64(1.0 + JITTER));
                let (_, past) = slot_of(&plan, start, &u, due);
                assert!(past <= INTERVAL.mul_f64(JITTER), "{u}: off its slot");
            } else {
                assert!(ago >= half, "{u}: polled again {ago:?} after a sync");
            }
        }
        // Long ago (or never): at its slot.
        let v = UserId::parse("stale").unwrap();
        plan.add(v.clone(), start, Some(INTERVAL * 5));
        assert_eq!(plan.due(&v).unwrap() - start, plan.phase(&v));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_then_reset_on_success() {
        let start = Instant::now();
        let mut plan = Plan::with_clock(INTERVAL, 5, start, Duration::ZERO);
        let u = UserId::parse("flaky").unwrap();
        plan.add(u.clone(), start, None);
        let mut delays = Vec::new();
        for _ in 0..6 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let now = Instant::now();
            plan.failed(&u, now);
            delays.push((plan.due(&u).unwrap() - now).as_secs_f64() / INTERVAL.as_secs_f64());
        }
        // 1, 2, 4, 8, 8, 8 intervals, then the next slot (plus up to 10% jitter).
        for (delay, want) in delays.iter().zip([1.0, 2.0, 4.0, 8.0, 8.0, 8.0]) {
            assert!(
                *delay >= want && *delay <= want + 1.0 + JITTER,
                "{delays:?}"
            );
        }
        plan.succeeded(&u);
        let now = Instant::now();
        plan.failed(&u, now);
        let after_reset = (plan.due(&u).unwrap() - now).as_secs_f64() / INTERVAL.as_secs_f64();
        assert!(after_reset < 2.0 + JITTER, "{after_reset}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_far_behind_is_planned_from_now_and_removed_users_stop() {
        let start = Instant::now();
        let mut plan = Plan::with_clock(INTERVAL, 9, start, Duration::ZERO);
        let all = users(3);
        for u in &all {
            plan.add(u.clone(), start, None);
        }
        // The process was stalled for three intervals: one poll each, not three.
        tokio::time::advance(INTERVAL * 4).await;
        let now = Instant::now();
        assert_eq!(plan.pop_due(now).len(), 3);
        assert!(plan.pop_due(now).is_empty());
        for u in &all {
            assert!(plan.due(u).unwrap() >= now + INTERVAL / 2);
        }
        // Disconnected users leave the plan.
        plan.retain(&all[..1].iter().cloned().collect());
        assert_eq!(plan.len(), 1);
        assert!(!plan.contains(&all[1]));
        let fired = run_until(&mut plan, now + INTERVAL * 3).await;
        assert!(fired.iter().all(|(u, _)| u == &all[0]));
    }
}

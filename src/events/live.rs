//! Per-user live streams (`GET /api/users/{id}/stream`): a registry of the
//! streams this instance holds, fed by one `Subscriber` that turns the
//! `reading.*` and `alert.*` events the hub sees (this instance's and, with
//! RabbitMQ, every other instance's) into stream events, and the replay of what
//! a reconnecting client missed, read back from the store.
//!
//! Every stream event has an `EventKey`: when the change was stored, plus a
//! tiebreak, computed the same way from a live event (after reading the
//! reading back) and from the store, so a replay after `Last-Event-ID` and the
//! live events that follow it meet without a gap or a duplicate.
//!
//! Each stream has a bounded queue (STREAM_BUFFER_EVENTS). Fanning out never
//! waits: a stream whose queue is full is closed (its client reconnects with
//! `Last-Event-ID` and is replayed what it missed), so a slow client delays
//! neither ingest nor the other streams.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Subscriber;
use crate::config::StreamSettings;
use crate::domain::{StoredReading, UserId};
use crate::records::alerts::{Alert, AlertQuery, AlertStatus};
use crate::records::events::Message;
use crate::store::query::{Order, Scan};
use crate::store::{Store, StoreError};

/// How far back a replay reaches.
pub const REPLAY_WINDOW: Duration = Duration::hours(24);
/// Alerts raised this long before a reconnect are looked at for changes
/// (acknowledged, resolved) to replay, besides every open alert.
const REPLAY_ALERTS_RAISED_WITHIN: Duration = Duration::days(7);
/// Most readings and alerts one replay reads back.
const REPLAY_MAX_READINGS: usize = 10_000;
const REPLAY_MAX_ALERTS: usize = 1_000;
/// A live `alert.raised` whose event happened this long after the alert's
/// `raised_at` is a re-raise after a snooze (see `EventKey::of_alert_event`).
const RERAISE_AFTER: Duration = Duration::seconds(60);
/// Keys the subscriber remembers having fanned out, so two events that read
/// back the same stored version (an update read back before its own event
/// arrived) send it once.
const REMEMBERED: usize = 4096;

/// Where a stream event stands in the order of changes, and its SSE `id`:
/// `<ms>-r<reading unix seconds>` for a reading stored (inserted or updated) at
/// `ms`, `<ms>-a<alert id><a|k|r>` for an alert raised, acknowledged or
/// resolved at `ms` (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    pub ms: i64,
    pub tie: Tie,
}

/// Within one millisecond a reading comes before an alert change: an alert
/// is evaluated after the readings it looks at are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tie {
    Reading(i64),
    Alert(Uuid, u8),
}

impl EventKey {
    pub fn of_reading(r: &StoredReading) -> Self {
        Self {
            ms: r.updated_at.timestamp_millis(),
            tie: Tie::Reading(r.reading.timestamp.unix_seconds()),
        }
    }

    /// The key of an alert's current state, from the time of its last change
    /// as stored.
    pub fn of_alert(a: &Alert) -> Self {
        let (at, code) = match a.status {
            AlertStatus::Active => (a.raised_at, b'a'),
            AlertStatus::Acknowledged => (a.acknowledged_at.unwrap_or(a.raised_at), b'k'),
            AlertStatus::Resolved => (a.resolved_at.unwrap_or(a.raised_at), b'r'),
        };
        Self {
            ms: at.timestamp_millis(),
            tie: Tie::Alert(a.id, code),
        }
    }

    /// The key of a live alert event. A re-raise after a snooze keeps the
    /// alert's `raised_at` and the store keeps no time of the re-raise, so it
    /// takes the event's time (it is not replayed: see docs/alerts.md).
    fn of_alert_event(a: &Alert, occurred_at: DateTime<Utc>) -> Self {
        let key = Self::of_alert(a);
        if a.status == AlertStatus::Active && occurred_at - a.raised_at > RERAISE_AFTER {
            return Self {
                ms: occurred_at.timestamp_millis(),
                ..key
            };
        }
        key
    }

    /// The key just before everything stored at `at` or later.
    pub fn before(at: DateTime<Utc>) -> Self {
        Self {
            ms: at.timestamp_millis() - 1,
            tie: Tie::Alert(Uuid::max(), u8::MAX),
        }
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tie {
            Tie::Reading(ts) => write!(f, "{}-r{}", self.ms, ts),
            Tie::Alert(id, code) => write!(f, "{}-a{}{}", self.ms, id.simple(), code as char),
        }
    }
}

/// An `id` this service did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream event id (ids look like 1733565600123-r1733565300)")]
pub struct BadEventKey;

impl FromStr for EventKey {
    type Err = BadEventKey;

    fn from_str(s: &str) -> Result<Self, BadEventKey> {
        let (ms, rest) = s.split_once('-').ok_or(BadEventKey)?;
        let ms: i64 = ms.parse().map_err(|_| BadEventKey)?;
        let tie = if let Some(ts) = rest.strip_prefix('r') {
            Tie::Reading(ts.parse().map_err(|_| BadEventKey)?)
        } else if let Some(alert) = rest.strip_prefix('a') {
            if alert.len() != 33 || !alert.is_ascii() {
                return Err(BadEventKey);
            }
            let (id, code) = alert.split_at(32);
            let code = match code {
                "a" | "k" | "r" => code.as_bytes()[0],
                _ => return Err(BadEventKey),
            };
            Tie::Alert(Uuid::try_parse(id).map_err(|_| BadEventKey)?, code)
        } else {
            return Err(BadEventKey);
        };
        Ok(Self { ms, tie })
    }
}

/// What a stream event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveItem {
    Reading(StoredReading),
    Alert(Alert),
}

impl LiveItem {
    /// The SSE `event` name.
    pub fn event_name(&self) -> &'static str {
        match self {
            LiveItem::Reading(_) => "reading",
            LiveItem::Alert(_) => "alert",
        }
    }
}

/// Renders an item as the JSON its HTTP endpoint returns (the API layer's
/// views, handed down when the registry is built).
pub type Render = fn(&LiveItem) -> String;

/// One stream event, rendered once and shared by every stream of the user.
#[derive(Debug)]
pub struct LiveEvent {
    pub key: EventKey,
    pub name: &'static str,
    /// The `data` line: the reading or alert JSON.
    pub data: String,
}

/// Why a stream cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("too many open streams for this user (at most {0})")]
    PerUser(usize),
    #[error("too many open streams on this instance (at most {0})")]
    Total(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Slot {
    id: u64,
    sender: mpsc::Sender<Arc<LiveEvent>>,
}

#[derive(Default)]
struct Registry {
    streams: HashMap<UserId, Vec<Slot>>,
    total: usize,
}

impl Registry {
    fn remove(&mut self, user: &UserId, id: u64) -> bool {
        let Some(slots) = self.streams.get_mut(user) else {
            return false;
        };
        let before = slots.len();
        slots.retain(|s| s.id != id);
        let removed = before != slots.len();
        if slots.is_empty() {
            self.streams.remove(user);
        }
        if removed {
            self.total -= 1;
        }
        removed
    }
}

#[derive(Default)]
struct Recent {
    keys: HashSet<EventKey>,
    order: VecDeque<EventKey>,
}

impl Recent {
    fn first_time(&mut self, key: EventKey) -> bool {
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
        true
    }
}

/// The streams this instance holds, and the subscriber that feeds them.
pub struct LiveStreams {
    store: Arc<dyn Store>,
    settings: StreamSettings,
    render: Render,
    registry: Mutex<Registry>,
    recent: Mutex<Recent>,
    next_id: AtomicU64,
    closing: AtomicBool,
}

/// One open stream: the events for it, in the order they arrived. Dropping it
/// unregisters the stream.
pub struct LiveStream {
    pub receiver: mpsc::Receiver<Arc<LiveEvent>>,
    registration: Registration,
}

impl LiveStream {
    pub fn user(&self) -> &UserId {
        &self.registration.user
    }
}

struct Registration {
    streams: Arc<LiveStreams>,
    user: UserId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = self.streams.lock().remove(&self.user, self.id);
        if removed {
            metrics::gauge!("live_streams_open").decrement(1.0);
        }
    }
}

impl LiveStreams {
    pub fn new(store: Arc<dyn Store>, settings: StreamSettings, render: Render) -> Arc<Self> {
        Arc::new(Self {
            store,
            settings,
            render,
            registry: Mutex::default(),
            recent: Mutex::default(),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        })
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent through a panic of a holder: every
        // change is a single insert or removal.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many streams are open on this instance.
    pub fn open_streams(&self) -> usize {
        self.lock().total
    }

    /// Registers a stream of `user`: from now on it receives every event of
    /// the user this instance sees. Refused beyond the limits.
    pub fn open(self: &Arc<Self>, user: &UserId) -> Result<LiveStream, OpenError> {
        if self.closing.load(AtomicOrdering::Acquire) {
            return Err(OpenError::ShuttingDown);
        }
        let (sender, receiver) = mpsc::channel(self.settings.buffer);
        let id = self.next_id.fetch_add(1, AtomicOrdering::Relaxed);
        {
            let mut registry = self.lock();
            if registry.total >= self.settings.max_total {
                return Err(OpenError::Total(self.settings.max_total));
            }
            let slots = registry.streams.entry(user.clone()).or_default();
            if slots.len() >= self.settings.max_per_user {
                return Err(OpenError::PerUser(self.settings.max_per_user));
            }
            slots.push(Slot { id, sender });
            registry.total += 1;
        }
        metrics::gauge!("live_streams_open").increment(1.0);
        Ok(LiveStream {
            receiver,
            registration: Registration {
                streams: self.clone(),
                user: user.clone(),
                id,
            },
        })
    }

    /// Ends every stream (each sends what it has queued first) and refuses new
    /// ones: at shutdown, so that open streams do not hold it up.
    pub fn close_all(&self) {
        self.closing.store(true, AtomicOrdering::Release);
        self.drop_all("shutdown");
    }

    fn drop_all(&self, why: &'static str) {
        let mut registry = self.lock();
        let n = registry.total;
        registry.streams.clear();
        registry.total = 0;
        drop(registry);
        if n > 0 {
            metrics::gauge!("live_streams_open").decrement(n as f64);
            metrics::counter!("live_streams_closed_total", "reason" => why).increment(n as u64);
        }
    }

    /// Hands `event` to every stream of `user`, never waiting: a stream whose
    /// queue is full (or whose client is gone) is closed.
    fn fan_out(&self, user: &UserId, event: Arc<LiveEvent>) {
        let mut registry = self.lock();
        let Some(slots) = registry.streams.get_mut(user) else {
            return;
        };
        let before = slots.len();
        let mut slow = 0u64;
        slots.retain(|slot| match slot.sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                slow += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        let removed = before - slots.len();
        if slots.is_empty() {
            registry.streams.remove(user);
        }
        registry.total -= removed;
        drop(registry);
        if removed > 0 {
            metrics::gauge!("live_streams_open").decrement(removed as f64);
        }
        if slow > 0 {
            metrics::counter!("live_streams_closed_total", "reason" => "slow").increment(slow);
            tracing::info!(user = %user, streams = slow,
                "closed live streams whose clients fell {} events behind", self.settings.buffer);
        }
        metrics::counter!("live_events_sent_total", "event" => event.name)
            .increment((before - removed) as u64);
    }

    fn has_streams(&self, user: &UserId) -> bool {
        self.lock().streams.contains_key(user)
    }

    fn event(&self, key: EventKey, item: &LiveItem) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            key,
            name: item.event_name(),
            data: (self.render)(item),
        })
    }

    /// What `user`'s streams missed after `after` (an id sent before), oldest
    /// first: readings stored (inserted or updated) after it whose timestamp is
    /// within `REPLAY_WINDOW` of `now`, and alert changes after it (raised,
    /// acknowledged, resolved), neither earlier than `now - REPLAY_WINDOW`.
    pub async fn replay(
        &self,
        user: &UserId,
        after: EventKey,
        now: DateTime<Utc>,
    ) -> Result<Vec<Arc<LiveEvent>>, StoreError> {
        let floor = EventKey::before(now - REPLAY_WINDOW);
        let after = after.max(floor);
        let readings = self
            .store
            .scan_readings(Scan {
                user_id: user.clone(),
                from: (now - REPLAY_WINDOW).timestamp(),
                until: (now + Duration::days(1)).timestamp(),
                order: Order::Asc,
                limit: REPLAY_MAX_READINGS,
            })
            .await?;
        let mut items: Vec<(EventKey, LiveItem)> = readings
            .into_iter()
            .map(|r| (EventKey::of_reading(&r), LiveItem::Reading(r)))
            .filter(|(k, _)| *k > after)
            .collect();
        let mut alerts = self.store.open_alerts(user).await?;
        alerts.extend(
            self.store
                .list_alerts(AlertQuery {
                    user_id: user.clone(),
                    status: None,
                    from: Some(now - REPLAY_ALERTS_RAISED_WITHIN),
                    until: None,
                    before: None,
                    limit: REPLAY_MAX_ALERTS,
                })
                .await?,
        );
        let mut seen = HashSet::new();
        for alert in alerts {
            if !seen.insert(alert.id) {
                continue;
            }
            let key = EventKey::of_alert(&alert);
            if key > after {
                items.push((key, LiveItem::Alert(alert)));
            }
        }
        items.sort_by_key(|(k, _)| *k);
        Ok(items
            .into_iter()
            .map(|(key, item)| self.event(key, &item))
            .collect())
    }

    /// The stream item an event announces: a reading read back as stored now
    /// (so it carries everything `GET /api/bg` shows), or the alert it carries.
    async fn item_of(&self, message: &Message) -> Option<(EventKey, LiveItem)> {
        let json = message.json();
        match message.routing_key.as_str() {
            "reading.created" | "reading.updated" => {
                let user = message.user_id()?.clone();
                let ts = json["data"]["timestamp"].as_str()?;
                let ts = DateTime::parse_from_rfc3339(ts).ok()?.timestamp();
                let found = self
                    .store
                    .scan_readings(Scan {
                        user_id: user,
                        from: ts,
                        until: ts + 1,
                        order: Order::Asc,
                        limit: 1,
                    })
                    .await;
                match found {
                    Ok(mut rows) => {
                        let r = rows.pop()?;
                        Some((EventKey::of_reading(&r), LiveItem::Reading(r)))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live stream: cannot read back a reading; its streams miss it until they reconnect");
                        metrics::counter!("live_event_failures_total").increment(1);
                        None
                    }
                }
            }
            "alert.raised" | "alert.acknowledged" | "alert.resolved" => {
                let alert: Alert = serde_json::from_value(json["data"].clone()).ok()?;
                let occurred_at = json["occurred_at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or(message.created_at, |t| t.with_timezone(&Utc));
                Some((
                    EventKey::of_alert_event(&alert, occurred_at),
                    LiveItem::Alert(alert),
                ))
            }
            _ => None,
        }
    }
}

fn is_streamed(routing_key: &str) -> bool {
    routing_key.starts_with("reading.") || routing_key.starts_with("alert.")
}

#[async_trait]
impl Subscriber for LiveStreams {
    fn name(&self) -> &'static str {
        "live streams"
    }

    async fn handle(&self, message: &Message) {
        // Cheap checks first: most events reach an instance with no stream of
        // their user, and reading a payload costs more than these.
        if self.lock().total == 0 || !is_streamed(&message.routing_key) {
            return;
        }
        let Some(user) = message.user_id().cloned() else {
            return;
        };
        if !self.has_streams(&user) {
            return;
        }
        let Some((key, item)) = self.item_of(message).await else {
            return;
        };
        let first = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time(key);
        if first {
            self.fan_out(&user, self.event(key, &item));
        }
    }

    /// Events were dropped before reaching us: every stream may have a gap, so
    /// all are closed; their clients reconnect with `Last-Event-ID` and are
    /// replayed what they missed from the store.
    async fn missed(&self, _count: u64) {
        self.drop_all("missed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_order_by_time_then_tiebreak() {
        let reading = EventKey {
            ms: 1_733_565_600_123,
            tie: Tie::Reading(1_733_565_300),
        };
        let alert = EventKey {
            ms: 1_733_565_600_123,
            tie: Tie::Alert(Uuid::new_v4(), b'k'),
        };
        for key in [reading, alert] {
            assert_eq!(key.to_string().parse::<EventKey>(), Ok(key));
        }
        assert_eq!(reading.to_string(), "1733565600123-r1733565300");
        assert!(reading < alert, "same millisecond: readings first");
        let later = EventKey {
            ms: reading.ms + 1,
            tie: Tie::Reading(0),
        };
        assert!(reading < later && alert < later);
        for bad in ["", "x", "12", "12-", "12-q1", "a-r1", "12-a123k", "12-r1.5"] {
            assert_eq!(bad.parse::<EventKey>(), Err(BadEventKey), "{bad:?}");
        }
    }

    #[test]
    fn before_is_below_everything_stored_at_that_instant() {
        let at = Utc::now();
        let key = EventKey::before(at);
        let stored_then = EventKey {
            ms: at.timestamp_millis(),
            tie: Tie::Reading(i64::MIN),
        };
        assert!(key < stored_then);
    }

    fn streams(buffer: usize, max_per_user: usize) -> (Arc<LiveStreams>, tempfile::TempDir) {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let store = crate::store::sqlite::SqliteStore::open(
            &dir.path().join("live.db"),
            crate::config::Durability::Normal,
        )
        .expect("store");
        let settings = StreamSettings {
            buffer,
            max_per_user,
            max_total: 3,
            ..StreamSettings::default()
        };
        (
            LiveStreams::new(Arc::new(store), settings, |i| i.event_name().to_owned()),
            dir,
        )
    }

    fn alert_event(live: &LiveStreams, user: &UserId, n: i64) -> Arc<LiveEvent> {
        let alert = Alert::raise(
            user,
            crate::records::alerts::AlertType::Low,
            Some(60),
            None,
            Utc::now(),
            "low".into(),
        );
        let key = EventKey {
            ms: n,
            tie: Tie::Alert(alert.id, b'a'),
        };
        live.event(key, &LiveItem::Alert(alert))
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_closed_and_the_others_keep_receiving() {
        let (live, _dir) = streams(2, 5);
        let user = UserId::parse("u").expect("valid");
        let mut slow = live.open(&user).expect("opens");
        let mut fast = live.open(&user).expect("opens");
        for n in 0..3 {
            live.fan_out(&user, alert_event(&live, &user, n));
            let got = fast.receiver.recv().await.expect("the reader keeps up");
            assert_eq!((got.key.ms, got.data.as_str()), (n, "alert"));
        }
        // The slow one had room for two: it gets them, then its end.
        assert_eq!(slow.receiver.recv().await.map(|e| e.key.ms), Some(0));
        assert_eq!(slow.receiver.recv().await.map(|e| e.key.ms), Some(1));
        assert!(slow.receiver.recv().await.is_none(), "closed, not blocked");
        assert_eq!(live.open_streams(), 1);
        drop(slow);
        assert_eq!(
            live.open_streams(),
            1,
            "dropping a closed stream changes nothing"
        );
        drop(fast);
        assert_eq!(live.open_streams(), 0);
    }

    #[tokio::test]
    async fn limits_per_user_and_in_total_and_shutdown_refuse_new_streams() {
        let (live, _dir) = streams(4, 2);
        let (a, b, c) = (
            UserId::parse("a").expect("valid"),
            UserId::parse("b").expect("valid"),
            UserId::parse("c").expect("valid"),
        );
        let _a1 = live.open(&a).expect("opens");
        let a2 = live.open(&a).expect("opens");
        assert_eq!(live.open(&a).err(), Some(OpenError::PerUser(2)));
        let _b1 = live.open(&b).expect("opens");
        assert_eq!(live.open(&c).err(), Some(OpenError::Total(3)));
        drop(a2);
        let mut c1 = live.open(&c).expect("a place was freed");
        live.close_all();
        assert!(c1.receiver.recv().await.is_none(), "ended at shutdown");
        assert_eq!(live.open(&c).err(), Some(OpenError::ShuttingDown));
        assert_eq!(live.open_streams(), 0);
    }
}

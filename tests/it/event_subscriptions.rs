//! Subscriptions to events: with `EVENT_BUS=rabbitmq` every instance's
//! subscribers see every instance's events once; with the in-process bus, the
//! process's own; a slow subscriber loses the oldest events without holding up
//! ingest or the other subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cgm_hub::app::App;
use cgm_hub::config::Settings;
use cgm_hub::events::Subscriber;
use cgm_hub::records::events::Message;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

/// Keeps every message it is handed, in order.
struct Recorder {
    name: &'static str,
    seen: Mutex<Vec<Message>>,
    missed: Mutex<u64>,
}

impl Recorder {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            seen: Mutex::default(),
            missed: Mutex::default(),
        })
    }

    /// How many times the `reading.created` event of (user, timestamp) arrived.
    fn created(&self, user: &str, at: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.routing_key == "reading.created")
            .filter(|m| {
                let json = m.json();
                json["user_id"] == user && json["data"]["timestamp"] == at
            })
            .count()
    }

    fn ids(&self) -> std::collections::HashSet<uuid::Uuid> {
        self.seen.lock().unwrap().iter().map(|m| m.id).collect()
    }
}

#[async_trait]
impl Subscriber for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }
    async fn handle(&self, message: &Message) {
        self.seen.lock().unwrap().push(message.clone());
    }
    async fn missed(&self, count: u64) {
        *self.missed.lock().unwrap() += count;
    }
}

/// An app serving in this process with `subscribers`, as `TestApp` does
/// (AUTH_DISABLED), on the settings `vars` add.
struct Instance {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Instance {
    async fn start(vars: &[(&str, &str)], subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        let dir = TempDir::new().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut all: HashMap<String, String> = HashMap::from([
            (
                "SQLITE_PATH".into(),
                dir.path().join("app.db").display().to_string(),
            ),
            ("AUTH_DISABLED".into(), "true".into()),
            ("SQLITE_SYNCHRONOUS".into(), "normal".into()),
            ("RATE_LIMIT_USER_PER_MINUTE".into(), "10000000".into()),
            // A fixed key: with PostgreSQL a development key would go to ./data.
            (
                "TOKEN_ENCRYPTION_KEY".into(),
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ),
        ]);
        for (k, v) in vars {
            all.insert((*k).into(), (*v).into());
        }
        let settings = Settings::from_vars(&all).expect("test settings are valid");
        let app = App::build(settings).await.expect("app builds");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.serve_with(subscribers, listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        eventually("the app answers /health", Duration::from_secs(30), || {
            let url = format!("{base}/health");
            let client = client.clone();
            async move { client.get(url).send().await.is_ok() }
        })
        .await;
        Self {
            base,
            shutdown: Some(tx),
            served,
            _dir: dir,
        }
    }

    /// Stores one reading of `user` at `slot_no` through the HTTP API; returns
    /// its timestamp as events carry it.
    async fn store_reading(&self, user: &str, slot_no: i64) -> String {
        self.store_readings(user, slot_no..slot_no + 1).await;
        slot(slot_no)
            .as_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    async fn store_readings(&self, user: &str, slots: std::ops::Range<i64>) {
        let count = slots.end - slots.start;
        let readings: Vec<Value> = slots
            .map(|i| reading_json(slot(i).as_datetime(), 100 + i.rem_euclid(100) as u16))
            .collect();
        let response = reqwest::Client::new()
            .post(format!("{}/api/bg/{user}/readings", self.base))
            .json(&json!({ "readings": readings }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["summary"]["inserted"], count, "{body}");
    }

    /// Shuts down as on SIGTERM and checks serve ended cleanly.
    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        let served = tokio::time::timeout(Duration::from_secs(60), &mut self.served)
            .await
            .expect("serve returns after shutdown")
            .expect("serve did not panic");
        served.expect("a clean shutdown");
    }
}

async fn seen_once_by(recorders: &[&Arc<Recorder>], user: &str, at: &str) {
    for r in recorders {
        eventually(
            &format!("{} sees the reading.created of {user} at {at}", r.name),
            Duration::from_secs(20),
            || async { r.created(user, at) >= 1 },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rabbitmq_an_event_stored_through_one_instance_reaches_subscribers_on_both_once() {
    let schema = PgSchema::new();
    // Creates the schema and applies the migrations before either app starts.
    let _store = schema.store().await;
    let database_url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let rabbit = rabbit_settings(BROKER, &unique());
    let mut vars = vec![
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", database_url.as_str()),
    ];
    vars.extend(rabbit_env(&rabbit));
    let (on_a, on_b) = (Recorder::new("recorder-a"), Recorder::new("recorder-b"));
    let a = Instance::start(&vars, vec![on_a.clone()]).await;
    let b = Instance::start(&vars, vec![on_b.clone()]).await;

    let first = a.store_reading("sub-rabbit", 0).await;
    seen_once_by(&[&on_a, &on_b], "sub-rabbit", &first).await;
    // Whatever would arrive twice (through the broker and straight from the
    // relay) would be in before an event stored after the first was seen.
    let marker = b.store_reading("sub-rabbit", 1).await;
    seen_once_by(&[&on_a, &on_b], "sub-rabbit", &marker).await;
    for r in [&on_a, &on_b] {
        assert_eq!(r.created("sub-rabbit", &first), 1, "{} saw it once", r.name);
        assert_eq!(
            r.created("sub-rabbit", &marker),
            1,
            "{} saw it once",
            r.name
        );
        let seen = r.seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|m| m.user_id().map(|u| u.as_str()) == Some("sub-rabbit")),
            "messages carry their user"
        );
    }
    assert_eq!(*on_a.missed.lock().unwrap(), 0);

    // The events also reached the durable queue, for consumers outside.
    let (_connection, channel) = broker_channel().await.expect("RabbitMQ");
    let waiting = channel
        .queue_declare(
            rabbit.queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("the durable queue exists");
    assert!(waiting.message_count() >= 2, "{waiting:?}");
    a.stop().await;
    b.stop().await;
    let _ = channel
        .queue_delete(rabbit.queue.as_str().into(), Default::default())
        .await;
    let _ = channel
        .exchange_delete(rabbit.exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_memory_bus_a_subscriber_in_the_process_gets_each_event_once() {
    let recorder = Recorder::new("recorder-memory");
    let app = Instance::start(&[], vec![recorder.clone()]).await;
    let first = app.store_reading("sub-memory", 0).await;
    seen_once_by(&[&recorder], "sub-memory", &first).await;
    let marker = app.store_reading("sub-memory", 1).await;
    seen_once_by(&[&recorder], "sub-memory", &marker).await;
    assert_eq!(recorder.created("sub-memory", &first), 1);
    assert_eq!(recorder.created("sub-memory", &marker), 1);
    assert_eq!(recorder.seen.lock().unwrap().len(), 2, "nothing else");
    app.stop().await;
}

/// Blocks on every event until released.
struct Stuck {
    release: tokio::sync::Semaphore,
    handled: Mutex<u64>,
    missed: Mutex<u64>,
}

#[async_trait]
impl Subscriber for Stuck {
    fn name(&self) -> &'static str {
        "stuck-subscriber"
    }
    async fn handle(&self, _: &Message) {
        // Released for good once the test adds permits; closed never.
        if let Ok(permit) = self.release.acquire().await {
            drop(permit);
        }
        *self.handled.lock().unwrap() += 1;
    }
    async fn missed(&self, count: u64) {
        *self.missed.lock().unwrap() += count;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_misses_the_oldest_events_without_holding_up_ingest_or_the_others() {
    let stuck = Arc::new(Stuck {
        release: tokio::sync::Semaphore::new(0),
        handled: Mutex::default(),
        missed: Mutex::default(),
    });
    let fast = Recorder::new("recorder-beside-stuck");
    let app = Instance::start(&[], vec![stuck.clone(), fast.clone()]).await;
    // More events than a subscriber may fall behind (the hub keeps 4,096).
    let total = 6_000;
    // In the past, every one of them: a reading from the future is refused.
    for first in (-total..0).step_by(1_000) {
        app.store_readings("sub-slow", first..first + 1_000).await;
    }
    // Ingest answered and the other subscriber got everything while the slow
    // one still sits on its first event.
    eventually(
        "the fast subscriber sees every event",
        Duration::from_secs(60),
        || async { fast.ids().len() == total as usize },
    )
    .await;
    assert_eq!(*stuck.handled.lock().unwrap(), 0, "still stuck");
    stuck.release.add_permits(1_000_000);
    eventually(
        "the slow subscriber is told how many it missed",
        Duration::from_secs(30),
        || async { *stuck.missed.lock().unwrap() > 0 },
    )
    .await;
    eventually(
        "the slow subscriber handles what it did not miss",
        Duration::from_secs(30),
        || async { *stuck.handled.lock().unwrap() + *stuck.missed.lock().unwrap() >= total as u64 },
    )
    .await;
    assert_eq!(*fast.missed.lock().unwrap(), 0);
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let missed_line = metrics
        .lines()
        .find(|l| l.starts_with("event_subscriber_missed_total{subscriber=\"stuck-subscriber\"}"))
        .unwrap_or_else(|| panic!("the miss is counted:\n{metrics}"));
    let counted: f64 = missed_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        counted >= *stuck.missed.lock().unwrap() as f64,
        "{missed_line}"
    );
    app.stop().await;
}

/// Journal changes made over HTTP reach a subscriber as `meal.created`,
/// `meal.updated` and `meal.deleted`, each with the item; a repeated upload
/// announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_changes_reach_subscribers_as_events() {
    let recorder = Recorder::new("recorder-journal");
    let app = Instance::start(&[], vec![recorder.clone()]).await;
    let client = reqwest::Client::new();
    let at = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let meal = json!({"timestamp": at, "carbs_grams": 40, "external_id": "ev-1"});
    let url = format!("{}/api/users/sub-journal/meals", app.base);
    let created: Value = client
        .post(&url)
        .json(&meal)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let repeat = client.post(&url).json(&meal).send().await.unwrap();
    assert_eq!(repeat.status(), 200);
    let one = format!("{url}/{id}");
    let patched = client
        .patch(&one)
        .json(&json!({"carbs_grams": 45}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(client.delete(&one).send().await.unwrap().status(), 204);
    let journal = |r: &Recorder| -> Vec<(String, Value)> {
        r.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.routing_key.starts_with("meal."))
            .map(|m| (m.routing_key.clone(), m.json()))
            .collect()
    };
    eventually("the meal's three events", Duration::from_secs(20), || {
        let n = journal(&recorder).len();
        async move { n >= 3 }
    })
    .await;
    let events = journal(&recorder);
    let keys: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["meal.created", "meal.updated", "meal.deleted"]);
    for (_, json) in &events {
        assert_eq!(json["user_id"], "sub-journal");
        assert_eq!(json["data"]["id"], id.as_str());
        assert_eq!(json["data"]["external_id"], "ev-1");
    }
    assert_eq!(events[0].1["data"]["carbs_grams"], 40.0);
    assert_eq!(events[1].1["data"]["carbs_grams"], 45.0);
    assert_eq!(events[2].1["data"]["carbs_grams"], 45.0, "as it was");
    app.stop().await;
}

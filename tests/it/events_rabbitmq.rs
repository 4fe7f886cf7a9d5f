//! The RabbitMQ bus and the outbox: events reach a real broker with confirms,
//! wait in the outbox while the broker is unreachable, and survive a SIGKILL
//! between commit and publish; each instance's own queue feeds its hub, and
//! comes back after a broker outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cgm_hub::config::RabbitSettings;
use cgm_hub::events::rabbitmq::RabbitBus;
use cgm_hub::events::relay::Relay;
use cgm_hub::events::{EventBus, Received, Subscription};
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::*;

/// Nothing listens here: a broker outage.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// Every message waiting in `rabbit`'s queue (acknowledged, then the queue and
/// the exchange are deleted), deduplicated by event id as a consumer must.
async fn drain_queue(rabbit: &RabbitSettings) -> Vec<(String, Value)> {
    let queue = rabbit.queue.as_str();
    let (_connection, channel) = broker_channel()
        .await
        .expect("RabbitMQ at 127.0.0.1:5672 (start it: rabbitmq-server -detached)");
    let mut seen = std::collections::HashSet::new();
    let mut messages = Vec::new();
    while let Some(got) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let delivery = got.delivery;
        assert_eq!(delivery.properties.delivery_mode(), &Some(2), "persistent");
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .expect("message id")
            .to_string();
        let body: Value = serde_json::from_slice(&delivery.data).expect("JSON event");
        assert_eq!(body["id"], id.as_str(), "message id is the event id");
        assert_eq!(body["type"], delivery.routing_key.as_str());
        if seen.insert(id.clone()) {
            messages.push((delivery.routing_key.to_string(), body));
        }
    }
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(
            rabbit.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    messages
}

#[tokio::test]
async fn the_relay_publishes_committed_events_to_rabbitmq_with_confirms() {
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let rabbit = rabbit_settings(BROKER, &unique());
    let bus = RabbitBus::new(rabbit.clone());
    bus.connect().await.expect("RabbitMQ at 127.0.0.1:5672");
    assert!(bus.check().is_ok());
    store
        .upsert_readings(
            (0..300)
                .map(|i| cgm("rb1", slot(i), 100 + (i % 50) as u16))
                .collect(),
        )
        .await
        .unwrap();
    store
        .upsert_readings(vec![cgm("rb1", slot(0), 180)])
        .await
        .unwrap();
    let relay = Relay::new(store.clone(), Arc::new(bus));
    assert_eq!(relay.drain().await.unwrap(), 301);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);

    let got = drain_queue(&rabbit).await;
    assert_eq!(got.len(), 301);
    assert!(got[..300].iter().all(|(key, _)| key == "reading.created"));
    assert_eq!(got[300].0, "reading.updated");
    assert_eq!(got[300].1["data"]["version"], 2);
    assert_eq!(got[300].1["data"]["glucose_value"], 180);
    assert_eq!(got[300].1["schema_version"], 1);
}

/// The real broker behind a TCP proxy the test can cut (every open connection
/// dropped, new ones refused) and restore: a broker outage mid-stream.
struct FlakyBroker {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl FlakyBroker {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (accepting, kept) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                kept.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                }));
            }
        });
        Self { addr, up, links }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_the_broker_is_down_and_follow_when_it_is_back() {
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let broker = FlakyBroker::start().await;
    let rabbit = rabbit_settings(&broker.url(), &unique());
    let bus = Arc::new(RabbitBus::new(rabbit.clone()));
    let relay = Relay::new(store.clone(), bus.clone());

    store
        .upsert_readings((0..20).map(|i| cgm("rb2", slot(i), 120)).collect())
        .await
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 20);

    // The broker goes away mid-stream: the relay cannot publish, and keeps
    // everything committed since.
    broker.cut();
    store
        .upsert_readings((20..50).map(|i| cgm("rb2", slot(i), 130)).collect())
        .await
        .unwrap();
    assert!(relay.drain().await.is_err());
    assert!(
        relay.drain().await.is_err(),
        "reconnecting fails while down"
    );
    assert!(bus.check().is_err(), "health reports the outage");
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        30,
        "nothing leaves the outbox unconfirmed"
    );

    // Back: the same relay reconnects and publishes the rest.
    broker.restore();
    assert_eq!(relay.drain().await.unwrap(), 30);
    assert!(bus.check().is_ok());
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    let got = drain_queue(&rabbit).await;
    assert_eq!(got.len(), 50, "every event once, after deduplication by id");
    let stamps: std::collections::BTreeSet<&str> = got
        .iter()
        .map(|(_, body)| body["data"]["timestamp"].as_str().unwrap())
        .collect();
    assert_eq!(stamps.len(), 50, "one event per reading");

    // A broker that was never reachable: the bus says so at once.
    let never = RabbitBus::new(rabbit_settings(NO_BROKER, &unique()));
    assert!(never.connect().await.is_err());
    assert!(never.check().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_sigkill_are_published_after_the_restart() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("outbox.db");
    let client = reqwest::Client::new();
    let name = unique();
    let down = rabbit_settings(NO_BROKER, &name);
    let mut server = Binary::start_with(&db, &[], &rabbit_env(&down));
    server.wait_healthy(&client).await;
    let health: Value = client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["checks"]["event_bus"]["status"], "degraded",
        "{health}"
    );

    // Acknowledged while the broker is unreachable: committed with their events.
    let readings: Vec<Value> = (0..40)
        .map(|i| reading_json(slot(i).as_datetime(), 110 + i as u16))
        .collect();
    let response = client
        .post(format!("{}/api/bg/rb3/readings", server.base))
        .json(&json!({ "readings": readings }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    server.kill_hard();

    let up = rabbit_settings(BROKER, &name);
    let mut server = Binary::start_with(&db, &[], &rabbit_env(&up));
    server.wait_healthy(&client).await;
    // The first process never claimed them (its broker was unreachable), so
    // nothing waits for a claim to lapse; 30 s is room for a loaded machine.
    let got = std::sync::Mutex::new(Vec::new());
    eventually_ok(
        "the 40 readings' events reach the queue",
        Duration::from_secs(30),
        || async {
            let drained = drain_queue_keep(&up.queue).await;
            let mut got = got.lock().unwrap();
            got.extend(drained);
            if got.len() >= 40 {
                Ok(())
            } else {
                Err(format!("{} events so far", got.len()))
            }
        },
    )
    .await;
    let got = got.into_inner().unwrap();
    server.kill_hard();
    let created: std::collections::BTreeSet<String> = got
        .iter()
        .filter(|(key, _)| key == "reading.created")
        .map(|(_, body)| body["data"]["timestamp"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        created.len(),
        40,
        "every acknowledged reading's event arrived"
    );
    let _ = drain_queue(&up).await;
}

/// Like `drain_queue`, but leaves the queue in place (the app still publishes to it).
async fn drain_queue_keep(queue: &str) -> Vec<(String, Value)> {
    let (_connection, channel) = broker_channel().await.expect("RabbitMQ at 127.0.0.1:5672");
    let mut messages = Vec::new();
    loop {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
        {
            Ok(Some(got)) => messages.push((
                got.delivery.routing_key.to_string(),
                serde_json::from_slice(&got.delivery.data).expect("JSON event"),
            )),
            // Ok(None): empty; Err: the app has not declared the queue yet.
            _ => return messages,
        }
    }
}

/// The next event on `events` (the bus's hub), waiting up to 10 s.
async fn next_message(events: &mut Subscription) -> Arc<cgm_hub::records::events::Message> {
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        Ok(Some(Received::Message(m))) => m,
        other => panic!("expected an event within 10 s, got {other:?}"),
    }
}

#[tokio::test]
async fn the_bus_feeds_its_hub_only_from_its_own_queue_which_comes_back_after_an_outage() {
    let under_test = sqlite_store().await;
    let store = under_test.store.clone();
    let broker = FlakyBroker::start().await;
    let rabbit = rabbit_settings(&broker.url(), &unique());
    let bus = Arc::new(RabbitBus::new(rabbit.clone()));
    let relay = Relay::new(store.clone(), bus.clone());
    let mut events = bus.hub().subscribe("rabbit-hub-test");

    // Not consuming: publishing alone hands this instance nothing, so with a
    // consumer it gets each event once, from the broker.
    store
        .upsert_readings(vec![cgm("rb4", slot(0), 100)])
        .await
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    assert_eq!(
        events.try_recv(),
        None,
        "the relay never feeds the hub itself"
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = bus.start_consuming(stopped).await.expect("a consumer task");
    assert!(bus.check().is_ok(), "{:?}", bus.check());
    store
        .upsert_readings(vec![cgm("rb4", slot(1), 110)])
        .await
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    let got = next_message(&mut events).await;
    assert_eq!(got.routing_key, "reading.created");
    assert_eq!(got.user_id().map(|u| u.as_str()), Some("rb4"));
    let body = got.json();
    assert_eq!(body["user_id"], "rb4");
    assert_eq!(body["data"]["glucose_value"], 110);
    assert_eq!(body["id"], got.id.to_string());

    // The broker goes away: health says this instance no longer receives.
    broker.cut();
    eventually(
        "the consumer notices the outage",
        Duration::from_secs(30),
        || async { bus.check().is_err() },
    )
    .await;
    // Back: the consumer reconnects on its own (with backoff), and what is
    // published next reaches the hub again.
    broker.restore();
    store
        .upsert_readings(vec![cgm("rb4", slot(2), 120)])
        .await
        .unwrap();
    eventually(
        "the relay publishes again",
        Duration::from_secs(30),
        || async { relay.drain().await.is_ok() && store.outbox_backlog().await.unwrap() == 0 },
    )
    .await;
    eventually("the consumer is back", Duration::from_secs(30), || async {
        bus.check().is_ok()
    })
    .await;
    // Published before the consumer's queue was back or after: either way the
    // next one arrives.
    store
        .upsert_readings(vec![cgm("rb4", slot(3), 130)])
        .await
        .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 1);
    let mut values: Vec<u64> = Vec::new();
    while values.last() != Some(&130) {
        let body = next_message(&mut events).await.json();
        values.push(body["data"]["glucose_value"].as_u64().expect("a value"));
    }
    assert!(
        values.len() <= 2,
        "{values:?}: at most the one from the outage first"
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(15), consumer)
        .await
        .expect("the consumer stops")
        .unwrap();
    let _ = drain_queue(&rabbit).await;
}

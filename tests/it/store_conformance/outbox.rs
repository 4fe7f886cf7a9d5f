//! Outbox cases: every backend commits the events of a change with the change, and
//! hands them to relays by claims that lapse.

use chrono::Utc;
use serde_json::Value;

use super::*;

fn types_of(messages: &[cgm_hub::records::events::Message]) -> Vec<String> {
    messages.iter().map(|m| m.routing_key.clone()).collect()
}

fn data(message: &cgm_hub::records::events::Message) -> Value {
    message.json()["data"].clone()
}

pub(super) async fn changes_commit_their_events_and_duplicates_none(s: S) {
    assert_eq!(s.outbox_backlog().await.unwrap(), 0);
    s.upsert_readings(vec![
        reading("ob1", slot(1), 100, ReadingType::Manual),
        cgm("ob2", slot(1), 120),
    ])
    .await
    .unwrap();
    s.upsert_readings(vec![
        cgm("ob2", slot(1), 120),                         // identical
        cgm("ob1", slot(1), 104),                         // CGM replaces manual
        reading("ob2", slot(1), 90, ReadingType::Manual), // sensor precedence
    ])
    .await
    .unwrap();
    assert_eq!(s.outbox_backlog().await.unwrap(), 3);

    let now = Utc::now();
    let until = now + chrono::Duration::seconds(30);
    let claimed = s.claim_outbox("relay-a", now, until, 10).await.unwrap();
    assert_eq!(
        types_of(&claimed),
        ["reading.created", "reading.created", "reading.updated"],
        "commit order"
    );
    let updated = data(&claimed[2]);
    assert_eq!(
        (
            &updated["user_id"],
            &updated["glucose_value"],
            &updated["version"]
        ),
        (&Value::from("ob1"), &Value::from(104), &Value::from(2))
    );
    let json = claimed[0].json();
    assert_eq!(json["id"], claimed[0].id.to_string());
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["type"], "reading.created");
    let ids: BTreeSet<_> = claimed.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 3, "distinct event ids");

    // Connection status changes are events too; a repeated status is not news,
    // but every (re)connect is.
    let c = connected("ob3", 1);
    s.put_connection(c.clone()).await.unwrap();
    s.put_connection(connected("ob3", 2)).await.unwrap();
    let disconnected = Connection {
        status: ConnectionStatus::Disconnected,
        tokens: None,
        access_expires_at: None,
        access_refresh_at: None,
        ..c
    };
    s.put_connection(disconnected.clone()).await.unwrap();
    s.put_connection(disconnected).await.unwrap();
    let connection_events = s.claim_outbox("relay-b", now, until, 10).await.unwrap();
    assert_eq!(
        types_of(&connection_events),
        [
            "connection.connected",
            "connection.connected",
            "connection.disconnected"
        ]
    );
    assert_eq!(data(&connection_events[2])["user_id"], "ob3");
}

pub(super) async fn outbox_claims_are_exclusive_until_they_lapse(s: S) {
    for i in 0..5 {
        s.upsert_readings(vec![cgm("oc1", slot(i), 100 + i as u16)])
            .await
            .unwrap();
    }
    let now = Utc::now();
    let until = now + chrono::Duration::seconds(30);
    let a = s.claim_outbox("relay-a", now, until, 2).await.unwrap();
    let b = s.claim_outbox("relay-b", now, until, 10).await.unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 3, "b gets what a does not hold");
    assert!(a.iter().all(|m| !b.iter().any(|n| n.id == m.id)));
    let values = |ms: &[cgm_hub::records::events::Message]| -> Vec<u64> {
        ms.iter()
            .map(|m| data(m)["glucose_value"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(values(&a), [100, 101], "oldest first");
    assert_eq!(values(&b), [102, 103, 104]);
    assert!(
        s.claim_outbox("relay-c", now, until, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing unclaimed is left"
    );
    // A relay retrying its publish gets its own claims back.
    let retry = s.claim_outbox("relay-a", now, until, 10).await.unwrap();
    assert_eq!(values(&retry), [100, 101]);

    // a publishes and acknowledges; b dies, and its claims lapse to c.
    assert_eq!(
        s.ack_outbox(a.iter().map(|m| m.id).collect())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.ack_outbox(a.iter().map(|m| m.id).collect())
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.outbox_backlog().await.unwrap(), 3);
    let later = until + chrono::Duration::seconds(1);
    let taken_over = s
        .claim_outbox("relay-c", later, later + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(values(&taken_over), [102, 103, 104]);
    assert_eq!(
        s.ack_outbox(taken_over.iter().map(|m| m.id).collect())
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.outbox_backlog().await.unwrap(), 0);
}

//! Apple Health upload cases (`HealthUploadStore`): an upload's readings and
//! journal entries are stored with their events and day marks, a repeat
//! stores nothing new, and an upload whose journal part fails (an entry id
//! the user's journal holds already) stores nothing: on SQL because the readings and the entries are one
//! transaction, on DynamoDB because the journal batch (one transaction for up
//! to 25 entries) is written before the readings.

use cgm_hub::domain::{Activity, ActivityInput, ActivityType, TimePolicy};
use cgm_hub::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use cgm_hub::store::Scan;
use chrono::{Duration, DurationRound, Utc};

use super::*;

/// A workout `minutes` after a whole hour of yesterday.
fn workout(u: &str, minutes: i64, external_id: &str) -> JournalEntry {
    let base = (Utc::now() - Duration::days(1))
        .duration_trunc(Duration::hours(1))
        .unwrap();
    let input = ActivityInput {
        timestamp: Some((base + Duration::minutes(minutes)).to_rfc3339()),
        activity_type: Some(ActivityType::Running),
        duration_minutes: Some(20),
        ..Default::default()
    };
    let body = Activity::parse(input, u, &TimePolicy::default(), Utc::now()).unwrap();
    JournalEntry::new(
        user(u),
        "apple_health".into(),
        Some(external_id.into()),
        JournalBody::Activity(body),
        Utc::now(),
    )
}

/// The routing keys of every event not seen yet (claimed and acknowledged).
async fn new_events(s: &S) -> Vec<String> {
    let now = Utc::now();
    let claimed = s
        .claim_outbox("relay-upload", now, now + Duration::seconds(30), 1000)
        .await
        .unwrap();
    s.ack_outbox(claimed.iter().map(|m| m.id).collect())
        .await
        .unwrap();
    let mut keys: Vec<String> = claimed.into_iter().map(|m| m.routing_key).collect();
    keys.sort();
    keys
}

async fn stored_readings(s: &S, u: &str) -> usize {
    s.scan_readings(Scan {
        user_id: user(u),
        from: slot(-10_000).unix_seconds(),
        until: slot(10_000).unix_seconds(),
        order: Order::Asc,
        limit: 1000,
    })
    .await
    .unwrap()
    .len()
}

async fn stored_activities(s: &S, u: &str) -> Vec<JournalEntry> {
    s.list_journal_entries(JournalQuery {
        user_id: user(u),
        kind: JournalKind::Activity,
        from: None,
        until: None,
        descending: false,
        after: None,
        limit: 100,
    })
    .await
    .unwrap()
}

pub(super) async fn health_uploads_are_stored_whole_or_not_at_all(s: S) {
    let readings = vec![
        cgm("hu", slot(1), 101),
        cgm("hu", slot(2), 102),
        cgm("hu", slot(3), 103),
    ];
    // A stored entry whose id the failing upload reuses.
    let taken = workout("hu", 0, "taken");
    s.create_journal_entry(taken.clone()).await.unwrap();
    assert_eq!(new_events(&s).await, ["activity.created"]);

    // The last entry's id is taken: the upload fails, and nothing of it is
    // stored, neither the readings (written first on SQL) nor the first entry.
    let mut clash = workout("hu", 20, "w2");
    clash.id = taken.id;
    let failed = s
        .store_health_upload(readings.clone(), vec![workout("hu", 10, "w1"), clash])
        .await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(stored_readings(&s, "hu").await, 0);
    assert!(s.latest_reading(&user("hu")).await.unwrap().is_none());
    assert_eq!(
        stored_activities(&s, "hu").await,
        std::slice::from_ref(&taken)
    );
    assert_eq!(new_events(&s).await, Vec::<String>::new());

    // The same upload with the clash fixed: everything, once, with its events.
    let entries = vec![workout("hu", 10, "w1"), workout("hu", 20, "w2")];
    let (upserted, created) = s
        .store_health_upload(readings.clone(), entries.clone())
        .await
        .unwrap();
    assert_eq!(
        upserted.iter().map(|u| u.outcome).collect::<Vec<_>>(),
        [Outcome::Inserted; 3]
    );
    assert_eq!(
        created,
        entries
            .iter()
            .cloned()
            .map(JournalCreated::Created)
            .collect::<Vec<_>>()
    );
    assert_eq!(stored_readings(&s, "hu").await, 3);
    assert_eq!(
        s.latest_reading(&user("hu"))
            .await
            .unwrap()
            .unwrap()
            .reading,
        readings[2]
    );
    assert_eq!(
        stored_activities(&s, "hu").await,
        [taken.clone(), entries[0].clone(), entries[1].clone()]
    );
    assert_eq!(
        new_events(&s).await,
        [
            "activity.created",
            "activity.created",
            "reading.created",
            "reading.created",
            "reading.created"
        ]
    );

    // A repeat (new entry ids, same keys): nothing new, no event.
    let again = vec![workout("hu", 10, "w1"), workout("hu", 20, "w2")];
    let (upserted, created) = s
        .store_health_upload(readings.clone(), again)
        .await
        .unwrap();
    assert_eq!(
        upserted.iter().map(|u| u.outcome).collect::<Vec<_>>(),
        [Outcome::Duplicate(DuplicateKind::Identical); 3]
    );
    assert_eq!(
        created,
        entries
            .iter()
            .cloned()
            .map(JournalCreated::Existing)
            .collect::<Vec<_>>()
    );
    assert_eq!(new_events(&s).await, Vec::<String>::new());

    // Only readings, only entries, nothing: each stored as it is.
    let (upserted, created) = s
        .store_health_upload(vec![cgm("hu", slot(4), 104)], Vec::new())
        .await
        .unwrap();
    assert_eq!((upserted.len(), created.len()), (1, 0));
    let (upserted, created) = s
        .store_health_upload(Vec::new(), vec![workout("hu", 30, "w3")])
        .await
        .unwrap();
    assert_eq!((upserted.len(), created.len()), (0, 1));
    let (upserted, created) = s.store_health_upload(Vec::new(), Vec::new()).await.unwrap();
    assert_eq!((upserted.len(), created.len()), (0, 0));
    assert_eq!(stored_readings(&s, "hu").await, 4);
    assert_eq!(stored_activities(&s, "hu").await.len(), 4);
    assert_eq!(
        new_events(&s).await,
        ["activity.created", "reading.created"]
    );
}

//! The ingest pipeline: per-record results in order, and one event per change.

use std::time::Duration;

use cgm_hub::domain::ReadingType;
use cgm_hub::pipeline::RecordResult;
use cgm_hub::records::readings::Outcome;

use crate::helpers::*;

#[tokio::test]
async fn changes_are_published_once_and_duplicates_not_at_all() {
    let under_test = sqlite_store().await;
    let (pipeline, mut events) = pipeline_with_events(under_test.store.clone());

    let results = pipeline
        .ingest(vec![
            Ok(reading("p1", slot(1), 100, ReadingType::Manual)),
            Err(vec![cgm_hub::domain::FieldError::new(
                "glucose_value",
                "too low",
            )]),
            Ok(cgm("p1", slot(1), 104)),
            Ok(cgm("p1", slot(1), 104)),
            Ok(reading("p1", slot(1), 90, ReadingType::Manual)),
        ])
        .await
        .unwrap();
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| match r {
            RecordResult::Stored(_, u) => u.outcome.as_str(),
            RecordResult::Rejected(_) => "rejected",
        })
        .collect();
    assert_eq!(
        outcomes,
        ["inserted", "rejected", "updated", "duplicate", "duplicate"]
    );
    assert!(
        matches!(&results[2], RecordResult::Stored(_, u) if u.outcome == Outcome::Updated && u.version == 2)
    );

    // The store committed one event per change; the relay publishes them in order.
    let created = next_event(&mut events).await;
    let updated = next_event(&mut events).await;
    assert_eq!(created["type"], "reading.created");
    assert_eq!(updated["type"], "reading.updated");
    assert_eq!(
        (
            &created["data"]["version"],
            &created["data"]["glucose_value"]
        ),
        (&serde_json::json!(1), &serde_json::json!(100))
    );
    assert_eq!(
        (
            &updated["data"]["version"],
            &updated["data"]["glucose_value"]
        ),
        (&serde_json::json!(2), &serde_json::json!(104))
    );
    assert_eq!(updated["data"]["user_id"], "p1");
    assert_ne!(created["id"], updated["id"]);
    assert_eq!(updated["schema_version"], 1);
    assert_eq!(updated["data"]["timestamp"], slot(1).to_rfc3339());
    // The relay deletes a batch just after the bus took it.
    eventually(
        "published events leave the outbox",
        Duration::from_secs(5),
        || async { under_test.store.outbox_backlog().await.unwrap() == 0 },
    )
    .await;
    assert!(
        events.try_recv().is_err(),
        "duplicates and rejections publish nothing"
    );
}

#[tokio::test]
async fn readings_outside_the_time_policy_are_rejected_not_stored() {
    let under_test = sqlite_store().await;
    let (pipeline, _events) = pipeline_with_events(under_test.store.clone());
    let future =
        cgm_hub::domain::ReadingTime::from_utc(chrono::Utc::now() + chrono::Duration::minutes(10));
    let ancient = cgm_hub::domain::ReadingTime::parse_rfc3339("2001-01-01T00:00:00Z").unwrap();
    let results = pipeline
        .ingest(vec![
            Ok(cgm("p1", future, 100)),
            Ok(cgm("p1", ancient, 100)),
        ])
        .await
        .unwrap();
    for r in &results {
        match r {
            RecordResult::Rejected(errors) => assert_eq!(errors[0].pointer, "/timestamp"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    assert!(under_test
        .store
        .latest_reading(&user("p1"))
        .await
        .unwrap()
        .is_none());
}

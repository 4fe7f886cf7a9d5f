//! The demo source feeds realistic readings through the real pipeline.

use cgm_hub::simulator::patients::demo_patients;
use cgm_hub::simulator::patients::feed::feed_window;
use cgm_hub::store::{fetch_page, Order, PageRequest};
use chrono::{Duration, Utc};

use crate::helpers::*;

#[tokio::test]
async fn a_day_of_demo_readings_is_stored_once() {
    let under_test = sqlite_store().await;
    let (pipeline, mut events) = pipeline_with_events(under_test.store.clone());
    let to = Utc::now();
    let from = to - Duration::days(1);
    let inserted = feed_window(&pipeline, from, to).await.unwrap();
    let expected: usize = demo_patients()
        .iter()
        .map(|p| p.samples(from, to).len())
        .sum();
    assert_eq!(inserted, expected);
    assert!(
        expected > 3 * 270,
        "about 288 a day each, minus gaps: {expected}"
    );
    assert_eq!(
        feed_window(&pipeline, from, to).await.unwrap(),
        0,
        "re-feeding is idempotent"
    );

    let first = next_event(&mut events).await;
    assert_eq!(first["type"], "reading.created");

    for patient in demo_patients() {
        let page = fetch_page(
            under_test.store.as_ref(),
            &PageRequest {
                user_id: user(patient.user_id),
                start: None,
                end: None,
                order: Order::Asc,
                limit: 1000,
                seek: None,
            },
        )
        .await
        .unwrap();
        let values: Vec<u16> = page
            .readings
            .iter()
            .map(|r| r.reading.glucose.mg_dl().get())
            .collect();
        let min = values.iter().min().unwrap();
        let max = values.iter().max().unwrap();
        assert!(
            max - min > 40,
            "{}: a day has meals, not a flat line ({min}..{max})",
            patient.user_id
        );
        assert!(page
            .readings
            .iter()
            .all(|r| r.reading.source.as_str() == "demo"));
    }
}

#[tokio::test]
async fn serve_with_demo_shows_readings() {
    let app = TestApp::spawn_with(&[("DEMO", "true"), ("DEMO_BACKFILL_DAYS", "1")]).await;
    // The demo patients are connected and backfilled in the background.
    let body = wait_for(
        &app.client,
        &app.url("/api/bg/demo-alice/latest"),
        std::time::Duration::from_secs(5),
        |b| b["status"] == "success",
    )
    .await;
    // Through the Dexcom simulator, connected by the real OAuth flow.
    assert_eq!(body["data"]["source"], "dexcom");
    assert_eq!(body["data"]["reading_type"], "CGM");
    let connections = get_json(&app.client, &app.url("/api/users/demo-alice/connections")).await;
    assert_eq!(connections["data"]["connections"][0]["status"], "connected");
}

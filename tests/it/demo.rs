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

/// Alerts show at once: Bob's uploader phone died 25 minutes before the demo
/// started (it comes back 5 minutes after), so his newest reading is older
/// than the default `stale_minutes` (20) from the start and the stale timer
/// (every second here) raises his `stale` alert as soon as his backfill is
/// stored. The bound is the backfill's (one day here), as in the tests above.
#[tokio::test]
async fn the_demo_shows_a_stale_alert_at_once() {
    let app = TestApp::spawn_with(&[
        ("DEMO", "true"),
        ("DEMO_BACKFILL_DAYS", "1"),
        ("ALERT_STALE_CHECK_SECONDS", "1"),
    ])
    .await;
    let body = wait_for(
        &app.client,
        &app.url("/api/users/demo-bob/alerts?status=active"),
        std::time::Duration::from_secs(60),
        |b| {
            b["data"]["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["type"] == "stale"))
        },
    )
    .await;
    let stale = body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "stale")
        .unwrap()
        .clone();
    let message = stale["message"].as_str().unwrap();
    assert!(message.starts_with("No reading for "), "{message}");
    let latest = get_json(&app.client, &app.url("/api/bg/demo-bob/latest")).await;
    let time = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!(
        time(&stale["reading_timestamp"]),
        time(&latest["data"]["timestamp"]),
        "raised on his newest reading: {stale} {latest}"
    );
    assert!(
        Utc::now() - time(&stale["reading_timestamp"]) >= Duration::minutes(20),
        "{stale}"
    );
}

/// The demo's three patients come with profiles (their own time zone and
/// diabetes type), and after the backfill their statistics differ as their
/// descriptions say: Alice (type 1, well controlled) spends more time in range
/// and has a lower mean than Carol (type 2, poorly controlled).
#[tokio::test]
async fn the_demo_patients_have_profiles_and_believable_different_stats() {
    let app = TestApp::spawn_with(&[("DEMO", "true"), ("DEMO_BACKFILL_DAYS", "7")]).await;
    let mut stats = Vec::new();
    for (user, zone, kind) in [
        ("demo-alice", "Etc/GMT+5", "type1"),
        ("demo-bob", "Etc/GMT-1", "type1"),
        ("demo-carol", "Etc/GMT+8", "type2"),
    ] {
        let jobs_url = app.url(&format!("/api/users/{user}/jobs?limit=50"));
        wait_for(
            &app.client,
            &jobs_url,
            std::time::Duration::from_secs(60),
            |b| {
                b["data"]["jobs"].as_array().is_some_and(|jobs| {
                    jobs.iter()
                        .any(|j| j["trigger"] == "backfill" && j["status"] == "succeeded")
                })
            },
        )
        .await;
        let profile = get_json(&app.client, &app.url(&format!("/api/users/{user}/profile"))).await;
        assert_eq!(profile["data"]["timezone"], zone, "{profile}");
        assert_eq!(profile["data"]["diabetes_type"], kind, "{profile}");
        let body = get_json(&app.client, &app.url(&format!("/api/bg/{user}/stats"))).await;
        let data = &body["data"];
        assert_eq!(
            data["tz"], zone,
            "the profile's zone is the default: {body}"
        );
        assert!(data["readings"].as_u64().unwrap() > 5 * 288, "{body}");
        let m = &data["metrics"];
        let (mean, tir) = (
            m["mean"].as_f64().unwrap(),
            m["in_range_70_180"].as_f64().unwrap(),
        );
        assert!((60.0..250.0).contains(&mean), "{user}: mean {mean}");
        assert!(
            m["gmi"].as_f64().is_some() && m["cv"].as_f64().is_some(),
            "{body}"
        );
        stats.push((user, mean, tir));
    }
    let (alice, carol) = (stats[0], stats[2]);
    assert!(alice.1 < carol.1, "means: {stats:?}");
    assert!(alice.2 > carol.2, "times in range: {stats:?}");
    assert!(alice.2 > 60.0, "times in range: {stats:?}");

    // Their diaries are in the journal: meals, nights and exercise of the
    // backfill window, and the daily rows have the journal totals.
    let mut activities = 0;
    for user in ["demo-alice", "demo-bob", "demo-carol"] {
        let meals = wait_for(
            &app.client,
            &app.url(&format!("/api/users/{user}/meals?limit=1000")),
            std::time::Duration::from_secs(30),
            |b| {
                b["data"]["meals"]
                    .as_array()
                    .is_some_and(|m| m.len() >= 7 * 3 - 3)
            },
        )
        .await;
        let meals = meals["data"]["meals"].as_array().unwrap();
        assert!(meals.iter().all(|m| m["source"] == "demo"
            && m["external_id"].as_str().unwrap().starts_with("demo-meal-")
            && m["carbs_grams"].as_f64().unwrap() > 0.0));
        let sleep = get_json(
            &app.client,
            &app.url(&format!("/api/users/{user}/sleep?limit=1000")),
        )
        .await;
        let nights = sleep["data"]["sleep"].as_array().unwrap();
        assert!((6..=8).contains(&nights.len()), "{user}: {sleep}");
        assert!(nights
            .iter()
            .all(|n| n["duration_minutes"].as_u64().unwrap() > 240));
        let exercise = get_json(
            &app.client,
            &app.url(&format!("/api/users/{user}/activities?limit=1000")),
        )
        .await;
        activities += exercise["data"]["activities"].as_array().unwrap().len();
    }
    assert!(activities > 0, "three patients exercise within a week");
    let daily = get_json(&app.client, &app.url("/api/bg/demo-alice/daily")).await;
    let days = daily["data"]["days"].as_array().unwrap();
    assert!(
        days.iter().any(
            |d| d["total_carbs_grams"].as_f64().is_some_and(|c| c > 50.0)
                && d["total_sleep_minutes"].as_f64().is_some_and(|m| m > 240.0)
        ),
        "{daily}"
    );
}

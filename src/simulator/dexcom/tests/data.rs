//! Data endpoint tests: windows and their bounds, visibility delay, record
//! formats (app, receiver, LOW/HIGH, v2), dataRange and devices.

use std::time::{Duration as StdDuration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, SubsecRound as _, Utc};

use super::super::Faults;
use super::*;
use crate::simulator::patients::{demo_patient, demo_patients, DemoSample, SensorLevel};

fn patient_samples(id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DemoSample> {
    demo_patient(id).expect("demo patient").samples(from, to)
}

/// Two consecutive readings of `id` (5 minutes apart), a few days ago.
fn adjacent_pair(id: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = Utc::now() - Duration::days(3);
    let s = patient_samples(id, end - Duration::days(1), end);
    s.windows(2)
        .find(|w| w[1].timestamp - w[0].timestamp == Duration::minutes(5))
        .map(|w| (w[0].timestamp, w[1].timestamp))
        .expect("two adjacent readings in a day")
}

#[tokio::test]
async fn window_bounds_are_inclusive() {
    let h = Harness::new();
    let t = h.connect("demo-bob").await;
    let (a, b) = adjacent_pair("demo-bob");
    let one = h.egvs("v3", &t.access, a, a).await.json();
    let recs = records(&one);
    assert_eq!(recs.len(), 1, "start == end == a reading's time");
    assert_eq!(system_time(&recs[0]), a);
    let two = h.egvs("v3", &t.access, a, b).await.json();
    let times: Vec<_> = records(&two).iter().map(system_time).collect();
    assert_eq!(times, vec![a, b]);
    let inner = h
        .egvs(
            "v3",
            &t.access,
            a + Duration::seconds(1),
            b - Duration::seconds(1),
        )
        .await
        .json();
    assert!(records(&inner).is_empty());
}

#[tokio::test]
async fn egvs_match_the_demo_patient_in_order_with_stable_ids() {
    let h = Harness::new();
    let t = h.connect("demo-carol").await;
    // Whole seconds: the query carries no fraction, so a fractional `start` would
    // truncate below a reading that `want` leaves out (1 run in 300 failed so).
    let end = (Utc::now() - Duration::hours(2)).trunc_subsecs(0);
    let start = end - Duration::hours(6);
    let want = patient_samples("demo-carol", start, end + Duration::seconds(1));
    let first = h.egvs("v3", &t.access, start, end).await.json();
    let recs = records(&first);
    assert_eq!(recs.len(), want.len());
    for (r, s) in recs.iter().zip(&want) {
        assert_eq!(system_time(r), s.timestamp);
        if s.level == SensorLevel::InRange {
            assert_eq!(r["value"], s.glucose_mg_dl);
            assert_eq!(r["status"], "ok");
        }
        assert_eq!(r["trendRate"].as_f64(), s.trend_rate);
    }
    let ticks: Vec<i64> = recs
        .iter()
        .map(|r| r["transmitterTicks"].as_i64().expect("ticks"))
        .collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]));
    let again = h.egvs("v3", &t.access, start, end).await.json();
    assert_eq!(first, again, "re-fetching gives identical records and ids");
}

#[tokio::test]
async fn query_dates_are_parsed_leniently() {
    let h = Harness::new();
    let t = h.connect("demo-alice").await;
    let (a, b) = adjacent_pair("demo-alice");
    let local = a.with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).expect("offset"));
    for (start, end) in [
        (format!("{}Z", naive(a)), format!("{}.000Z", naive(b))),
        (local.to_rfc3339(), naive(b)),
    ] {
        let uri = format!(
            "/v3/users/self/egvs?{}",
            serde_urlencoded::to_string([("startDate", &start), ("endDate", &end)]).expect("query")
        );
        let j = h.get(&uri, Some(&t.access)).await.json();
        assert_eq!(records(&j).len(), 2, "{start} .. {end}");
    }
}

#[tokio::test]
async fn bad_windows_are_400() {
    let h = Harness::new();
    let t = h.connect("demo-alice").await;
    let now = Utc::now();
    let too_wide = h.egvs("v3", &t.access, now - Duration::days(31), now).await;
    assert_eq!(too_wide.status, StatusCode::BAD_REQUEST);
    assert!(too_wide.json()["fault"]["faultstring"]
        .as_str()
        .is_some_and(|s| s.contains("30 days")));
    let exactly_30 = h.egvs("v3", &t.access, now - Duration::days(30), now).await;
    assert_eq!(exactly_30.status, StatusCode::OK);
    let reversed = h.egvs("v3", &t.access, now, now - Duration::hours(1)).await;
    assert_eq!(reversed.status, StatusCode::BAD_REQUEST);
    for uri in [
        "/v3/users/self/egvs",
        "/v3/users/self/egvs?startDate=2026-01-01T00:00:00",
        "/v3/users/self/egvs?startDate=yesterday&endDate=today",
        "/v2/users/self/egvs?startDate=2026-01-01T00:00:00&endDate=2026-03-01T00:00:00",
    ] {
        let a = h.get(uri, Some(&t.access)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(a.json().is_object());
    }
}

#[tokio::test]
async fn max_window_days_is_configurable() {
    let h = Harness::with(SimConfig {
        max_window_days: 1,
        ..SimConfig::default()
    });
    let t = h.connect("demo-alice").await;
    let now = Utc::now();
    let a = h
        .egvs("v3", &t.access, now - Duration::hours(25), now)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn data_delay_hides_recent_readings() {
    let delay = Duration::hours(3);
    let delayed = Harness::with(SimConfig {
        data_delay: delay.to_std().expect("positive"),
        ..SimConfig::default()
    });
    let prompt = Harness::new();
    let td = delayed.connect("demo-alice").await;
    let tp = prompt.connect("demo-alice").await;
    let before = Utc::now();
    let start = before - Duration::hours(8);
    let end = before + Duration::hours(1);
    let late = delayed.egvs("v3", &td.access, start, end).await.json();
    let live = prompt.egvs("v3", &tp.access, start, end).await.json();
    let after = Utc::now();
    let late: Vec<_> = records(&late).iter().map(system_time).collect();
    let live: Vec<_> = records(&live).iter().map(system_time).collect();
    assert!(
        late.iter().all(|t| *t <= after - delay),
        "delayed readings leak"
    );
    assert!(
        live.iter().all(|t| *t <= after),
        "no readings from the future"
    );
    let min = patient_samples("demo-alice", start, before - delay).len();
    let max = patient_samples("demo-alice", start, after - delay + Duration::seconds(1)).len();
    assert!(
        (min..=max).contains(&late.len()),
        "{min} <= {} <= {max}",
        late.len()
    );
    let hidden = patient_samples("demo-alice", after - delay + Duration::seconds(1), before).len();
    assert!(
        live.len() >= late.len() + hidden,
        "the prompt sim shows the last 3 h"
    );
    assert_eq!(live[..late.len()], late[..], "same readings, just later");
}

#[tokio::test]
async fn receiver_records_have_no_offsets() {
    let h = Harness::new();
    h.sim.set_faults(Faults {
        receiver_without_offsets: true,
        ..Faults::default()
    });
    let t = h.connect("demo-alice").await;
    let (a, b) = adjacent_pair("demo-alice");
    let j = h.egvs("v3", &t.access, a, b).await.json();
    let r = &records(&j)[0];
    assert_eq!(r["systemTime"], naive(a));
    // demo-alice is at UTC-5: displayTime is her wall clock, without offset.
    assert_eq!(r["displayTime"], naive(a - Duration::hours(5)));
    assert_eq!(r["displayDevice"], "receiver");
    assert_eq!(r["transmitterGeneration"], "g6");
    let range = h
        .get("/v3/users/self/dataRange", Some(&t.access))
        .await
        .json();
    let end = range["egvs"]["end"]["systemTime"].as_str().expect("end");
    assert_eq!(end.len(), 19, "no offset: {end}");
}

/// A HIGH reading of a demo patient in the last half year. (LOWs below 40
/// mg/dL are rare in the demo traces; `records` tests their formatting.)
fn find_high() -> (String, DemoSample) {
    let end = Utc::now() - Duration::hours(1);
    demo_patients()
        .into_iter()
        .find_map(|p| {
            p.samples(end - Duration::days(180), end)
                .into_iter()
                .find(|s| s.level == SensorLevel::High)
                .map(|s| (p.user_id.to_owned(), s))
        })
        .expect("demo-carol reads HIGH now and then")
}

#[tokio::test]
async fn high_readings_as_null_by_default_or_clamped() {
    let h = Harness::new();
    let (user, sample) = find_high();
    let t = h.connect(&user).await;
    let at = sample.timestamp;
    let j = h.egvs("v3", &t.access, at, at).await.json();
    let r = &records(&j)[0];
    assert!(r["value"].is_null(), "{r}");
    assert_eq!(r["status"], "high");
    h.sim.set_faults(Faults {
        low_high_as_null: false,
        ..Faults::default()
    });
    let j = h.egvs("v3", &t.access, at, at).await.json();
    let r = &records(&j)[0];
    assert_eq!(r["value"], 400);
    assert_eq!(r["status"], "high");
    let v2 = h.egvs("v2", &t.access, at, at).await.json();
    assert_eq!(v2["egvs"][0]["value"], 400);
    assert_eq!(v2["egvs"][0]["realtimeValue"], 400);
    assert_eq!(v2["egvs"][0]["status"], "high");
}

#[tokio::test]
async fn v2_envelope_and_records() {
    let h = Harness::new();
    let t = h.connect("demo-alice").await;
    let (a, b) = adjacent_pair("demo-alice");
    let j = h.egvs("v2", &t.access, a, b).await.json();
    assert_eq!(j["unit"], "mg/dL");
    assert_eq!(j["rateUnit"], "mg/dL/min");
    assert!(j.get("records").is_none() && j.get("recordType").is_none());
    let egvs = j["egvs"].as_array().expect("egvs");
    assert_eq!(egvs.len(), 2);
    let r = &egvs[0];
    let mut keys: Vec<_> = r.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "displayTime",
            "realtimeValue",
            "smoothedValue",
            "status",
            "systemTime",
            "trend",
            "trendRate",
            "value"
        ]
    );
    assert_eq!(r["systemTime"], naive(a));
    assert_eq!(r["displayTime"], naive(a - Duration::hours(5)));
    assert!(r["smoothedValue"].is_null());
    if r["status"] == "ok" {
        assert_eq!(r["realtimeValue"], r["value"]);
    }
}

#[tokio::test]
async fn data_range_reports_first_and_newest_visible_reading() {
    let h = Harness::with(SimConfig {
        data_delay: StdDuration::from_secs(3600),
        ..SimConfig::default()
    });
    let t = h.connect("demo-bob").await;
    let j = h
        .get("/v3/users/self/dataRange", Some(&t.access))
        .await
        .json();
    assert_eq!(j["recordType"], "dataRange");
    assert_eq!(j["recordVersion"], "3.0");
    assert_eq!(j["userId"].as_str().map(str::len), Some(64));
    assert!(j.get("calibrations").is_none() && j.get("events").is_none());
    let start = system_time(&j["egvs"]["start"]);
    let end = system_time(&j["egvs"]["end"]);
    let now = Utc::now();
    let history = now - Duration::days(400);
    assert!(start >= history - Duration::minutes(1) && start < history + Duration::days(1));
    assert!(end <= now - Duration::hours(1) && end > now - Duration::hours(5));
    // demo-bob is at UTC+1.
    assert!(j["egvs"]["end"]["displayTime"]
        .as_str()
        .is_some_and(|s| s.ends_with("+01:00")));
    let newest = h
        .egvs("v3", &t.access, end - Duration::hours(1), now)
        .await
        .json();
    assert_eq!(records(&newest).last().map(system_time), Some(end));

    let synced = format!(
        "/v3/users/self/dataRange?lastSyncTime={}",
        naive(end + Duration::seconds(1))
    );
    let j = h.get(&synced, Some(&t.access)).await.json();
    assert!(
        j.get("egvs").is_none(),
        "nothing newer than lastSyncTime: {j}"
    );
    assert_eq!(j["recordType"], "dataRange");
    let older = format!(
        "/v3/users/self/dataRange?lastSyncTime={}Z",
        naive(end - Duration::hours(1))
    );
    let j = h.get(&older, Some(&t.access)).await.json();
    assert!(j["egvs"]["end"].is_object());
    let bad = h
        .get(
            "/v3/users/self/dataRange?lastSyncTime=never",
            Some(&t.access),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let v2 = h
        .get("/v2/users/self/dataRange", Some(&t.access))
        .await
        .json();
    assert!(v2.get("recordType").is_none() && v2.get("userId").is_none());
    assert_eq!(v2["egvs"]["end"]["systemTime"], naive(end));
    assert_eq!(h.sim.stats().data_range, 5);
}

#[tokio::test]
async fn devices_v3_and_v2() {
    let h = Harness::new();
    let t = h.connect("demo-alice").await;
    let j = h
        .get("/v3/users/self/devices", Some(&t.access))
        .await
        .json();
    assert_eq!(j["recordType"], "device");
    assert_eq!(j["recordVersion"], "3.0");
    let d = &j["records"][0];
    assert_eq!(d["transmitterId"], "8AB12C");
    assert_eq!(d["transmitterGeneration"], "g7");
    assert_eq!(d["displayApp"], "G7");
    assert_eq!(d["alertSchedules"], serde_json::json!([]));
    let last = d["lastUploadDate"].as_str().expect("lastUploadDate");
    let last = DateTime::parse_from_rfc3339(last).expect("with offset");
    assert!(last <= Utc::now() && last > Utc::now() - Duration::days(1));
    let v2 = h
        .get("/v2/users/self/devices", Some(&t.access))
        .await
        .json();
    let d2 = &v2["devices"][0];
    assert_eq!(d2["transmitterGeneration"], "g7");
    assert!(d2["lastUploadDate"].as_str().is_some_and(|s| s.len() == 19));
    assert_eq!(h.sim.stats().devices, 2);
}

#[tokio::test]
async fn thirty_day_window_is_complete_and_quick() {
    let h = Harness::new();
    let t = h.connect("SandboxUser7").await;
    let end = Utc::now();
    let start = end - Duration::days(30);
    let clock = Instant::now();
    let a = h.egvs("v3", &t.access, start, end).await;
    let elapsed = clock.elapsed();
    assert_eq!(a.status, StatusCode::OK);
    let n = records(&a.json()).len();
    // 8,640 slots minus warm-ups and signal losses.
    assert!((7_500..=8_641).contains(&n), "{n} records");
    // Generous bound for unoptimized test builds; release is far quicker.
    assert!(elapsed < StdDuration::from_secs(5), "{elapsed:?}");
    eprintln!(
        "30-day egvs: {n} records, {} bytes in {elapsed:?}",
        a.body.len()
    );
}

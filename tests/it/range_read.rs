//! The range endpoint's body, byte for byte. Its readings are encoded straight from
//! the store's rows (issue 15, the range read path); these tests hold the body to
//! the contract's JSON as it was written before (serde over the reading's view),
//! spelled out here independently of the crate's encoder: key order, which fields
//! are left out when absent, null trends, escaping, number and time formats, the
//! envelope and the pagination links, across pages in both orders.

use cgm_hub::domain::{
    DeviceInfo, Glucose, Reading, ReadingTime, SensorStatus, Source, StoredReading,
};
use cgm_hub::store::{fetch_page, Order, PageRequest};
use chrono::SecondsFormat;
use serde_json::Value;

use crate::helpers::*;

/// One reading in the contract's JSON, written out field by field.
fn contract_json(s: &StoredReading) -> String {
    let r = &s.reading;
    let q = |v: &str| serde_json::to_string(v).unwrap();
    let mut out = format!(
        r#"{{"user_id":{},"timestamp":"{}","glucose_value":{},"glucose_unit":"mg/dL""#,
        q(r.user_id.as_str()),
        r.timestamp
            .as_datetime()
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        r.glucose.mg_dl().get()
    );
    if let Some(status) = r.glucose.status() {
        out += &format!(r#","status":"{}""#, status.as_str());
    }
    out += &format!(
        r#","trend_direction":{},"trend_rate":{}"#,
        r.trend.map_or("null".into(), |t| q(t.as_str())),
        r.trend_rate
            .map_or("null".into(), |x| serde_json::to_string(&x.get()).unwrap())
    );
    let device: Vec<String> = [
        ("device_id", r.device.device_id()),
        ("serial_number", r.device.serial_number()),
        ("transmitter_id", r.device.transmitter_id()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!(r#""{k}":{}"#, q(v))))
    .collect();
    if !device.is_empty() {
        out += &format!(r#","device_info":{{{}}}"#, device.join(","));
    }
    out += &format!(
        r#","reading_type":"{}","source":{}"#,
        r.reading_type.as_str(),
        q(r.source.as_str())
    );
    if let Some(id) = &r.source_record_id {
        out += &format!(r#","source_record_id":{}"#, q(id));
    }
    if let Some(m) = r.display_offset_minutes {
        out += &format!(r#","display_offset_minutes":{m}"#);
    }
    out += &format!(
        r#","version":{},"created_at":"{}","updated_at":"{}"}}"#,
        s.version,
        s.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        s.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    out
}

/// Readings of every shape the contract allows, on the 5-minute grid.
fn varied(user_id: &str, i: i64) -> Reading {
    let mut r = cgm(user_id, slot(i), 60 + (i * 37 % 500) as u16);
    match i % 6 {
        0 => {
            r.glucose = Glucose::out_of_range(SensorStatus::Low);
            r.trend = None;
            r.trend_rate = None;
        }
        1 => {
            r.source_record_id = Some(format!("rec \"{i}\" \\ \n\u{1}é"));
            r.display_offset_minutes = Some(-330);
            r.device = DeviceInfo::parse(None, Some("S\"N\\1".into()), None).expect("valid device");
        }
        2 => {
            r.glucose = Glucose::out_of_range(SensorStatus::High);
            r.device = DeviceInfo::default();
            r.source = Source::parse("nightscout").expect("valid source");
        }
        3 => {
            r = reading(user_id, slot(i), 95, cgm_hub::domain::ReadingType::Manual);
            r.trend_rate = Some(cgm_hub::domain::TrendRate::new(-2.345_678_9).unwrap());
            r.display_offset_minutes = Some(60);
        }
        _ => {}
    }
    r
}

async fn seeded() -> (TestApp, Vec<StoredReading>) {
    let app = TestApp::spawn().await;
    let batch: Vec<Reading> = (0..30).map(|i| varied("range-user", i)).collect();
    app.store.upsert_readings(batch).await.unwrap();
    app.store
        .upsert_readings((0..30).map(|i| varied("other-user", i)).collect())
        .await
        .unwrap();
    // A replacement: version 2, updated_at after created_at.
    app.store
        .upsert_readings(vec![cgm("range-user", slot(7), 333)])
        .await
        .unwrap();
    let all = fetch_page(
        app.store.as_ref(),
        &PageRequest {
            user_id: user("range-user"),
            start: None,
            end: None,
            order: Order::Asc,
            limit: 1000,
            seek: None,
        },
    )
    .await
    .unwrap()
    .readings;
    assert_eq!(all.len(), 30);
    assert_eq!(all[7].version, 2);
    (app, all)
}

fn stamp(t: ReadingTime) -> String {
    t.as_datetime().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn readings_json(readings: &[StoredReading]) -> String {
    readings
        .iter()
        .map(contract_json)
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn one_page_is_the_contract_json_byte_for_byte() {
    let (app, all) = seeded().await;
    let (start, end) = (slot(2), slot(27));
    let path = format!(
        "/api/bg/range-user?startDate={}&endDate={}&limit=1000",
        stamp(start),
        stamp(end)
    );
    let r = app.get(&path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.text().await.unwrap();
    let want = format!(
        r#"{{"status":"success","data":{{"readings":[{}],"pagination":{{"next_cursor":null,"prev_cursor":null,"next":null,"prev":null,"limit":1000}}}}}}"#,
        readings_json(&all[2..27])
    );
    assert_eq!(body, want);

    // No readings: an empty list in the same envelope.
    let r = app
        .get(&format!(
            "/api/bg/nobody?startDate={}&endDate={}",
            stamp(start),
            stamp(end)
        ))
        .await;
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"status":"success","data":{"readings":[],"pagination":{"next_cursor":null,"prev_cursor":null,"next":null,"prev":null,"limit":100}}}"#
    );
}

/// Pages of 4, followed through `next` to the end and back through `prev`, in
/// both orders: each page's body is the contract JSON of its slice of readings,
/// with cursors and absolute links in the pagination.
#[tokio::test]
async fn every_page_in_both_orders_is_the_contract_json_byte_for_byte() {
    let (app, all) = seeded().await;
    let (start, end) = (slot(1), slot(29));
    for order in ["asc", "desc"] {
        let mut listed: Vec<&StoredReading> = all[1..29].iter().collect();
        if order == "desc" {
            listed.reverse();
        }
        let chunks: Vec<Vec<StoredReading>> = listed
            .chunks(4)
            .map(|c| c.iter().map(|r| (*r).clone()).collect())
            .collect();
        let first = format!(
            "{}/api/bg/range-user?startDate={}&endDate={}&order={order}&limit=4",
            app.base,
            stamp(start),
            stamp(end)
        );
        // Forward: pages 0..7, then back from the last page to the first.
        let route: Vec<usize> = (0..chunks.len())
            .chain((0..chunks.len() - 1).rev())
            .collect();
        let mut url = first;
        for (step, &page) in route.iter().enumerate() {
            let body = app
                .client
                .get(&url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let parsed: Value = serde_json::from_str(&body).unwrap();
            let p = &parsed["data"]["pagination"];
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let (next_cursor, prev_cursor) = (text(&p["next_cursor"]), text(&p["prev_cursor"]));
            let link = |c: &Option<String>| match c {
                None => "null".to_owned(),
                Some(c) => {
                    let start = stamp(start).replace(':', "%3A");
                    let end = stamp(end).replace(':', "%3A");
                    let order = if order == "desc" { "&order=desc" } else { "" };
                    format!(
                        r#""{}/api/bg/range-user?startDate={start}&endDate={end}{order}&limit=4&cursor={c}""#,
                        app.base
                    )
                }
            };
            let quoted =
                |c: &Option<String>| c.as_ref().map_or("null".into(), |c| format!("\"{c}\""));
            let want = format!(
                r#"{{"status":"success","data":{{"readings":[{}],"pagination":{{"next_cursor":{},"prev_cursor":{},"next":{},"prev":{},"limit":4}}}}}}"#,
                readings_json(&chunks[page]),
                quoted(&next_cursor),
                quoted(&prev_cursor),
                link(&next_cursor),
                link(&prev_cursor),
            );
            assert_eq!(body, want, "{order}, page {page} (step {step})");
            let back_pass = step >= chunks.len();
            let (has_next, has_prev) = if back_pass {
                (true, page > 0)
            } else {
                (page + 1 < chunks.len(), page > 0)
            };
            assert_eq!(
                (next_cursor.is_some(), prev_cursor.is_some()),
                (has_next, has_prev),
                "{order}, page {page} (step {step})"
            );
            url = match route.get(step + 1) {
                Some(&to) if to > page => text(&p["next"]).expect("a next link"),
                Some(_) => text(&p["prev"]).expect("a prev link"),
                None => break,
            };
        }
    }
}

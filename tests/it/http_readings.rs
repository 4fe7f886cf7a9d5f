//! The reading endpoints and operational endpoints over real HTTP.

use chrono::{Duration, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

fn base_time() -> chrono::DateTime<Utc> {
    Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::days(1)
}

#[tokio::test]
async fn single_reading_is_stored_and_served_as_latest() {
    let app = TestApp::spawn().await;
    let at = base_time();
    let r = app
        .post_json("/api/bg/user123/readings", &reading_json(at, 120))
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["outcome"], "inserted");
    assert_eq!(body["data"]["version"], 1);

    let r = app.get("/api/bg/user123/latest").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("last-modified"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let data = &body["data"];
    assert_eq!(data["user_id"], "user123");
    assert_eq!(data["glucose_value"], 120);
    assert_eq!(data["glucose_unit"], "mg/dL");
    assert_eq!(
        data["trend_direction"], "steady",
        "Dexcom's flat is stored as steady"
    );
    assert_eq!(data["device_info"]["transmitter_id"], "TX1");
    assert_eq!(data["reading_type"], "CGM");
    assert_eq!(data["source"], "dexcom");
    assert_eq!(data["version"], 1);
    assert_eq!(
        data["timestamp"],
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // Conditional GET.
    let r = app
        .get_with("/api/bg/user123/latest", "if-none-match", &etag)
        .await;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.text().await.unwrap().is_empty());

    // A new version changes the ETag, so the old one no longer matches.
    let mut updated = reading_json(at, 125);
    updated["trend_direction"] = json!("singleUp");
    let r = app.post_json("/api/bg/user123/readings", &updated).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["outcome"], "updated");
    assert_eq!(body["data"]["version"], 2);
    let r = app
        .get_with("/api/bg/user123/latest", "if-none-match", &etag)
        .await;
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["trend_direction"], "rising");
}

#[tokio::test]
async fn if_modified_since_gives_304() {
    let app = TestApp::spawn().await;
    app.post_json("/api/bg/u1/readings", &reading_json(base_time(), 99))
        .await;
    let r = app.get("/api/bg/u1/latest").await;
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    let r = app
        .get_with("/api/bg/u1/latest", "if-modified-since", &last_modified)
        .await;
    assert_eq!(r.status(), 304);
    // A date before the change is not "unmodified since".
    let before = httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    let r = app
        .get_with("/api/bg/u1/latest", "if-modified-since", &before)
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn latest_without_readings_is_404() {
    let app = TestApp::spawn().await;
    expect_error(
        app.get("/api/bg/nobody/latest").await,
        404,
        "RESOURCE_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn mmol_and_low_high_inputs_are_normalized() {
    let app = TestApp::spawn().await;
    let at = base_time();
    let mut mmol = reading_json(at, 0);
    mmol["glucose_value"] = json!(5.5);
    mmol["glucose_unit"] = json!("mmol/L");
    let mut low = reading_json(at + Duration::minutes(5), 0);
    low["glucose_value"] = Value::Null;
    low["status"] = json!("low");
    let mut high = reading_json(at + Duration::minutes(10), 0);
    high["glucose_value"] = Value::Null;
    high["status"] = json!("high");
    let r = app
        .post_json(
            "/api/bg/u1/readings",
            &json!({"readings": [mmol, low, high]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let page: Value = app.get("/api/bg/u1").await.json().await.unwrap();
    let readings = page["data"]["readings"].as_array().unwrap();
    let got: Vec<_> = readings
        .iter()
        .map(|r| (r["glucose_value"].as_u64().unwrap(), r["status"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![(99, Value::Null), (39, json!("low")), (401, json!("high"))]
    );
}

#[tokio::test]
async fn bulk_reports_per_record_outcomes_and_keeps_the_valid_ones() {
    let app = TestApp::spawn().await;
    let at = base_time();
    let mut wrong_type = reading_json(at + Duration::minutes(10), 100);
    wrong_type["glucose_value"] = json!("high");
    let mut unknown_field = reading_json(at + Duration::minutes(15), 100);
    unknown_field["colour"] = json!("red");
    let mut manual = reading_json(at, 200);
    manual["reading_type"] = json!("manual");
    manual["source"] = json!("manual");
    let body = json!({"readings": [
        reading_json(at, 100),
        reading_json(at, 100),
        manual,
        reading_json(at + Duration::minutes(5), 650),
        wrong_type,
        unknown_field,
        reading_json(at + Duration::minutes(20), 110),
    ]});
    let r = app.post_json("/api/bg/u1/readings", &body).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let data = &body["data"];
    assert_eq!(
        data["summary"],
        json!({"received": 7, "inserted": 2, "updated": 0, "duplicates": 2, "rejected": 3})
    );
    let results = data["results"].as_array().unwrap();
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "inserted",
            "duplicate",
            "duplicate",
            "rejected",
            "rejected",
            "rejected",
            "inserted"
        ]
    );
    assert_eq!(results[1]["reason"], "identical");
    assert_eq!(results[2]["reason"], "sensor_precedence");
    let pointer = |i: usize| results[i]["error"]["details"]["errors"][0]["pointer"].clone();
    assert_eq!(results[3]["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(pointer(3), "/readings/3/glucose_value");
    assert_eq!(pointer(4), "/readings/4/glucose_value");
    assert_eq!(pointer(5), "/readings/5/colour", "unknown fields are named");
    assert!(results[5]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));

    let page: Value = app.get("/api/bg/u1?limit=100").await.json().await.unwrap();
    let stored = page["data"]["readings"].as_array().unwrap();
    assert_eq!(stored.len(), 2, "only the valid records were stored");
    assert_eq!(
        stored[0]["glucose_value"], 100,
        "the CGM reading kept precedence"
    );
}

#[tokio::test]
async fn ten_thousand_readings_in_one_request() {
    let app = TestApp::spawn().await;
    let start = base_time() - Duration::days(40);
    let readings: Vec<Value> = (0..10_000)
        .map(|i| reading_json(start + Duration::minutes(5 * i), 80 + (i % 200) as u16))
        .collect();
    let r = app
        .post_json("/api/bg/bulk-user/readings", &json!({"readings": readings}))
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["summary"]["inserted"], 10_000);
    let stored = all_readings(&app.client, &app.url("/api/bg/bulk-user?limit=1000")).await;
    assert_eq!(stored.len(), 10_000);
}

#[tokio::test]
async fn range_pages_through_full_links_in_both_orders() {
    let app = TestApp::spawn().await;
    let start = base_time() - Duration::hours(3);
    let readings: Vec<Value> = (0..25)
        .map(|i| reading_json(start + Duration::minutes(5 * i), 100 + i as u16))
        .collect();
    app.post_json("/api/bg/u1/readings", &json!({"readings": readings}))
        .await;
    let start_q = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end_q =
        (start + Duration::minutes(5 * 25)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for order in ["asc", "desc"] {
        let mut url = Some(format!(
            "{}?startDate={}&endDate={}&limit=10&order={order}",
            app.url("/api/bg/u1"),
            urlencode(&start_q),
            urlencode(&end_q)
        ));
        let mut values = Vec::new();
        let mut last_page = Value::Null;
        while let Some(u) = url {
            assert!(u.starts_with("http://"), "links are absolute: {u}");
            let r = app.client.get(&u).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            values.extend(
                body["data"]["readings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["glucose_value"].as_u64().unwrap()),
            );
            assert_eq!(body["data"]["pagination"]["limit"], 10);
            url = body["data"]["pagination"]["next"]
                .as_str()
                .map(str::to_owned);
            last_page = body;
        }
        let mut expected: Vec<u64> = (100..125).collect();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(values, expected, "{order}");
        // And back one page from the last.
        let prev = last_page["data"]["pagination"]["prev"].as_str().unwrap();
        let body = get_json(&app.client, prev).await;
        let back: Vec<u64> = body["data"]["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["glucose_value"].as_u64().unwrap())
            .collect();
        assert_eq!(back, expected[10..20].to_vec(), "{order} prev page");
    }
}

#[tokio::test]
async fn dates_accept_aliases_and_plain_days() {
    let app = TestApp::spawn().await;
    let day = base_time().date_naive();
    let at = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    app.post_json("/api/bg/u1/readings", &reading_json(at, 130))
        .await;
    let next_day = day.succ_opt().unwrap();
    for query in [
        format!("startDate={day}&endDate={next_day}"),
        format!("from={day}&to={next_day}"),
    ] {
        let body: Value = app
            .get(&format!("/api/bg/u1?{query}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["data"]["readings"].as_array().unwrap().len(),
            1,
            "{query}"
        );
    }
    let body: Value = app
        .get(&format!("/api/bg/u1?startDate={next_day}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["data"]["readings"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn range_bounds_over_http_include_start_and_exclude_end() {
    let app = TestApp::spawn().await;
    let start = base_time();
    let readings: Vec<Value> = (0..4)
        .map(|i| reading_json(start + Duration::minutes(5 * i), 100 + i as u16))
        .collect();
    app.post_json("/api/bg/u1/readings", &json!({"readings": readings}))
        .await;
    let fmt = |t: chrono::DateTime<Utc>| {
        urlencode(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let values = |body: Value| -> Vec<u64> {
        body["data"]["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["glucose_value"].as_u64().unwrap())
            .collect()
    };
    // [start + 5 min, start + 15 min): the reading at the start bound is in, the one at the end is out.
    let q = format!(
        "/api/bg/u1?startDate={}&endDate={}",
        fmt(start + Duration::minutes(5)),
        fmt(start + Duration::minutes(15))
    );
    assert_eq!(
        values(app.get(&q).await.json().await.unwrap()),
        vec![101, 102]
    );
    // Fractional bounds: a start half a second after a reading excludes it; an end
    // half a second after a reading includes it.
    let q = format!(
        "/api/bg/u1?startDate={}&endDate={}",
        fmt(start + Duration::minutes(5) + Duration::milliseconds(500)),
        fmt(start + Duration::minutes(15) + Duration::milliseconds(500))
    );
    assert_eq!(
        values(app.get(&q).await.json().await.unwrap()),
        vec![102, 103]
    );
}

#[tokio::test]
async fn operational_endpoints() {
    let app = TestApp::spawn().await;
    let r = app.get("/health").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["storage"]["status"], "ok");
    assert_eq!(body["checks"]["storage"]["backend"], "sqlite");

    app.post_json("/api/bg/u1/readings", &reading_json(base_time(), 100))
        .await;
    let mut bad = reading_json(base_time(), 10);
    bad["glucose_value"] = json!(10);
    app.post_json("/api/bg/u1/readings", &bad).await;
    app.get("/api/bg/u1/latest").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/api/bg/{user_id}/latest\",status=\"200\"}",
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/bg/{user_id}/latest\"",
        "readings_ingested_total{source=\"dexcom\",outcome=\"inserted\"}",
        "readings_rejected_total{reason=\"glucose_value\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }

    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/bg/{userId}/latest",
        "/api/bg/{userId}",
        "/api/bg/{userId}/readings",
        "/health",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }

    // The explorer and its assets come from the binary, not a CDN.
    let r = app.get("/docs").await;
    assert!(
        r.status().is_success(),
        "/docs without a slash works: {}",
        r.status()
    );
    let r = app.get("/docs/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    assert!(!html.contains("https://"), "no external assets: {html}");
    let r = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().len() > 100_000);
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let app = TestApp::spawn().await;
    let r = app.get("/health").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let r = app
        .get_with("/api/bg/u1/latest", "x-request-id", "trace-me-42")
        .await;
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

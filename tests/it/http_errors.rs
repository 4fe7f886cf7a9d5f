//! Bad input: every case gets the error envelope with the right status and code,
//! and nothing of a rejected record is stored.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

async fn stored_count(app: &TestApp, user: &str) -> usize {
    let r = app.get(&format!("/api/bg/{user}?limit=1000")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["data"]["readings"]
        .as_array()
        .expect("readings array")
        .len()
}

fn recent() -> chrono::DateTime<Utc> {
    Utc::now() - Duration::hours(1)
}

#[tokio::test]
async fn invalid_single_readings_are_422_with_the_field_named() {
    let app = TestApp::spawn().await;
    let at = recent();
    let with = |field: &str, value: Value| {
        let mut r = reading_json(at, 100);
        r[field] = value;
        r
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "19 mg/dL",
            with("glucose_value", json!(19)),
            "/glucose_value",
        ),
        (
            "601 mg/dL",
            with("glucose_value", json!(601)),
            "/glucose_value",
        ),
        (
            "wrong type",
            with("glucose_value", json!("120")),
            "/glucose_value",
        ),
        (
            "unknown trend",
            with("trend_direction", json!("sideways")),
            "/trend_direction",
        ),
        (
            "bad date",
            with("timestamp", json!("2023-02-30T10:00:00Z")),
            "/timestamp",
        ),
        (
            "no timezone",
            with("timestamp", json!("2023-08-15T10:00:00")),
            "/timestamp",
        ),
        (
            "6 minutes ahead",
            with(
                "timestamp",
                json!((Utc::now() + Duration::minutes(6)).to_rfc3339()),
            ),
            "/timestamp",
        ),
        (
            "ancient",
            with("timestamp", json!("2001-01-01T00:00:00Z")),
            "/timestamp",
        ),
        (
            "other user",
            with("user_id", json!("someone-else")),
            "/user_id",
        ),
        (
            "bad unit",
            with("glucose_unit", json!("grains")),
            "/glucose_unit",
        ),
        (
            "bad reading type",
            with("reading_type", json!("guess")),
            "/reading_type",
        ),
        (
            "NaN-ish rate",
            with("trend_rate", json!(1e300)),
            "/trend_rate",
        ),
        (
            "missing value",
            with("glucose_value", Value::Null),
            "/glucose_value",
        ),
    ];
    for (name, body, pointer) in cases {
        let error = expect_error(
            app.post_json("/api/bg/u1/readings", &body).await,
            422,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(
            error["details"]["errors"][0]["pointer"], pointer,
            "{name}: {error}"
        );
    }
    let mut missing = reading_json(at, 100);
    missing.as_object_mut().unwrap().remove("timestamp");
    let error = expect_error(
        app.post_json("/api/bg/u1/readings", &missing).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(
        error["message"].as_str().unwrap().contains("timestamp"),
        "{error}"
    );
    let error = expect_error(
        app.post_json("/api/bg/u1/readings", &with("colour", json!("red")))
            .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(
        error["message"].as_str().unwrap().contains("colour"),
        "{error}"
    );
    assert_eq!(
        stored_count(&app, "u1").await,
        0,
        "nothing partial was stored"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let app = TestApp::spawn().await;
    for body in ["{\"timestamp\": ", "not json", "", "[1,2]", "42", "null"] {
        let r = app.post_raw("/api/bg/u1/readings", body).await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
    }
    expect_error(
        app.post_raw("/api/bg/u1/readings", vec![0xff, 0xfe]).await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    let e = expect_error(
        app.post_json("/api/bg/u1/readings", &json!({"readings": 5}))
            .await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["pointer"], "/readings");
    let extra = json!({"readings": [], "note": "x"});
    let e = expect_error(
        app.post_json("/api/bg/u1/readings", &extra).await,
        422,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["pointer"], "/note");
    assert_eq!(stored_count(&app, "u1").await, 0);
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "4096"), ("MAX_BATCH_RECORDS", "5")]).await;
    let big = format!("{{\"readings\": [{}]}}", "1,".repeat(4000) + "1");
    expect_error(
        app.post_raw("/api/bg/u1/readings", big).await,
        413,
        "VALIDATION_ERROR",
    )
    .await;
    let six: Vec<Value> = (0..6)
        .map(|i| reading_json(recent() - Duration::minutes(5 * i), 100))
        .collect();
    expect_error(
        app.post_json("/api/bg/u1/readings", &json!({"readings": six}))
            .await,
        413,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(stored_count(&app, "u1").await, 0);
}

/// Every route that takes a body (by the OpenAPI document) answers an oversized one
/// with the envelope, not the framework's plain text.
#[tokio::test]
async fn every_route_with_a_body_answers_an_oversized_one_with_the_envelope() {
    use utoipa::OpenApi;
    let app = TestApp::spawn_with(&[
        ("MAX_BODY_BYTES", "4096"),
        ("WEBHOOK_SIGNING_SECRET", "s3cret"),
    ])
    .await;
    let doc = serde_json::to_value(cgm_hub::api::ApiDoc::openapi()).unwrap();
    let mut checked = 0;
    for route in cgm_hub::api::route_table() {
        let path = cgm_hub::api::openapi_path(route.path);
        let op = &doc["paths"][&path][route.method.as_str().to_lowercase()];
        if op["requestBody"].is_null() {
            continue;
        }
        let url = app.url(&path.replace("{userId}", "u1").replace("{granteeId}", "u2"));
        let body = "x".repeat(5000);
        let mut request = app
            .client
            .request(route.method.clone(), url)
            .header("content-type", "application/json");
        if route.gate == cgm_hub::api::Gate::Webhook {
            // A webhook's headers are checked before its body is read: sign it.
            let now = chrono::Utc::now().timestamp();
            request = request
                .header("x-webhook-timestamp", now.to_string())
                .header(
                    "x-webhook-signature",
                    cgm_hub::sources::webhook::signature::sign(b"s3cret", now, body.as_bytes()),
                );
        }
        let response = request.body(body).send().await.unwrap();
        expect_error(response, 413, "VALIDATION_ERROR").await;
        checked += 1;
    }
    assert!(checked >= 4, "routes with a body: {checked}");
}

#[tokio::test]
async fn invalid_user_ids_are_400_everywhere() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(65);
    for id in ["bad%20id", "a.b", "%C3%A9", "%FF", long.as_str()] {
        for path in [format!("/api/bg/{id}"), format!("/api/bg/{id}/latest")] {
            let e = expect_error(app.get(&path).await, 400, "VALIDATION_ERROR").await;
            assert_eq!(e["details"]["errors"][0]["pointer"], "/user_id", "{path}");
        }
        let r = app
            .post_json(
                &format!("/api/bg/{id}/readings"),
                &reading_json(recent(), 100),
            )
            .await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
    }
}

#[tokio::test]
async fn bad_range_queries_are_400() {
    let app = TestApp::spawn().await;
    let cases = [
        ("limit=0", "/limit"),
        ("limit=1001", "/limit"),
        ("limit=ten", "/limit"),
        ("order=sideways", "/order"),
        ("startDate=yesterday", "/startDate"),
        ("endDate=2023-13-01", "/endDate"),
        ("startDate=2023-02-01&endDate=2023-01-01", "/endDate"),
        ("startDate=2023-01-01&from=2023-01-01", "/startDate"),
        ("cursor=not-a-cursor", "/cursor"),
    ];
    for (query, pointer) in cases {
        let e = expect_error(
            app.get(&format!("/api/bg/u1?{query}")).await,
            400,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(
            e["details"]["errors"][0]["pointer"], pointer,
            "{query}: {e}"
        );
    }
    expect_error(
        app.get("/api/bg/u1?colour=red").await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
}

#[tokio::test]
async fn tampered_or_foreign_cursors_are_400() {
    let app = TestApp::spawn().await;
    let readings: Vec<Value> = (0..5)
        .map(|i| reading_json(recent() - Duration::minutes(5 * i), 100))
        .collect();
    app.post_json(
        "/api/bg/u1/readings",
        &json!({"readings": readings.clone()}),
    )
    .await;
    app.post_json("/api/bg/u2/readings", &json!({"readings": readings}))
        .await;
    let body: Value = app.get("/api/bg/u1?limit=2").await.json().await.unwrap();
    let cursor = body["data"]["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .get(&format!("/api/bg/u1?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(r.status(), 200, "the genuine cursor works");

    let mut tampered = cursor.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (query, why) in [
        (format!("cursor={tampered}"), "modified"),
        (format!("cursor={}", &cursor[..cursor.len() - 2]), "issued"),
        (format!("cursor={cursor}&order=desc"), "different query"),
    ] {
        let e = expect_error(
            app.get(&format!("/api/bg/u1?limit=2&{query}")).await,
            400,
            "VALIDATION_ERROR",
        )
        .await;
        assert!(e["message"].as_str().is_some());
        let detail = e["details"]["errors"][0]["message"].as_str().unwrap();
        assert!(detail.contains(why), "{query}: {detail}");
    }
    let e = expect_error(
        app.get(&format!("/api/bg/u2?limit=2&cursor={cursor}"))
            .await,
        400,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(e["details"]["errors"][0]["pointer"], "/cursor");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let app = TestApp::spawn().await;
    expect_error(app.get("/nope").await, 404, "RESOURCE_NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url("/api/bg/u1/latest"))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn api_is_closed_unless_auth_is_disabled() {
    let app = TestApp::spawn_with(&[("AUTH_DISABLED", "false")]).await;
    expect_error(app.get("/api/bg/u1/latest").await, 401, "AUTH_ERROR").await;
    let r = app
        .post_json("/api/bg/u1/readings", &reading_json(recent(), 100))
        .await;
    expect_error(r, 401, "AUTH_ERROR").await;
    assert_eq!(app.get("/health").await.status(), 200, "health stays open");
    assert!(app
        .store
        .latest_reading(&user("u1"))
        .await
        .unwrap()
        .is_none());
}

//! The analytics routes over HTTP: `/stats`, `/agp` and `/summary.fhir` on a
//! small known dataset whose figures the test computes itself (never with
//! `cgm_hub::analytics`), the window's parameters and their errors, an empty
//! user, who may read, and the FHIR Bundle checked by an independent validator
//! (`scripts/fhir-validate.sh`, fhir.resources' R4 models; under `CI=true` a
//! validator that cannot run fails the test).

use std::time::Duration;

use cgm_hub::auth::jwt::mint_hs256;
use cgm_hub::domain::{Glucose, Reading, ReadingType, SensorStatus};
use cgm_hub::records::roles::Role;
use cgm_hub::records::shares::{Share, ShareRole};
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "analytics-test-secret-0123456789abcdef";

/// Start and end of the known window: two UTC days.
fn day0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 0, 0, 0).unwrap()
}

const WINDOW: &str = "startDate=2025-01-06T00:00:00Z&endDate=2025-01-08T00:00:00Z";

/// The known dataset: 5-minute CGM readings over two UTC days with a two-hour
/// gap on the second day (10:05–11:55 missing), a LOW (39) and a HIGH (401)
/// sensor reading; around it, readings the window must not count (one just
/// before the start, one exactly at the exclusive end, a manual fingerstick
/// inside). Returns the readings to store and, per 5-minute slot from day0,
/// the value the analytics must see (None: no CGM reading there).
fn known(user: &str) -> (Vec<Reading>, Vec<Option<f64>>) {
    let mut stored = Vec::new();
    let mut slots = Vec::new();
    for i in 0..576i64 {
        let at = day0() + Span::minutes(5 * i);
        if (288 + 121..=288 + 143).contains(&i) {
            slots.push(None);
            continue;
        }
        let mut r = cgm(user, cgm_hub::domain::ReadingTime::from_utc(at), 100);
        let value = match i {
            100 => {
                r.glucose = Glucose::out_of_range(SensorStatus::Low);
                39.0
            }
            400 => {
                r.glucose = Glucose::out_of_range(SensorStatus::High);
                401.0
            }
            _ => {
                let v = 45 + (i * 37 % 260) as u16;
                r = cgm(user, cgm_hub::domain::ReadingTime::from_utc(at), v);
                f64::from(v)
            }
        };
        stored.push(r);
        slots.push(Some(value));
    }
    let at = |t: DateTime<Utc>| cgm_hub::domain::ReadingTime::from_utc(t);
    stored.push(cgm(user, at(day0() - Span::minutes(5)), 300));
    stored.push(cgm(user, at(day0() + Span::days(2)), 300));
    stored.push(reading(
        user,
        at(day0() + Span::hours(12) + Span::seconds(150)),
        300,
        ReadingType::Manual,
    ));
    (stored, slots)
}

async fn seed(app: &TestApp, readings: Vec<Reading>) {
    for chunk in readings.chunks(1000) {
        app.store.upsert_readings(chunk.to_vec()).await.unwrap();
    }
}

async fn data(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "{path}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64()
        .is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

/// Type-7 percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[tokio::test]
async fn stats_of_a_known_window() {
    let app = TestApp::spawn().await;
    let (stored, slots) = known("an-known");
    seed(&app, stored).await;
    let values: Vec<f64> = slots.iter().flatten().copied().collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let share =
        |f: &dyn Fn(f64) -> bool| values.iter().filter(|v| f(**v)).count() as f64 * 100.0 / n;
    let (very_low, low, target, high, very_high) = (
        share(&|v| v < 54.0),
        share(&|v| (54.0..70.0).contains(&v)),
        share(&|v| (70.0..=180.0).contains(&v)),
        share(&|v| v > 180.0 && v <= 250.0),
        share(&|v| v > 250.0),
    );
    assert!(very_low > 0.0 && low > 0.0 && high > 0.0 && very_high > 0.0);

    let d = data(&app, &format!("/api/bg/an-known/stats?{WINDOW}")).await;
    assert_eq!(d["user_id"], "an-known");
    assert_eq!(d["start"], "2025-01-06T00:00:00Z");
    assert_eq!(d["end"], "2025-01-08T00:00:00Z");
    assert_eq!(d["tz"], "UTC");
    assert_eq!(
        d["readings"],
        values.len(),
        "CGM readings in [start, end) only"
    );
    assert_eq!(d["sufficient"], false, "two days are not 14");
    let m = d["metrics"].as_object().unwrap();
    assert_eq!(m.len(), 49, "{m:?}");
    assert!(close(&m["mean"], mean), "mean {} vs {mean}", m["mean"]);
    assert!(close(&m["gmi"], 3.31 + 0.02392 * mean), "gmi {}", m["gmi"]);
    assert!(close(&m["in_range_70_180"], target));
    assert!(close(&m["below_54"], very_low));
    assert!(close(&m["below_70"], very_low + low));
    assert!(close(&m["above_250"], very_high));
    assert!(close(&m["ndays"], 2.0), "{}", m["ndays"]);
    let r = &d["ranges"];
    for (key, want) in [
        ("very_low", very_low),
        ("low", low),
        ("target", target),
        ("high", high),
        ("very_high", very_high),
    ] {
        assert!(close(&r[key], want), "{key}: {} vs {want}", r[key]);
    }
    let gri = (3.0 * very_low + 2.4 * low + 1.6 * very_high + 0.8 * high).min(100.0);
    assert!(close(&d["gri"]["value"], gri), "{}", d["gri"]);
    let zone = ["A", "B", "C", "D", "E"][((gri / 20.0) as usize).min(4)];
    assert_eq!(d["gri"]["zone"], zone);
}

#[tokio::test]
async fn agp_bins_of_a_known_window() {
    let app = TestApp::spawn().await;
    let (stored, slots) = known("an-agp");
    seed(&app, stored).await;
    let d = data(&app, &format!("/api/bg/an-agp/agp?{WINDOW}")).await;
    assert_eq!(d["start"], "2025-01-06T00:00:00Z");
    assert_eq!(d["tz"], "UTC");
    let bins = d["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 288);
    for (k, bin) in bins.iter().enumerate() {
        let minute = 5 * (k + 1);
        assert_eq!(bin["minute"], minute);
        // Column `minute` of each day: the reading at that time of day (the grid
        // runs through the readings, so it equals them there); 24:00 of the first
        // day is 00:00 of the second, and of the second day lies past the end.
        let mut column: Vec<f64> = [0, 288]
            .iter()
            .filter_map(|day| slots.get(day + minute / 5).copied().flatten())
            .collect();
        column.sort_by(f64::total_cmp);
        assert_eq!(bin["n"], column.len(), "n of minute {minute}");
        for (key, p) in [
            ("p05", 0.05),
            ("p25", 0.25),
            ("p50", 0.5),
            ("p75", 0.75),
            ("p95", 0.95),
        ] {
            assert!(
                close(&bin[key], pct(&column, p)),
                "{key} of minute {minute}: {} vs {column:?}",
                bin[key]
            );
        }
    }
    // The gap and the window's end leave single values.
    assert_eq!(bins[120]["n"], 1, "10:05 on day two is inside the gap");
    assert_eq!(bins[287]["n"], 1);
    assert_eq!(bins[0]["n"], 2);
    // The statistics are those of /stats.
    let stats = data(&app, &format!("/api/bg/an-agp/stats?{WINDOW}")).await;
    assert_eq!(d["stats"], stats);

    // In Berlin (UTC+1 in January) the same readings move an hour later in the day.
    let berlin = data(
        &app,
        &format!("/api/bg/an-agp/agp?{WINDOW}&tz=Europe/Berlin"),
    )
    .await;
    assert_eq!(berlin["tz"], "Europe/Berlin");
    assert_eq!(berlin["stats"]["tz"], "Europe/Berlin");
    assert_eq!(berlin["stats"]["readings"], stats["readings"]);
    assert_eq!(berlin["bins"][12]["minute"], 65);
    assert_eq!(berlin["bins"][12]["p50"], bins[0]["p50"]);
}

#[tokio::test]
async fn a_user_without_readings_gets_nulls() {
    let app = TestApp::spawn().await;
    let d = data(&app, &format!("/api/bg/an-nobody/stats?{WINDOW}")).await;
    assert_eq!(d["readings"], 0);
    assert_eq!(d["sufficient"], false);
    assert_eq!(d["ranges"], Value::Null);
    assert_eq!(d["gri"], Value::Null);
    let m = d["metrics"].as_object().unwrap();
    assert_eq!(m.len(), 49);
    assert!(m.values().all(Value::is_null), "{m:?}");
    let agp = data(&app, "/api/bg/an-nobody/agp").await;
    let bins = agp["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 288);
    assert!(bins
        .iter()
        .all(|b| b["n"] == 0 && b["p05"].is_null() && b["p95"].is_null()));
}

/// More readings than one store scan returns (5,000): every one is counted
/// once, and 18 full days pass the consensus gate.
#[tokio::test]
async fn a_long_window_is_read_in_chunks() {
    let app = TestApp::spawn().await;
    let start = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
    let readings: Vec<Reading> = (0..18 * 288)
        .map(|i| {
            let at = cgm_hub::domain::ReadingTime::from_utc(start + Span::minutes(5 * i));
            cgm("an-long", at, if i % 2 == 0 { 110 } else { 130 })
        })
        .collect();
    seed(&app, readings).await;
    let d = data(
        &app,
        "/api/bg/an-long/stats?startDate=2025-02-01T00:00:00Z&endDate=2025-02-19T00:00:00Z",
    )
    .await;
    assert_eq!(d["readings"], 18 * 288);
    assert!(close(&d["metrics"]["mean"], 120.0));
    assert_eq!(d["sufficient"], true);
    assert!(close(&d["ranges"]["target"], 100.0));
}

#[tokio::test]
async fn the_default_window_is_the_14_days_ending_now() {
    let app = TestApp::spawn().await;
    let now = Utc::now();
    let at = |ago: Span| cgm_hub::domain::ReadingTime::from_utc(now - ago);
    seed(
        &app,
        vec![
            cgm("an-recent", at(Span::hours(1)), 100),
            cgm("an-recent", at(Span::days(13)), 140),
            cgm("an-recent", at(Span::days(15)), 300),
        ],
    )
    .await;
    let d = data(&app, "/api/bg/an-recent/stats").await;
    assert_eq!(d["readings"], 2);
    assert!(close(&d["metrics"]["mean"], 120.0));
    let start = DateTime::parse_from_rfc3339(d["start"].as_str().unwrap()).unwrap();
    let end = DateTime::parse_from_rfc3339(d["end"].as_str().unwrap()).unwrap();
    assert_eq!(end - start, Span::days(14));
    assert!(
        (end.with_timezone(&Utc) - now).num_seconds().abs() <= 5,
        "{end}"
    );
    // Only an end: the 14 days before it.
    let d = data(&app, "/api/bg/an-recent/stats?endDate=2025-01-15T00:00:00Z").await;
    assert_eq!(d["start"], "2025-01-01T00:00:00Z");
}

#[tokio::test]
async fn bad_windows_are_400_with_the_parameter_named() {
    let app = TestApp::spawn().await;
    let cases = [
        ("startDate=last-week", "/startDate"),
        ("endDate=2025-02-30T00:00:00Z", "/endDate"),
        ("tz=Mars/Olympus_Mons", "/tz"),
        (
            "startDate=2025-01-08T00:00:00Z&endDate=2025-01-08T00:00:00Z",
            "/endDate",
        ),
        (
            "startDate=2025-01-09T00:00:00Z&endDate=2025-01-08T00:00:00Z",
            "/endDate",
        ),
        (
            "startDate=2024-01-01T00:00:00Z&endDate=2025-01-02T00:00:00Z",
            "/endDate",
        ),
        ("startDate=2020-01-01T00:00:00Z", "/startDate"),
    ];
    for route in ["stats", "agp", "summary.fhir"] {
        for (query, pointer) in cases {
            let r = app.get(&format!("/api/bg/an-bad/{route}?{query}")).await;
            let error = expect_error(r, 400, "VALIDATION_ERROR").await;
            let pointers: Vec<&str> = error["details"]["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{route}?{query}: {error}"))
                .iter()
                .map(|e| e["pointer"].as_str().unwrap())
                .collect();
            assert_eq!(pointers, [pointer], "{route}?{query}: {error}");
        }
        let r = app.get(&format!("/api/bg/an-bad/{route}?limit=5")).await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
        let r = app.get(&format!("/api/bg/not%20valid/{route}")).await;
        expect_error(r, 400, "VALIDATION_ERROR").await;
    }
    // Exactly 366 days is allowed.
    data(
        &app,
        "/api/bg/an-bad/stats?startDate=2024-01-01T00:00:00Z&endDate=2025-01-01T00:00:00Z",
    )
    .await;
}

fn token(sub: &str, role: Role) -> String {
    mint_hs256(SECRET, sub, &[role], Duration::from_secs(600), None, None).unwrap()
}

#[tokio::test]
async fn a_caregiver_with_a_share_reads_and_a_stranger_does_not() {
    let app = TestApp::spawn_with(&[("AUTH_DISABLED", "false"), ("AUTH_JWT_SECRET", SECRET)]).await;
    let (stored, _) = known("an-pat");
    seed(&app, stored).await;
    app.store
        .put_share(
            Share {
                patient_id: user("an-pat"),
                grantee_id: user("an-mom"),
                role: ShareRole::Caregiver,
                created_at: Utc::now(),
                expires_at: None,
            },
            100,
        )
        .await
        .unwrap();
    let get = |path: &str, token: String| app.client.get(app.url(path)).bearer_auth(token).send();
    for route in ["stats", "agp", "summary.fhir"] {
        let path = format!("/api/bg/an-pat/{route}?{WINDOW}");
        let r = get(&path, token("an-mom", Role::Caregiver)).await.unwrap();
        assert_eq!(r.status(), 200, "{route}");
        let r = get(&path, token("an-aunt", Role::Caregiver)).await.unwrap();
        expect_error(r, 403, "FORBIDDEN").await;
        let r = get(&path, token("an-other", Role::Patient)).await.unwrap();
        expect_error(r, 403, "FORBIDDEN").await;
        // A stranger is refused before the query is looked at.
        let bad = format!("/api/bg/an-pat/{route}?tz=Nowhere");
        let r = get(&bad, token("an-aunt", Role::Caregiver)).await.unwrap();
        expect_error(r, 403, "FORBIDDEN").await;
    }
    let r = get(
        &format!("/api/bg/an-pat/stats?{WINDOW}"),
        token("an-mom", Role::Caregiver),
    )
    .await
    .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["readings"], 553);

    // Both decisions are in the audit trail, as read_analytics.
    let admin = token("an-admin", Role::Admin);
    eventually(
        "the analytics reads are audited",
        Duration::from_secs(10),
        || {
            let admin = admin.clone();
            let app = &app;
            async move {
                let r = app
                    .client
                    .get(app.url("/api/audit?user_id=an-pat&limit=100"))
                    .bearer_auth(admin)
                    .send()
                    .await
                    .unwrap();
                let body: Value = r.json().await.unwrap();
                let entries = body["data"]["entries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let seen = |actor: &str, decision: &str| {
                    entries.iter().any(|e| {
                        e["action"] == "read_analytics"
                            && e["actor"] == actor
                            && e["decision"] == decision
                    })
                };
                seen("an-mom", "allowed") && seen("an-aunt", "denied")
            }
        },
    )
    .await;
}

/// Runs `scripts/fhir-validate.sh` on a document. Invalid: the test fails.
/// Cannot run (no python3, no PyPI): fails under `CI=true`, else says so.
fn validate_fhir(doc: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fhir-validate.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(&path)
        .output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let out = match out {
        Ok(out) => out,
        Err(e) if !ci => {
            eprintln!("FHIR validator not run (bash: {e}); it must run under CI=true");
            return;
        }
        Err(e) => panic!("the FHIR validator must run under CI: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            let report: Value = serde_json::from_slice(&out.stdout).expect("validator report");
            assert_eq!(report["valid"], true);
            assert_eq!(report["fhir_version"], "4.0.1");
            assert_eq!(
                report["resources"].as_array().unwrap().len(),
                doc["entry"].as_array().unwrap().len() + 1,
                "every entry was validated: {report}"
            );
        }
        Some(1) => panic!("the bundle is not valid FHIR R4: {stderr}\n{doc:#}"),
        _ if !ci => eprintln!("FHIR validator could not run (it must under CI=true): {stderr}"),
        _ => panic!("the FHIR validator must run under CI: {stderr}"),
    }
}

fn loinc_code(resource: &Value) -> &str {
    assert_eq!(resource["code"]["coding"][0]["system"], "http://loinc.org");
    resource["code"]["coding"][0]["code"].as_str().unwrap()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[tokio::test]
async fn the_fhir_summary_is_a_valid_cgm_ig_bundle() {
    let app = TestApp::spawn().await;
    let (stored, _) = known("an-fhir");
    seed(&app, stored).await;
    let stats = data(&app, &format!("/api/bg/an-fhir/stats?{WINDOW}")).await;
    let r = app
        .get(&format!("/api/bg/an-fhir/summary.fhir?{WINDOW}"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 8, "patient, summary, six members");
    let by_url = |url: &Value| {
        entries
            .iter()
            .find(|e| &e["fullUrl"] == url)
            .map(|e| &e["resource"])
            .unwrap_or_else(|| panic!("no entry {url}"))
    };
    let patient = &entries[0];
    assert_eq!(patient["resource"]["resourceType"], "Patient");
    assert_eq!(patient["resource"]["identifier"][0]["value"], "an-fhir");
    let summary = &entries[1]["resource"];
    assert_eq!(loinc_code(summary), "107931-8");
    let period =
        serde_json::json!({"start": "2025-01-06T00:00:00Z", "end": "2025-01-08T00:00:00Z"});
    let members: Vec<&Value> = summary["hasMember"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| by_url(&m["reference"]))
        .collect();
    assert_eq!(members.len(), 6);
    let mut codes = Vec::new();
    for o in members.iter().copied().chain([summary]) {
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["status"], "final");
        assert_eq!(o["effectivePeriod"], period);
        assert_eq!(o["subject"]["reference"], patient["fullUrl"]);
        codes.push(loinc_code(o));
    }
    assert_eq!(
        codes,
        ["97507-8", "106793-3", "97506-0", "104638-2", "104636-6", "104637-4", "107931-8"]
    );
    let m = &stats["metrics"];
    let quantity = |o: &Value, value: &Value, unit: &str| {
        let q = &o["valueQuantity"];
        assert_eq!(q["system"], "http://unitsofmeasure.org");
        assert_eq!(q["code"], unit);
        assert!(
            close(&q["value"], round2(value.as_f64().unwrap())),
            "{q} vs {value}"
        );
    };
    quantity(members[0], &m["mean"], "mg/dL");
    quantity(members[2], &m["gmi"], "%");
    quantity(members[3], &m["cv"], "%");
    quantity(members[4], &m["ndays"], "d");
    quantity(members[5], &m["active_percent"], "%");
    let bands: Vec<(&str, f64)> = members[1]["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["valueQuantity"]["code"], "%");
            (loinc_code(c), c["valueQuantity"]["value"].as_f64().unwrap())
        })
        .collect();
    let ranges = &stats["ranges"];
    let want = [
        ("104642-4", "very_low"),
        ("104641-6", "low"),
        ("97510-2", "target"),
        ("104640-8", "high"),
        ("104639-0", "very_high"),
    ];
    for ((code, value), (want_code, key)) in bands.iter().zip(want) {
        assert_eq!(*code, want_code);
        assert!(
            (value - round2(ranges[key].as_f64().unwrap())).abs() < 1e-9,
            "{key}"
        );
    }
    validate_fhir(&bundle);

    // Without readings every member says why it has no value.
    let r = app.get("/api/bg/an-fhir-empty/summary.fhir").await;
    assert_eq!(r.status(), 200);
    let empty: Value = r.json().await.unwrap();
    let entries = empty["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 8);
    for e in &entries[2..] {
        let o = &e["resource"];
        assert!(o["valueQuantity"].is_null());
        let absent = if o["component"].is_array() {
            o["component"][0]["dataAbsentReason"].clone()
        } else {
            o["dataAbsentReason"].clone()
        };
        assert_eq!(absent["coding"][0]["code"], "not-performed", "{o}");
    }
    validate_fhir(&empty);
}

/// The statistics are cached per set of readings (`store::samples`): a write
/// inside the window, whether a new reading, a changed value at a stored
/// instant or a late one for an earlier day, shows in the next answer; and a
/// window whose bounds move without taking in a new reading is answered alike.
#[tokio::test]
async fn stats_follow_every_write_to_the_window() {
    let app = TestApp::spawn().await;
    let user = "an-cached";
    let at = |i: i64| cgm_hub::domain::ReadingTime::from_utc(day0() + Span::minutes(5 * i));
    seed(&app, (0..576).map(|i| cgm(user, at(i), 100)).collect()).await;
    let path = format!("/api/bg/{user}/stats?{WINDOW}");
    let first = data(&app, &path).await;
    assert_eq!(first["readings"], 576);
    assert!(close(&first["metrics"]["mean"], 100.0), "{first}");
    assert_eq!(data(&app, &path).await["metrics"], first["metrics"]);

    // A changed value at a stored instant (a re-sent, corrected reading).
    seed(&app, vec![cgm(user, at(10), 200)]).await;
    let changed = data(&app, &path).await;
    assert_eq!(changed["readings"], 576);
    assert!(
        close(&changed["metrics"]["mean"], 100.0 + 100.0 / 576.0),
        "{changed}"
    );

    // A late reading between two stored ones on the first day.
    let late = cgm_hub::domain::ReadingTime::from_utc(day0() + Span::minutes(52));
    seed(&app, vec![cgm(user, late, 400)]).await;
    let after = data(&app, &path).await;
    assert_eq!(after["readings"], 577);
    assert!(
        close(
            &after["metrics"]["mean"],
            (576.0 * 100.0 + 100.0 + 400.0) / 577.0
        ),
        "{after}"
    );

    // The window starting a second later still holds the same readings
    // (the first is at day0): same readings, same statistics.
    let shifted =
        format!("/api/bg/{user}/stats?startDate=2025-01-05T23:59:59Z&endDate=2025-01-08T00:00:00Z");
    assert_eq!(data(&app, &shifted).await["metrics"], after["metrics"]);
    // One that leaves the first reading out does not.
    let later =
        format!("/api/bg/{user}/stats?startDate=2025-01-06T00:00:01Z&endDate=2025-01-08T00:00:00Z");
    assert_eq!(data(&app, &later).await["readings"], 576);
}

/// Two instances on one PostgreSQL store: what one stores, the other's cached
/// statistics show at once (the day marks are in the store, not in the process).
#[tokio::test]
async fn a_write_through_one_instance_reaches_the_cache_of_another() {
    let schema = PgSchema::new();
    let _migrated = schema.store().await;
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let vars = [
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ];
    let a = TestApp::spawn_with(&vars).await;
    let b = TestApp::spawn_with(&vars).await;
    let user = "an-shared";
    let at = |i: i64| cgm_hub::domain::ReadingTime::from_utc(day0() + Span::minutes(5 * i));
    seed(&a, (0..288).map(|i| cgm(user, at(i), 120)).collect()).await;
    let path = format!("/api/bg/{user}/stats?{WINDOW}");
    assert_eq!(data(&a, &path).await["readings"], 288);
    let body = serde_json::json!({"readings": [{
        "timestamp": "2025-01-07T12:00:00Z", "glucose_value": 240, "source": "dexcom"
    }]});
    let r = b
        .post_json(&format!("/api/bg/{user}/readings"), &body)
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let d = data(&a, &path).await;
    assert_eq!(d["readings"], 289);
    assert!(
        close(&d["metrics"]["mean"], (288.0 * 120.0 + 240.0) / 289.0),
        "{d}"
    );
    // The other analytics routes on PostgreSQL, through either instance.
    let daily = data(
        &b,
        &format!("/api/bg/{user}/daily?startDate=2025-01-06&endDate=2025-01-08&tz=UTC"),
    )
    .await;
    let days: Vec<(String, u64)> = daily["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["readings"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [("2025-01-06".to_owned(), 288), ("2025-01-07".to_owned(), 1)]
    );
    let agp = data(&b, &format!("/api/bg/{user}/agp?{WINDOW}")).await;
    assert_eq!(agp["bins"].as_array().unwrap().len(), 288);
    assert_eq!(agp["stats"]["readings"], 289);
    let r = a
        .get(&format!("/api/bg/{user}/summary.fhir?{WINDOW}"))
        .await;
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
}

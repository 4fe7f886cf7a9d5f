//! Test data: user ids, readings on the 5-minute grid, their JSON and Dexcom wire
//! forms, and fresh names for per-test resources.

use cgm_hub::domain::{
    DeviceInfo, Glucose, MgDl, Reading, ReadingTime, ReadingType, Source, Trend, TrendRate, UserId,
};
use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc};
use serde_json::{json, Value};

pub fn user(id: &str) -> UserId {
    UserId::parse(id).expect("valid test user id")
}

/// A recent instant on the 5-minute grid, `slot` grid steps before a fixed anchor.
pub fn slot(slot: i64) -> ReadingTime {
    // Fixed once per test run, so a run that crosses midnight stays consistent.
    static ANCHOR: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    let anchor = *ANCHOR.get_or_init(|| {
        Utc::now()
            .duration_trunc(ChronoDuration::days(1))
            .expect("truncation")
            - ChronoDuration::days(2)
    });
    ReadingTime::from_utc(anchor + ChronoDuration::minutes(5 * slot))
}

pub fn reading(user_id: &str, at: ReadingTime, mg_dl: u16, kind: ReadingType) -> Reading {
    Reading {
        user_id: user(user_id),
        timestamp: at,
        glucose: Glucose::value(MgDl::new(mg_dl).expect("in range")),
        trend: Some(Trend::Steady),
        trend_rate: Some(TrendRate::new(0.1).expect("in range")),
        device: DeviceInfo::parse(Some("G7-1".into()), Some("SN1".into()), Some("TX1".into()))
            .expect("valid device"),
        reading_type: kind,
        source: if kind == ReadingType::Manual {
            Source::manual()
        } else {
            Source::dexcom()
        },
        source_record_id: None,
        display_offset_minutes: None,
    }
}

pub fn cgm(user_id: &str, at: ReadingTime, mg_dl: u16) -> Reading {
    reading(user_id, at, mg_dl, ReadingType::Cgm)
}

/// A reading in the contract's JSON input format.
pub fn reading_json(at: DateTime<Utc>, mg_dl: u16) -> Value {
    json!({
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "glucose_value": mg_dl,
        "trend_direction": "flat",
        "trend_rate": 0.2,
        "device_info": {"device_id": "G7-1", "serial_number": "SN1", "transmitter_id": "TX1"},
        "reading_type": "CGM",
        "source": "dexcom"
    })
}

/// A Dexcom v3 EGV record, as Dexcom sends it.
pub fn egv(at: chrono::DateTime<Utc>, value: u16) -> Value {
    json!({
        "recordId": uuid::Uuid::new_v4().to_string(),
        "systemTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "displayTime": (at - chrono::Duration::hours(5)).format("%Y-%m-%dT%H:%M:%S-05:00").to_string(),
        "transmitterId": "hashed-tx",
        "transmitterTicks": 123_456,
        "value": value,
        "status": null,
        "trend": "flat",
        "trendRate": 0.1,
        "unit": "mg/dL",
        "rateUnit": "mg/dL/min",
        "displayDevice": "iOS",
        "transmitterGeneration": "g7"
    })
}

/// A fresh name for per-test resources.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

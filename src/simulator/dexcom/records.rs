//! Dexcom's JSON shapes (v3 and v2 EGVs, dataRange, devices), built with the
//! simulator's own serde structs, independent of cgm-hub's parsing types.

use chrono::{DateTime, Offset, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::time::{with_offset, without_offset};
use super::users::SimUser;
use crate::simulator::patients::{DemoSample, SensorLevel, MAX_REPORTED_MG_DL, MIN_REPORTED_MG_DL};

/// `transmitterTicks` count seconds from this instant (2015-01-01T00:00:00Z),
/// so they increase with time and stay positive.
const TICKS_EPOCH_SECS: i64 = 1_420_070_400;
/// Rates beyond this many mg/dL/min are reported as `rateOutOfRange`.
const RATE_OUT_OF_RANGE: f64 = 8.0;

/// How records look, fixed per request from the fault settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    /// Receiver upload: no offsets, `displayDevice` "receiver", G6.
    pub(super) receiver: bool,
    /// LOW/HIGH as `value: null` rather than 40/400.
    pub(super) low_high_as_null: bool,
}

impl Style {
    fn display_device<'a>(&self, user: &'a SimUser) -> &'a str {
        if self.receiver {
            "receiver"
        } else {
            user.app_device
        }
    }

    fn generation(&self) -> &'static str {
        if self.receiver {
            "g6"
        } else {
            "g7"
        }
    }

    fn display_app(&self) -> &'static str {
        if self.receiver {
            "receiver"
        } else {
            "G7"
        }
    }
}

/// `systemTime` and `displayTime` of one instant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Times {
    pub(super) system_time: String,
    pub(super) display_time: String,
}

/// v3 style: offsets for app records, none for receiver records.
pub(super) fn times_v3(user: &SimUser, style: Style, t: DateTime<Utc>) -> Times {
    let local = t.with_timezone(&user.local_offset());
    if style.receiver {
        Times {
            system_time: without_offset(t.naive_utc()),
            display_time: without_offset(local.naive_local()),
        }
    } else {
        Times {
            system_time: with_offset(t.with_timezone(&Utc.fix())),
            display_time: with_offset(local),
        }
    }
}

/// v2 style: never an offset.
pub(super) fn times_v2(user: &SimUser, t: DateTime<Utc>) -> Times {
    Times {
        system_time: without_offset(t.naive_utc()),
        display_time: without_offset(t.with_timezone(&user.local_offset()).naive_local()),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EgvV3<'a> {
    record_id: Uuid,
    system_time: String,
    display_time: String,
    transmitter_id: &'a str,
    transmitter_ticks: i64,
    value: Option<u16>,
    status: &'static str,
    trend: &'static str,
    trend_rate: Option<f64>,
    unit: &'static str,
    rate_unit: &'static str,
    display_device: &'a str,
    transmitter_generation: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EgvsV3<'a> {
    record_type: &'static str,
    record_version: &'static str,
    user_id: &'a str,
    records: Vec<EgvV3<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EgvV2 {
    system_time: String,
    display_time: String,
    value: Option<u16>,
    realtime_value: Option<u16>,
    smoothed_value: Option<u16>,
    status: &'static str,
    trend: &'static str,
    trend_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EgvsV2 {
    unit: &'static str,
    rate_unit: &'static str,
    egvs: Vec<EgvV2>,
}

/// The v3 `/egvs` body for these samples.
pub(super) fn egvs_v3(user: &SimUser, style: Style, samples: &[DemoSample]) -> Vec<u8> {
    let display_device = style.display_device(user);
    let records = samples
        .iter()
        .map(|s| {
            let (value, status) = value_and_status(s, style);
            let times = times_v3(user, style, s.timestamp);
            EgvV3 {
                record_id: user.record_id(s.timestamp),
                system_time: times.system_time,
                display_time: times.display_time,
                transmitter_id: &user.transmitter_id,
                transmitter_ticks: (s.timestamp.timestamp() - TICKS_EPOCH_SECS).max(0),
                value,
                status,
                trend: trend(s.trend_rate),
                trend_rate: s.trend_rate,
                unit: "mg/dL",
                rate_unit: "mg/dL/min",
                display_device,
                transmitter_generation: style.generation(),
            }
        })
        .collect();
    to_json(&EgvsV3 {
        record_type: "egv",
        record_version: "3.0",
        user_id: &user.user_id,
        records,
    })
}

/// The v2 `/egvs` body for these samples.
pub(super) fn egvs_v2(user: &SimUser, style: Style, samples: &[DemoSample]) -> Vec<u8> {
    let egvs = samples
        .iter()
        .map(|s| {
            let (value, status) = value_and_status(s, style);
            let times = times_v2(user, s.timestamp);
            EgvV2 {
                system_time: times.system_time,
                display_time: times.display_time,
                value,
                realtime_value: value,
                smoothed_value: None,
                status,
                trend: trend(s.trend_rate),
                trend_rate: s.trend_rate,
            }
        })
        .collect();
    to_json(&EgvsV2 {
        unit: "mg/dL",
        rate_unit: "mg/dL/min",
        egvs,
    })
}

/// The `egvs` block of dataRange: `{"start":{times},"end":{times}}`.
pub(super) fn range_block(start: Times, end: Times) -> Value {
    json!({ "start": start, "end": end })
}

/// One entry of `/devices` (v3 names; v2 calls the schedules `alertScheduleList`).
pub(super) fn device(user: &SimUser, style: Style, last_upload: String, v2: bool) -> Value {
    let schedules = if v2 {
        "alertScheduleList"
    } else {
        "alertSchedules"
    };
    let mut d = json!({
        "lastUploadDate": last_upload,
        "transmitterId": user.transmitter_id,
        "transmitterGeneration": style.generation(),
        "displayDevice": style.display_device(user),
        "displayApp": style.display_app(),
    });
    if let Some(map) = d.as_object_mut() {
        map.insert(schedules.to_owned(), json!([]));
    }
    d
}

/// Dexcom's trend arrow for a rate in mg/dL/min (thresholds 1, 2, 3).
pub(super) fn trend(rate: Option<f64>) -> &'static str {
    let Some(r) = rate else {
        return "notComputable";
    };
    match r {
        r if !r.is_finite() || r.abs() > RATE_OUT_OF_RANGE => "rateOutOfRange",
        r if r > 3.0 => "doubleUp",
        r if r > 2.0 => "singleUp",
        r if r > 1.0 => "fortyFiveUp",
        r if r >= -1.0 => "flat",
        r if r >= -2.0 => "fortyFiveDown",
        r if r >= -3.0 => "singleDown",
        _ => "doubleDown",
    }
}

fn value_and_status(s: &DemoSample, style: Style) -> (Option<u16>, &'static str) {
    let clamped = |v| {
        if style.low_high_as_null {
            None
        } else {
            Some(v)
        }
    };
    match s.level {
        SensorLevel::InRange => (Some(s.glucose_mg_dl), "ok"),
        SensorLevel::Low => (clamped(MIN_REPORTED_MG_DL), "low"),
        SensorLevel::High => (clamped(MAX_REPORTED_MG_DL), "high"),
    }
}

fn to_json<T: Serialize>(body: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty body would show it.
    serde_json::to_vec(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: DateTime<Utc>, mg_dl: u16, level: SensorLevel) -> DemoSample {
        DemoSample {
            timestamp: t,
            glucose_mg_dl: mg_dl,
            level,
            trend_rate: Some(-0.4),
        }
    }

    fn body(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn low_high_as_null_or_as_40_and_400() {
        let user = SimUser::resolve("demo-alice", "c");
        let t = Utc::now();
        let samples = [
            sample(t, 39, SensorLevel::Low),
            sample(t, 401, SensorLevel::High),
            sample(t, 120, SensorLevel::InRange),
        ];
        let null_form = Style {
            receiver: false,
            low_high_as_null: true,
        };
        let j = body(&egvs_v3(&user, null_form, &samples));
        let got: Vec<_> = (0..3)
            .map(|i| {
                (
                    j["records"][i]["value"].clone(),
                    j["records"][i]["status"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Value::Null, json!("low")),
                (Value::Null, json!("high")),
                (json!(120), json!("ok"))
            ]
        );
        let clamped = Style {
            low_high_as_null: false,
            ..null_form
        };
        for j in [
            body(&egvs_v3(&user, clamped, &samples))["records"].clone(),
            body(&egvs_v2(&user, clamped, &samples))["egvs"].clone(),
        ] {
            assert_eq!(
                (&j[0]["value"], &j[0]["status"]),
                (&json!(40), &json!("low"))
            );
            assert_eq!(
                (&j[1]["value"], &j[1]["status"]),
                (&json!(400), &json!("high"))
            );
            assert_eq!(j[0]["trend"], "flat");
        }
    }

    #[test]
    fn trend_follows_dexcom_thresholds() {
        let cases = [
            (None, "notComputable"),
            (Some(0.0), "flat"),
            (Some(1.0), "flat"),
            (Some(-1.0), "flat"),
            (Some(1.1), "fortyFiveUp"),
            (Some(2.5), "singleUp"),
            (Some(3.1), "doubleUp"),
            (Some(-1.5), "fortyFiveDown"),
            (Some(-2.5), "singleDown"),
            (Some(-3.5), "doubleDown"),
            (Some(9.0), "rateOutOfRange"),
            (Some(-9.0), "rateOutOfRange"),
        ];
        for (rate, want) in cases {
            assert_eq!(trend(rate), want, "{rate:?}");
        }
    }
}

//! The FHIR R4 form of a window's statistics (`GET /api/bg/{userId}/summary.fhir`):
//! a `collection` Bundle shaped as the HL7 FHIR Continuous Glucose Monitoring IG
//! 1.0.0 (STU 1) summary, so an EHR can take the report without knowing our JSON.
//!
//! Codes, all LOINC, as the IG's profiles (`input/fsh/profiles.fsh` of HL7/cgm)
//! and its published 1.0.0 examples give them:
//! - summary observation 107931-8 (from the published 1.0.0 example
//!   `Observation-cgmSummaryExample`; an earlier state of the IG's sources coded it
//!   with the IG's temporary code system `cgm-summary` instead);
//! - mean glucose 97507-8 (mg/dL), GMI 97506-0 (%), CV 104638-2 (%), days of
//!   wear 104636-6 (d), sensor active percentage 104637-4 (%);
//! - times in ranges: the panel 106793-3 with one component per band: very low
//!   (< 54) 104642-4, low (54–69) 104641-6, target (70–180) 97510-2, high
//!   (181–250) 104640-8, very high (> 250) 104639-0 (the IG's profile binds the
//!   bands to these codes; the LOINC display names were not checked against LOINC
//!   itself).
//!
//! The patient is a `Patient` entry identified by the cgm-hub user id (our ids
//! may hold `_`, which a FHIR resource id may not). A member whose value the data
//! cannot define (no readings, one reading's CV) carries a `dataAbsentReason`
//! instead of a value: valid R4, though the IG's profiles expect a value there.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::window::Window;
use crate::analytics::Stats;
use crate::domain::UserId;

pub const CONTENT_TYPE: &str = "application/fhir+json";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const PROFILE: &str = "http://hl7.org/fhir/uv/cgm/StructureDefinition/";
/// The identifier system of cgm-hub user ids on the `Patient` entry.
pub const USER_ID_SYSTEM: &str = "urn:cgm-hub:user-id";

pub const SUMMARY: &str = "107931-8";
pub const MEAN_GLUCOSE: &str = "97507-8";
pub const GMI: &str = "97506-0";
pub const CV: &str = "104638-2";
pub const DAYS_OF_WEAR: &str = "104636-6";
pub const SENSOR_ACTIVE: &str = "104637-4";
pub const TIMES_IN_RANGES: &str = "106793-3";
pub const TIME_VERY_LOW: &str = "104642-4";
pub const TIME_LOW: &str = "104641-6";
pub const TIME_IN_TARGET: &str = "97510-2";
pub const TIME_HIGH: &str = "104640-8";
pub const TIME_VERY_HIGH: &str = "104639-0";

/// A quantity's UCUM code and display unit.
#[derive(Clone, Copy)]
struct Unit {
    code: &'static str,
    display: &'static str,
}

const MG_DL: Unit = Unit {
    code: "mg/dL",
    display: "mg/dL",
};
const PERCENT: Unit = Unit {
    code: "%",
    display: "%",
};
const DAYS: Unit = Unit {
    code: "d",
    display: "days",
};

/// The Bundle for `user`'s statistics over `window`, stamped `generated`.
/// Entry ids are derived from the user, the window and the entry's kind, so the
/// same report always has the same ids.
pub fn summary_bundle(
    user: &UserId,
    window: &Window,
    stats: &Stats,
    generated: DateTime<Utc>,
) -> Value {
    let id = |kind: &str| {
        let name = format!(
            "{user}|{}|{}|{}|{kind}",
            window.start_rfc3339(),
            window.end_rfc3339(),
            window.tz.name()
        );
        format!(
            "urn:uuid:{}",
            Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
        )
    };
    let patient = id("patient");
    let period = json!({"start": window.start_rfc3339(), "end": window.end_rfc3339()});
    let base = |profile: &str, code: &str| {
        json!({
            "resourceType": "Observation",
            "meta": {"profile": [format!("{PROFILE}{profile}")]},
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory"
            }]}],
            "code": loinc(code),
            "subject": {"reference": patient},
            "effectivePeriod": period,
        })
    };
    let valued = |profile: &str, code: &str, value: Option<f64>, unit: Unit| {
        let mut o = base(profile, code);
        set_value(&mut o, value, unit);
        o
    };
    let m = &stats.metrics;
    let ranges = stats.ranges;
    let band = |code: &str, pick: fn(&crate::analytics::Ranges) -> f64| {
        let mut c = json!({"code": loinc(code)});
        set_value(&mut c, ranges.as_ref().map(pick), PERCENT);
        c
    };
    let mut times = base("cgm-summary-times-in-ranges", TIMES_IN_RANGES);
    times["component"] = json!([
        band(TIME_VERY_LOW, |r| r.very_low),
        band(TIME_LOW, |r| r.low),
        band(TIME_IN_TARGET, |r| r.target),
        band(TIME_HIGH, |r| r.high),
        band(TIME_VERY_HIGH, |r| r.very_high),
    ]);
    let members = vec![
        (
            id("mean-glucose"),
            valued(
                "cgm-summary-mean-glucose-mass-per-volume",
                MEAN_GLUCOSE,
                m.mean,
                MG_DL,
            ),
        ),
        (id("times-in-ranges"), times),
        (id("gmi"), valued("cgm-summary-gmi", GMI, m.gmi, PERCENT)),
        (
            id("cv"),
            valued("cgm-summary-coefficient-of-variation", CV, m.cv, PERCENT),
        ),
        (
            id("days-of-wear"),
            valued("cgm-summary-days-of-wear", DAYS_OF_WEAR, m.ndays, DAYS),
        ),
        (
            id("sensor-active"),
            valued(
                "cgm-summary-sensor-active-percentage",
                SENSOR_ACTIVE,
                m.active_percent,
                PERCENT,
            ),
        ),
    ];
    let mut summary = base("cgm-summary", SUMMARY);
    summary["hasMember"] = members
        .iter()
        .map(|(url, _)| json!({"reference": url}))
        .collect();
    let mut entries = vec![
        json!({"fullUrl": patient, "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": USER_ID_SYSTEM, "value": user.as_str()}],
        }}),
        json!({"fullUrl": id("summary"), "resource": summary}),
    ];
    entries.extend(
        members
            .into_iter()
            .map(|(url, resource)| json!({"fullUrl": url, "resource": resource})),
    );
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated.to_rfc3339_opts(SecondsFormat::Secs, true),
        "entry": entries,
    })
}

fn loinc(code: &str) -> Value {
    json!({"coding": [{"system": LOINC, "code": code}]})
}

/// `valueQuantity` (two decimals), or `dataAbsentReason` when undefined.
fn set_value(target: &mut Value, value: Option<f64>, unit: Unit) {
    match value.filter(|v| v.is_finite()) {
        Some(v) => {
            target["valueQuantity"] = json!({
                "value": (v * 100.0).round() / 100.0,
                "unit": unit.display,
                "system": UCUM,
                "code": unit.code,
            });
        }
        None => {
            target["dataAbsentReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "not-performed"
            }]});
        }
    }
}

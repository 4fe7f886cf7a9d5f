//! Turns Dexcom EGV records into domain readings, deciding once, at the edge, what
//! Dexcom's quirks mean (LOW/HIGH, open enums, offsets or none) under our contract.
//!
//! A record either becomes a [`Reading`] plus [`Warning`]s (something odd was dropped
//! or assumed, the reading kept) or a [`Rejection`] (no valid reading possible).
//! Both are data, and both are also logged here with the record's id, never with
//! glucose values; callers need not log them again.

use chrono::{DateTime, Duration, Utc};

use super::time::parse_dexcom_time;
use super::wire::{EgvRecord, EgvsPage, MalformedRecord};
use crate::domain::{
    DeviceInfo, FieldError, Glucose, GlucoseUnit, MgDl, Reading, ReadingTime, ReadingType,
    SensorStatus, Source, Trend, TrendRate, UserId,
};

/// Offsets beyond this are not a device's time zone (real zones span −12 h to +14 h).
const MAX_DISPLAY_OFFSET_MINUTES: i64 = 18 * 60;

/// `recordId`s are UUIDs (36 characters); longer ones are not kept or logged in full.
const MAX_RECORD_ID_LEN: usize = 64;

/// Unknown strings quoted in warnings are cut to this many characters.
const MAX_QUOTED: usize = 40;

/// A record that became a reading, and what was dropped or assumed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub reading: Reading,
    pub warnings: Vec<Warning>,
}

/// Something odd about a record that did not cost the reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// JSON pointer to the Dexcom field within the record (`/trend`).
    pub pointer: &'static str,
    /// What happened; never contains a glucose value or rate.
    pub message: String,
}

/// A record that cannot become a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {reason}")]
pub struct Rejection {
    /// The record's `recordId` (at most 64 characters of it), when it had one.
    pub record_id: Option<String>,
    /// Its position in the page, when translated as part of one.
    pub index: Option<usize>,
    /// JSON pointer to the Dexcom field within the record (`/systemTime`, `/value`);
    /// empty when the record as a whole is unreadable.
    pub pointer: String,
    pub reason: String,
    /// The reading field at fault, from the fixed set of [`FieldError::reason`]
    /// (`timestamp`, `glucose_value`, …, `record`): a bounded metrics label.
    pub field: &'static str,
}

impl Rejection {
    /// The rejection as the pipeline's validation error, located at the reading
    /// field (`/glucose_value`) and naming the Dexcom field in its message.
    pub fn to_field_error(&self) -> FieldError {
        let pointer = if self.field == "record" {
            ""
        } else {
            self.field
        };
        let at = if self.pointer.is_empty() {
            String::from("Dexcom record")
        } else {
            format!("Dexcom {}", self.pointer)
        };
        FieldError::new(pointer, format!("{at}: {}", self.reason))
    }
}

/// The readings of a page, in input order, and what was rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageTranslation {
    pub readings: Vec<Reading>,
    /// In input order, each with its `index` in the page.
    pub rejections: Vec<Rejection>,
    /// How many warnings the kept readings had (each was logged).
    pub warnings: usize,
}

/// Translates one EGV record of `user`. `page_unit` is the page's `unit` (v2 sends
/// it once per page; v3 on each record).
pub fn translate_egv(
    user: &UserId,
    record: &EgvRecord,
    page_unit: Option<&str>,
) -> Result<Translated, Rejection> {
    let mut warnings = Vec::new();
    match build_reading(user, record, page_unit, &mut warnings) {
        Ok(reading) => {
            for w in &warnings {
                tracing::warn!(
                    user_id = %user,
                    record_id = log_id(record.record_id.as_deref()),
                    pointer = w.pointer,
                    "Dexcom EGV kept with a warning: {}",
                    w.message
                );
            }
            Ok(Translated { reading, warnings })
        }
        Err((pointer, reason)) => {
            let rejection = Rejection {
                record_id: record.record_id.as_deref().map(bounded_id),
                index: None,
                pointer: pointer.to_owned(),
                reason,
                field: reading_field(pointer),
            };
            // The reasons built here quote no glucose values (see `build_reading`).
            tracing::warn!(
                user_id = %user,
                record_id = log_id(record.record_id.as_deref()),
                pointer = pointer,
                "Dexcom EGV rejected: {}",
                rejection.reason
            );
            Err(rejection)
        }
    }
}

/// Translates a whole page, keeping input order. Elements that were not readable
/// records ([`EgvsPage::malformed`]) are rejections at their positions.
pub fn translate_page(user: &UserId, page: &EgvsPage) -> PageTranslation {
    let mut out = PageTranslation {
        readings: Vec::with_capacity(page.records.len()),
        ..PageTranslation::default()
    };
    let mut records = page.records.iter();
    let mut malformed = page.malformed.iter().peekable();
    for index in 0..page.len() {
        if let Some(m) = malformed.next_if(|m| m.index == index) {
            out.rejections.push(reject_malformed(user, m));
            continue;
        }
        let Some(record) = records.next() else {
            break;
        };
        match translate_egv(user, record, page.unit.as_deref()) {
            Ok(t) => {
                out.warnings += t.warnings.len();
                out.readings.push(t.reading);
            }
            Err(mut rejection) => {
                rejection.index = Some(index);
                out.rejections.push(rejection);
            }
        }
    }
    // Only a hand-built page with inconsistent indexes gets here.
    out.rejections
        .extend(malformed.map(|m| reject_malformed(user, m)));
    for record in records {
        match translate_egv(user, record, page.unit.as_deref()) {
            Ok(t) => {
                out.warnings += t.warnings.len();
                out.readings.push(t.reading);
            }
            Err(rejection) => out.rejections.push(rejection),
        }
    }
    out
}

/// A page as the pipeline takes it: each kept reading, and each rejection as
/// the field error it is counted and reported by (rejected, never dropped).
pub fn translate_for_pipeline(
    user: &UserId,
    page: &EgvsPage,
) -> Vec<Result<Reading, Vec<crate::domain::FieldError>>> {
    let page = translate_page(user, page);
    page.readings
        .into_iter()
        .map(Ok)
        .chain(
            page.rejections
                .iter()
                .map(|r| Err(vec![r.to_field_error()])),
        )
        .collect()
}

fn reject_malformed(user: &UserId, m: &MalformedRecord) -> Rejection {
    // serde's message may quote the offending input (a glucose value), so it is
    // kept as data and not logged.
    tracing::warn!(
        user_id = %user,
        record_id = log_id(m.record_id.as_deref()),
        index = m.index,
        pointer = %m.pointer,
        "Dexcom EGV rejected: not a readable record"
    );
    Rejection {
        record_id: m.record_id.as_deref().map(bounded_id),
        index: Some(m.index),
        pointer: m.pointer.clone(),
        reason: format!("not a readable Dexcom EGV record: {}", m.message),
        field: reading_field(&m.pointer),
    }
}

type Reject = (&'static str, String);

/// The rules of the contract ("Reading"), applied to one record. Messages here
/// must never quote `value` or `trendRate`.
fn build_reading(
    user: &UserId,
    record: &EgvRecord,
    page_unit: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<Reading, Reject> {
    let mut warn = |pointer: &'static str, message: String| {
        warnings.push(Warning { pointer, message });
    };

    // systemTime orders and keys readings; displayTime is user-editable.
    if record.system_time.trim().is_empty() {
        return Err(("/systemTime", "missing systemTime".to_owned()));
    }
    let system =
        parse_dexcom_time(&record.system_time).map_err(|e| ("/systemTime", e.to_string()))?;
    let timestamp = ReadingTime::from_utc(system.utc);

    let glucose = glucose(record, page_unit, &mut warn)?;
    let unit = resolve_unit(record.unit.as_deref(), page_unit).0;

    let display_offset_minutes =
        display_offset(record.display_time.as_deref(), system.utc, &mut warn);

    let trend = match record.trend.as_deref() {
        None => None,
        Some(raw) => match Trend::parse(raw) {
            Ok(trend) => Some(trend),
            Err(_) => {
                warn(
                    "/trend",
                    format!(
                        "trend {} is unknown or unrecognized; stored without a trend",
                        quote(raw)
                    ),
                );
                None
            }
        },
    };

    let trend_rate = record.trend_rate.and_then(|rate| {
        let rate_unit = rate_unit(record.rate_unit.as_deref(), unit, &mut warn);
        match TrendRate::new(rate_unit.to_mg_dl(rate)) {
            Ok(rate) => Some(rate),
            Err(e) => {
                warn("/trendRate", format!("trendRate {}; dropped", e.message));
                None
            }
        }
    });

    let device = device_info(record, &mut warn);

    let source_record_id = match record.record_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(id)
            if id.len() <= MAX_RECORD_ID_LEN && id.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            Some(id.to_owned())
        }
        Some(_) => {
            warn(
                "/recordId",
                format!(
                    "recordId is longer than {MAX_RECORD_ID_LEN} characters or not printable ASCII; not kept"
                ),
            );
            None
        }
    };

    Ok(Reading {
        user_id: user.clone(),
        timestamp,
        glucose,
        trend,
        trend_rate,
        device,
        reading_type: ReadingType::Cgm,
        source: Source::dexcom(),
        source_record_id,
        display_offset_minutes,
    })
}

/// LOW/HIGH first: whether v3 sends them as `value: null` or as a clamped value is
/// unverified (Dexcom's documentation does not say), so `status` low/high wins
/// either way and stores 39/401 with the status, as the contract requires.
fn glucose(
    record: &EgvRecord,
    page_unit: Option<&str>,
    warn: &mut impl FnMut(&'static str, String),
) -> Result<Glucose, Reject> {
    let status = record
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let sensor_status = status.and_then(SensorStatus::parse);
    if let Some(raw) = status {
        if sensor_status.is_none() && !raw.eq_ignore_ascii_case("ok") {
            warn(
                "/status",
                format!("status {} is not low, high or ok; reading kept", quote(raw)),
            );
        }
    }

    let (unit, unit_note) = resolve_unit(record.unit.as_deref(), page_unit);
    if let (Some(note), Some(_)) = (unit_note, record.value) {
        warn("/unit", note);
    }

    match (sensor_status, record.value) {
        (Some(s), value) => {
            if let Some(v) = value {
                let mg = unit.to_mg_dl(v).round();
                let consistent = match s {
                    SensorStatus::Low => mg <= 40.0,
                    SensorStatus::High => mg >= 400.0,
                };
                if !consistent {
                    warn(
                        "/value",
                        format!(
                            "value contradicts status {}; stored as {} mg/dL with status {}",
                            s.as_str(),
                            s.stored_value().get(),
                            s.as_str()
                        ),
                    );
                }
            }
            Ok(Glucose::out_of_range(s))
        }
        (None, Some(v)) => MgDl::from_measurement(v, unit)
            .map(Glucose::value)
            .map_err(|e| ("/value", e.message)),
        (None, None) => Err(("/value", "missing glucose value".to_owned())),
    }
}

/// The unit of `value`: the record's, else the page's, else mg/dL. `unknown` (a
/// documented v3 value) says nothing, so the next source decides; if
/// none is known, mg/dL is assumed and a note says so.
fn resolve_unit(
    record_unit: Option<&str>,
    page_unit: Option<&str>,
) -> (GlucoseUnit, Option<String>) {
    let mut note = None;
    for raw in [record_unit, page_unit].into_iter().flatten() {
        match parse_unit(raw) {
            Some(unit) => return (unit, None),
            None if note.is_none() => {
                note = Some(format!(
                    "unit {} is not mg/dL or mmol/L; value read as mg/dL",
                    quote(raw)
                ));
            }
            None => {}
        }
    }
    (GlucoseUnit::MgDl, note)
}

fn parse_unit(raw: &str) -> Option<GlucoseUnit> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "mg/dl" => Some(GlucoseUnit::MgDl),
        "mmol/l" => Some(GlucoseUnit::MmolL),
        _ => None,
    }
}

/// The unit of `trendRate`; our rates are mg/dL per minute, so mmol/L/min converts.
/// Without a known `rateUnit` (v2 sends it per page, `unknown` is documented) the
/// rate is taken in the glucose value's unit.
fn rate_unit(
    raw: Option<&str>,
    value_unit: GlucoseUnit,
    warn: &mut impl FnMut(&'static str, String),
) -> GlucoseUnit {
    let Some(raw) = raw else {
        return value_unit;
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "mg/dl/min" => GlucoseUnit::MgDl,
        "mmol/l/min" => GlucoseUnit::MmolL,
        _ => {
            let assumed = match value_unit {
                GlucoseUnit::MgDl => "mg/dL/min",
                GlucoseUnit::MmolL => "mmol/L/min",
            };
            warn(
                "/rateUnit",
                format!(
                    "rateUnit {} is not mg/dL/min or mmol/L/min; trendRate read as {assumed}",
                    quote(raw)
                ),
            );
            value_unit
        }
    }
}

/// The display clock's offset from UTC. Mobile-app records carry it in `displayTime`;
/// receiver records carry no offsets at all, so then it
/// is `displayTime − systemTime` rounded to the minute. The difference also absorbs
/// clock drift and user clock changes (systemTime is not true UTC), hence the
/// plausibility bound.
fn display_offset(
    raw: Option<&str>,
    system: DateTime<Utc>,
    warn: &mut impl FnMut(&'static str, String),
) -> Option<i16> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty())?;
    let display = match parse_dexcom_time(raw) {
        Ok(display) => display,
        Err(e) => {
            warn(
                "/displayTime",
                format!("{e}; stored without a display offset"),
            );
            return None;
        }
    };
    let minutes = match display.offset_minutes {
        Some(offset) => i64::from(offset),
        None => round_to_minutes(display.utc - system),
    };
    if minutes.abs() > MAX_DISPLAY_OFFSET_MINUTES {
        warn(
            "/displayTime",
            format!(
                "displayTime is more than {} hours from UTC; stored without a display offset",
                MAX_DISPLAY_OFFSET_MINUTES / 60
            ),
        );
        return None;
    }
    i16::try_from(minutes).ok()
}

/// Nearest whole minute, halves away from zero (as the time parser rounds offsets).
fn round_to_minutes(delta: Duration) -> i64 {
    let ms = delta.num_milliseconds();
    ms.signum() * ((ms.abs() + 30_000) / 60_000)
}

/// `displayDevice` and `transmitterId` as the domain's device info. A field the
/// domain refuses (too long, not printable ASCII) is dropped with a warning rather
/// than costing the reading. A 64-hex transmitter hash (as v3 sends) fits exactly.
fn device_info(record: &EgvRecord, warn: &mut impl FnMut(&'static str, String)) -> DeviceInfo {
    let device_id = record.display_device.clone();
    let transmitter_id = record.transmitter_id.clone();
    if let Ok(device) = DeviceInfo::parse(device_id.clone(), None, transmitter_id.clone()) {
        return device;
    }
    let mut keep = |pointer: &'static str,
                    value: Option<String>,
                    alone: fn(String) -> Result<DeviceInfo, FieldError>| {
        let value = value?;
        match alone(value.clone()) {
            Ok(_) => Some(value),
            Err(e) => {
                let field = &pointer[1..];
                warn(pointer, format!("{field} {}; dropped", e.message));
                None
            }
        }
    };
    let device_id = keep("/displayDevice", device_id, |v| {
        DeviceInfo::parse(Some(v), None, None)
    });
    let transmitter_id = keep("/transmitterId", transmitter_id, |v| {
        DeviceInfo::parse(None, None, Some(v))
    });
    DeviceInfo::parse(device_id, None, transmitter_id).unwrap_or_default()
}

/// The reading field (from [`FieldError::reason`]'s set) that a Dexcom field feeds.
fn reading_field(pointer: &str) -> &'static str {
    match pointer.rsplit('/').next().unwrap_or("") {
        "systemTime" => "timestamp",
        "value" => "glucose_value",
        "unit" => "glucose_unit",
        "status" => "status",
        "trend" => "trend_direction",
        "trendRate" | "rateUnit" => "trend_rate",
        "displayTime" => "display_offset_minutes",
        "displayDevice" => "device_id",
        "transmitterId" => "transmitter_id",
        "recordId" => "source_record_id",
        _ => "record",
    }
}

fn bounded_id(id: &str) -> String {
    truncate(id, MAX_RECORD_ID_LEN).to_owned()
}

fn log_id(id: Option<&str>) -> &str {
    id.map_or("", |id| truncate(id, MAX_RECORD_ID_LEN))
}

fn quote(raw: &str) -> String {
    format!("{:?}", truncate(raw, MAX_QUOTED))
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use chrono::TimeZone;

    use super::*;

    const HASH: &str = "cdb4f8ee1c3e4f5a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e046b";

    fn user() -> UserId {
        UserId::parse("user123").unwrap()
    }

    /// A v3 mobile-app record (offsets present), as in Dexcom's documented example.
    fn mobile_json() -> String {
        format!(
            r#"{{ "recordId": "1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0001",
              "systemTime": "2026-04-30T15:00:00+00:00", "displayTime": "2026-04-30T08:00:00-07:00",
              "transmitterId": "{HASH}",
              "transmitterTicks": 12345678, "value": 142, "status": "ok", "trend": "flat",
              "trendRate": 0.3, "unit": "mg/dL", "rateUnit": "mg/dL/min",
              "displayDevice": "iOS", "transmitterGeneration": "g7" }}"#
        )
    }

    /// A v3 receiver record (no offsets), as in Dexcom's documented example.
    const RECEIVER: &str = r#"{ "recordId": "1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0002",
      "systemTime": "2026-04-30T15:05:00", "displayTime": "2026-04-30T08:05:00",
      "transmitterId": "8GA1JK", "transmitterTicks": 12345978, "value": 148, "status": null,
      "trend": "fortyFiveUp", "trendRate": 1.2, "unit": "mg/dL", "rateUnit": "mg/dL/min",
      "displayDevice": "receiver", "transmitterGeneration": "g6" }"#;

    /// The receiver record with some fields replaced (a JSON object of overrides).
    fn receiver_with(overrides: &str) -> EgvRecord {
        let mut base: serde_json::Value = serde_json::from_str(RECEIVER).unwrap();
        let overrides: serde_json::Value = serde_json::from_str(overrides).unwrap();
        for (k, v) in overrides.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn kept(record: &EgvRecord) -> Translated {
        translate_egv(&user(), record, None).unwrap_or_else(|r| panic!("rejected: {r}"))
    }

    fn warned_at(t: &Translated) -> Vec<&'static str> {
        t.warnings.iter().map(|w| w.pointer).collect()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> ReadingTime {
        ReadingTime::from_utc(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
    }

    #[test]
    fn mobile_record_with_offsets() {
        let record: EgvRecord = serde_json::from_str(&mobile_json()).unwrap();
        let t = kept(&record);
        let r = &t.reading;
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(r.user_id, user());
        assert_eq!(r.timestamp, at(2026, 4, 30, 15, 0, 0));
        assert_eq!(r.display_offset_minutes, Some(-420));
        assert_eq!(r.glucose, Glucose::value(MgDl::new(142).unwrap()));
        assert_eq!(r.glucose.status(), None);
        assert_eq!(r.trend, Some(Trend::Steady));
        assert_eq!(r.trend_rate.map(TrendRate::get), Some(0.3));
        assert_eq!(r.device.device_id(), Some("iOS"));
        assert_eq!(
            r.device.transmitter_id(),
            Some(HASH),
            "a 64-hex hash is kept"
        );
        assert_eq!(r.device.serial_number(), None);
        assert_eq!(r.reading_type, ReadingType::Cgm);
        assert_eq!(r.source, Source::dexcom());
        assert_eq!(
            r.source_record_id.as_deref(),
            Some("1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0001")
        );
    }

    #[test]
    fn receiver_record_without_offsets() {
        let record: EgvRecord = serde_json::from_str(RECEIVER).unwrap();
        let t = kept(&record);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.reading.timestamp, at(2026, 4, 30, 15, 5, 0));
        assert_eq!(t.reading.display_offset_minutes, Some(-420));
        assert_eq!(t.reading.glucose.mg_dl().get(), 148);
        assert_eq!(t.reading.trend, Some(Trend::RisingSlightly));
        assert_eq!(t.reading.device.device_id(), Some("receiver"));
        assert_eq!(t.reading.device.transmitter_id(), Some("8GA1JK"));
    }

    #[test]
    fn display_offsets_round_to_the_minute() {
        let cases: &[(&str, &str, Option<i16>)] = &[
            // Explicit offset with seconds: rounded, and the rounded offset converts.
            (
                "2026-04-30T15:00:00Z",
                "2026-04-30T08:00:02-06:59:58",
                Some(-420),
            ),
            // No offsets: displayTime − systemTime, drift of seconds rounded away.
            ("2026-04-30T15:00:00", "2026-04-30T08:00:02", Some(-420)),
            ("2026-04-30T15:00:00", "2026-04-30T08:00:31", Some(-419)),
            ("2026-04-30T15:00:00", "2026-04-30T20:30:29", Some(330)),
            ("2026-04-30T15:00:00", "2026-04-30T15:00:00", Some(0)),
            ("2026-04-30T15:00:00", "2026-05-01T09:00:00", Some(1080)),
            // Explicit +00:00 on both (a mobile app in UTC).
            (
                "2026-04-30T15:00:00+00:00",
                "2026-04-30T15:00:00+00:00",
                Some(0),
            ),
        ];
        for (system, display, want) in cases {
            let record = receiver_with(&format!(
                r#"{{"systemTime":"{system}","displayTime":"{display}"}}"#
            ));
            let t = kept(&record);
            assert_eq!(t.reading.display_offset_minutes, *want, "{display}");
            assert!(t.warnings.is_empty(), "{display}: {:?}", t.warnings);
        }
    }

    #[test]
    fn implausible_or_unreadable_display_times_keep_the_reading_without_an_offset() {
        for display in [
            r#""2026-05-01T09:06:00""#,
            r#""2026-04-29T21:04:00""#,
            r#""not a time""#,
        ] {
            let record = receiver_with(&format!(r#"{{"displayTime":{display}}}"#));
            let t = kept(&record);
            assert_eq!(t.reading.display_offset_minutes, None, "{display}");
            assert_eq!(warned_at(&t), ["/displayTime"], "{display}");
        }
        for display in ["null", r#""""#] {
            let record = receiver_with(&format!(r#"{{"displayTime":{display}}}"#));
            let t = kept(&record);
            assert_eq!(t.reading.display_offset_minutes, None);
            assert!(t.warnings.is_empty(), "absent displayTime is not odd");
        }
    }

    #[test]
    fn system_time_is_converted_to_utc_and_truncated_to_seconds() {
        for (raw, want) in [
            ("2026-04-30T08:00:00.999-07:00", at(2026, 4, 30, 15, 0, 0)),
            ("2026-04-30T15:00Z", at(2026, 4, 30, 15, 0, 0)),
            ("2026-04-30 15:00:59.5", at(2026, 4, 30, 15, 0, 59)),
        ] {
            let record = receiver_with(&format!(r#"{{"systemTime":"{raw}"}}"#));
            assert_eq!(kept(&record).reading.timestamp, want, "{raw}");
        }
    }

    #[test]
    fn unreadable_system_time_is_rejected() {
        for (system, reason) in [
            (r#""2021-02-0""#, "is not a Dexcom date-time"),
            (r#""garbage""#, "is not a Dexcom date-time"),
            (r#""""#, "missing systemTime"),
            ("null", "missing systemTime"),
        ] {
            let record = receiver_with(&format!(r#"{{"systemTime":{system}}}"#));
            let r = translate_egv(&user(), &record, None).unwrap_err();
            assert_eq!(r.pointer, "/systemTime");
            assert!(r.reason.contains(reason), "{system}: {}", r.reason);
            assert_eq!(r.field, "timestamp");
            assert_eq!(
                r.record_id.as_deref(),
                Some("1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0002")
            );
            assert_eq!(r.to_field_error().reason(), "timestamp");
        }
    }

    #[test]
    fn every_dexcom_trend_and_unknown_ones() {
        let known = [
            ("doubleUp", Trend::RisingFast),
            ("singleUp", Trend::Rising),
            ("fortyFiveUp", Trend::RisingSlightly),
            ("flat", Trend::Steady),
            ("fortyFiveDown", Trend::FallingSlightly),
            ("singleDown", Trend::Falling),
            ("doubleDown", Trend::FallingFast),
            ("none", Trend::None),
            ("notComputable", Trend::NotComputable),
            ("rateOutOfRange", Trend::RateOutOfRange),
        ];
        for (name, want) in known {
            let t = kept(&receiver_with(&format!(r#"{{"trend":"{name}"}}"#)));
            assert_eq!(t.reading.trend, Some(want), "{name}");
            assert!(t.warnings.is_empty(), "{name}");
        }
        for unknown in [r#""unknown""#, r#""sideways""#, r#""""#] {
            let t = kept(&receiver_with(&format!(r#"{{"trend":{unknown}}}"#)));
            assert_eq!(t.reading.trend, None, "{unknown}");
            assert_eq!(warned_at(&t), ["/trend"], "{unknown}");
        }
        let t = kept(&receiver_with(r#"{"trend":null}"#));
        assert_eq!(t.reading.trend, None);
        assert!(t.warnings.is_empty(), "null trend is not odd");
    }

    #[test]
    fn low_and_high_are_kept_as_39_and_401() {
        let cases = [
            (r#"{"value":null,"status":"low"}"#, SensorStatus::Low, false),
            (
                r#"{"value":null,"status":"high"}"#,
                SensorStatus::High,
                false,
            ),
            (r#"{"value":null,"status":"LOW"}"#, SensorStatus::Low, false),
            (r#"{"value":40,"status":"low"}"#, SensorStatus::Low, false),
            (r#"{"value":39,"status":"low"}"#, SensorStatus::Low, false),
            (
                r#"{"value":400,"status":"high"}"#,
                SensorStatus::High,
                false,
            ),
            (
                r#"{"value":401,"status":"High"}"#,
                SensorStatus::High,
                false,
            ),
            (
                r#"{"value":2.2,"status":"low","unit":"mmol/L"}"#,
                SensorStatus::Low,
                false,
            ),
            (
                r#"{"value":22.2,"status":"high","unit":"mmol/L"}"#,
                SensorStatus::High,
                false,
            ),
            // Contradicting value: the status wins, with a warning.
            (r#"{"value":250,"status":"low"}"#, SensorStatus::Low, true),
            (r#"{"value":250,"status":"high"}"#, SensorStatus::High, true),
        ];
        for (overrides, status, contradicts) in cases {
            let t = kept(&receiver_with(overrides));
            assert_eq!(
                t.reading.glucose,
                Glucose::out_of_range(status),
                "{overrides}"
            );
            assert_eq!(
                t.reading.glucose.mg_dl().get(),
                if status == SensorStatus::Low { 39 } else { 401 }
            );
            assert_eq!(t.reading.glucose.status(), Some(status));
            let want: &[&str] = if contradicts { &["/value"] } else { &[] };
            assert_eq!(warned_at(&t), want, "{overrides}");
        }
    }

    #[test]
    fn missing_value_without_low_or_high_is_rejected() {
        for status in [r#""ok""#, "null", r#""unknown""#, r#""sensorNoise""#] {
            let record = receiver_with(&format!(r#"{{"value":null,"status":{status}}}"#));
            let r = translate_egv(&user(), &record, None).unwrap_err();
            assert_eq!(
                (r.pointer.as_str(), r.reason.as_str(), r.field),
                ("/value", "missing glucose value", "glucose_value"),
                "{status}"
            );
        }
    }

    #[test]
    fn values_outside_20_to_600_are_rejected_with_the_domain_message() {
        for value in ["700", "601", "19", "0", "-1", "1e308"] {
            let record = receiver_with(&format!(r#"{{"value":{value}}}"#));
            let r = translate_egv(&user(), &record, None).unwrap_err();
            assert_eq!(r.pointer, "/value", "{value}");
            assert_eq!(r.reason, "must be between 20 and 600 mg/dL", "{value}");
            assert_eq!(r.to_field_error().pointer, "/glucose_value");
            assert_eq!(r.to_field_error().reason(), "glucose_value");
        }
        for (value, want) in [("20", 20), ("600", 600), ("142.0", 142), ("142.4", 142)] {
            let t = kept(&receiver_with(&format!(r#"{{"value":{value}}}"#)));
            assert_eq!(t.reading.glucose.mg_dl().get(), want, "{value}");
        }
    }

    #[test]
    fn units_record_then_page_then_mg_dl() {
        let mmol = kept(&receiver_with(
            r#"{"value":5.5,"unit":"mmol/L","rateUnit":"mmol/L/min"}"#,
        ));
        assert_eq!(mmol.reading.glucose.mg_dl().get(), 99);
        assert!(mmol.warnings.is_empty(), "{:?}", mmol.warnings);

        // v2: no unit on the record, the page says mmol/L.
        let record = receiver_with(r#"{"value":10.0,"unit":null,"rateUnit":null}"#);
        let t = translate_egv(&user(), &record, Some("mmol/L")).unwrap();
        assert_eq!(t.reading.glucose.mg_dl().get(), 180);
        // The record's unit wins over the page's.
        let record = receiver_with(r#"{"value":180,"unit":"mg/dL"}"#);
        let t = translate_egv(&user(), &record, Some("mmol/L")).unwrap();
        assert_eq!(t.reading.glucose.mg_dl().get(), 180);
        // Nothing at all: mg/dL, silently.
        let t = kept(&receiver_with(r#"{"value":180,"unit":null}"#));
        assert_eq!(t.reading.glucose.mg_dl().get(), 180);
        assert!(t.warnings.is_empty());
        // "unknown": mg/dL with a warning, unless the page knows better.
        let t = kept(&receiver_with(r#"{"value":180,"unit":"unknown"}"#));
        assert_eq!(t.reading.glucose.mg_dl().get(), 180);
        assert_eq!(warned_at(&t), ["/unit"]);
        let record = receiver_with(r#"{"value":10.0,"unit":"unknown","trendRate":null}"#);
        let t = translate_egv(&user(), &record, Some("mmol/L")).unwrap();
        assert_eq!(t.reading.glucose.mg_dl().get(), 180);
        assert!(t.warnings.is_empty());
        // A LOW with an unknown unit does not need the unit.
        let t = kept(&receiver_with(
            r#"{"value":null,"status":"low","unit":"unknown"}"#,
        ));
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn unknown_statuses_keep_the_reading_with_a_warning() {
        for status in ["outOfCalibration", "sensorNoise", "unknown", "sensorWarmup"] {
            let t = kept(&receiver_with(&format!(r#"{{"status":"{status}"}}"#)));
            assert_eq!(t.reading.glucose.mg_dl().get(), 148);
            assert_eq!(t.reading.glucose.status(), None);
            assert_eq!(warned_at(&t), ["/status"], "{status}");
        }
        for status in [r#""ok""#, r#""OK""#, "null", r#""""#] {
            let t = kept(&receiver_with(&format!(r#"{{"status":{status}}}"#)));
            assert!(t.warnings.is_empty(), "{status}");
        }
    }

    #[test]
    fn trend_rates_convert_or_drop() {
        let t = kept(&receiver_with(r#"{"trendRate":-2.5}"#));
        assert_eq!(t.reading.trend_rate.map(TrendRate::get), Some(-2.5));
        let t = kept(&receiver_with(r#"{"trendRate":null}"#));
        assert_eq!(t.reading.trend_rate, None);
        assert!(t.warnings.is_empty());

        let t = kept(&receiver_with(r#"{"trendRate":150.0}"#));
        assert_eq!(t.reading.trend_rate, None);
        assert_eq!(t.reading.glucose.mg_dl().get(), 148, "the reading is kept");
        assert_eq!(warned_at(&t), ["/trendRate"]);

        let t = kept(&receiver_with(
            r#"{"value":8.0,"unit":"mmol/L","trendRate":0.1,"rateUnit":"mmol/L/min"}"#,
        ));
        let rate = t.reading.trend_rate.unwrap().get();
        assert!((rate - 1.801559).abs() < 1e-9, "{rate}");
        // No rate unit: the value's unit.
        let t = kept(&receiver_with(
            r#"{"value":8.0,"unit":"mmol/L","trendRate":0.1,"rateUnit":null}"#,
        ));
        assert!((t.reading.trend_rate.unwrap().get() - 1.801559).abs() < 1e-9);
        let t = kept(&receiver_with(r#"{"trendRate":0.5,"rateUnit":"unknown"}"#));
        assert_eq!(t.reading.trend_rate.map(TrendRate::get), Some(0.5));
        assert_eq!(warned_at(&t), ["/rateUnit"]);
    }

    #[test]
    fn device_fields_the_domain_refuses_are_dropped_not_fatal() {
        let t = kept(&receiver_with(&format!(r#"{{"transmitterId":"{HASH}"}}"#)));
        assert_eq!(t.reading.device.transmitter_id(), Some(HASH));

        let too_long = format!("{HASH}0");
        let t = kept(&receiver_with(&format!(
            r#"{{"transmitterId":"{too_long}"}}"#
        )));
        assert_eq!(t.reading.device.transmitter_id(), None);
        assert_eq!(t.reading.device.device_id(), Some("receiver"));
        assert_eq!(warned_at(&t), ["/transmitterId"]);

        let t = kept(&receiver_with(r#"{"displayDevice":"récepteur"}"#));
        assert_eq!(t.reading.device.device_id(), None);
        assert_eq!(t.reading.device.transmitter_id(), Some("8GA1JK"));
        assert_eq!(warned_at(&t), ["/displayDevice"]);

        let t = kept(&receiver_with(
            r#"{"transmitterId":"","displayDevice":null}"#,
        ));
        assert!(t.reading.device.is_empty());
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn v2_record_without_record_id() {
        let page: EgvsPage = serde_json::from_str(
            r#"{"unit":"mg/dL","rateUnit":"mg/dL/min","egvs":[
                {"systemTime":"2017-06-16T15:40:00","displayTime":"2017-06-16T07:40:00",
                 "value":120,"realtimeValue":120,"smoothedValue":null,"status":null,
                 "trend":"flat","trendRate":-0.1}]}"#,
        )
        .unwrap();
        let t = translate_egv(&user(), &page.records[0], page.unit.as_deref()).unwrap();
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.reading.source_record_id, None);
        assert_eq!(t.reading.timestamp, at(2017, 6, 16, 15, 40, 0));
        assert_eq!(t.reading.display_offset_minutes, Some(-480));
        assert_eq!(t.reading.glucose.mg_dl().get(), 120);
        assert_eq!(t.reading.trend_rate.map(TrendRate::get), Some(-0.1));
        assert!(t.reading.device.is_empty());
    }

    #[test]
    fn odd_record_ids_are_not_kept() {
        let long = "x".repeat(65);
        let t = kept(&receiver_with(&format!(r#"{{"recordId":"{long}"}}"#)));
        assert_eq!(t.reading.source_record_id, None);
        assert_eq!(warned_at(&t), ["/recordId"]);
        let t = kept(&receiver_with(r#"{"recordId":""}"#));
        assert_eq!(t.reading.source_record_id, None);
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn a_page_keeps_input_order_and_positions_its_rejections() {
        let page: EgvsPage = serde_json::from_str(
            r#"{"recordType":"egv","recordVersion":"3.0","userId":"u","records":[
              {"recordId":"a","systemTime":"2026-04-30T15:10:00","displayTime":"2026-04-30T08:10:00",
               "value":150,"status":"ok","trend":"flat","unit":"mg/dL","displayDevice":"receiver"},
              {"recordId":"b","systemTime":"2026-04-30T15:00:00","value":"142","unit":"mg/dL"},
              {"recordId":"c","systemTime":"2026-04-30T15:05:00","value":null,"status":"ok"},
              {"recordId":"d","systemTime":"2026-04-30T14:55:00","value":null,"status":"high",
               "trend":"unknown"},
              {"recordId":"e","systemTime":"nope","value":100},
              {"recordId":"f","systemTime":"2026-04-30T14:50:00","value":90,"trend":"singleDown"}
            ]}"#,
        )
        .unwrap();
        let out = translate_page(&user(), &page);
        let ids: Vec<_> = out
            .readings
            .iter()
            .map(|r| r.source_record_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["a", "d", "f"], "input order, not time order");
        assert_eq!(out.readings[1].glucose.mg_dl().get(), 401);
        let rejected: Vec<_> = out
            .rejections
            .iter()
            .map(|r| (r.index, r.record_id.as_deref(), r.pointer.as_str(), r.field))
            .collect();
        assert_eq!(
            rejected,
            [
                (Some(1), Some("b"), "/value", "glucose_value"),
                (Some(2), Some("c"), "/value", "glucose_value"),
                (Some(4), Some("e"), "/systemTime", "timestamp"),
            ]
        );
        assert_eq!(out.warnings, 1, "d's unknown trend");
        assert_eq!(
            translate_page(&user(), &EgvsPage::default()),
            PageTranslation::default()
        );
    }

    /// Captures what `tracing` writes while `f` runs.
    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buf {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        // No timestamps: their digits could match the values looked for.
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn warnings_and_rejections_are_logged_with_the_record_id_but_no_glucose_value() {
        let noisy = receiver_with(
            r#"{"recordId":"rec-173","value":273,"status":"sensorNoise","trend":"sideways",
                "trendRate":173.5,"unit":"unknown","displayTime":"2026-05-02T00:00:00"}"#,
        );
        let mut translated = None;
        let logs = logs_of(|| translated = Some(translate_egv(&user(), &noisy, None)));
        let t = translated.unwrap().unwrap();
        assert_eq!(
            warned_at(&t),
            ["/status", "/unit", "/displayTime", "/trend", "/trendRate"]
        );
        assert_eq!(logs.lines().count(), t.warnings.len(), "{logs}");
        for line in logs.lines() {
            assert!(line.contains("record_id=\"rec-173\""), "{line}");
            assert!(line.contains("WARN"), "{line}");
        }
        for text in t
            .warnings
            .iter()
            .map(|w| w.message.as_str())
            .chain(logs.lines())
        {
            assert!(!text.contains("273") && !text.contains("173.5"), "{text}");
        }

        let rejected = receiver_with(r#"{"recordId":"rec-9","value":777}"#);
        let logs = logs_of(|| {
            let _ = translate_egv(&user(), &rejected, None);
        });
        assert!(logs.contains("record_id=\"rec-9\""), "{logs}");
        assert!(logs.contains("pointer=\"/value\""), "{logs}");
        assert!(!logs.contains("777"), "{logs}");
        // A malformed record's serde message quotes the value: kept as data, not logged.
        let page: EgvsPage = serde_json::from_str(
            r#"{"records":[{"recordId":"rec-m","systemTime":"2026-04-30T15:00:00","value":"333"}]}"#,
        )
        .unwrap();
        let mut out = None;
        let logs = logs_of(|| out = Some(translate_page(&user(), &page)));
        assert!(logs.contains("rec-m") && !logs.contains("333"), "{logs}");
        assert!(out.unwrap().rejections[0].reason.contains("invalid type"));
    }
}

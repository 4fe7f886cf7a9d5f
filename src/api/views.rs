//! Response bodies: the reading as the contract shows it, and the success envelope.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::ser::Formatter;
use utoipa::ToSchema;

use crate::domain::{StoredReading, TrendRate};
use crate::records::jobs::JobCounts;
use crate::store::query::ReadingRef;

/// `{"status":"success","data":...}`
#[derive(Debug, Serialize)]
pub struct Success<T> {
    pub status: &'static str,
    pub data: T,
}

/// A success envelope serialized into a buffer sized up front (`size_hint` bytes),
/// sparing the repeated grow-and-copy of a large page.
pub fn success_sized<T: Serialize>(
    status: axum::http::StatusCode,
    data: T,
    size_hint: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut buf = Vec::with_capacity(size_hint);
    match serde_json::to_writer(
        &mut buf,
        &Success {
            status: "success",
            data,
        },
    ) {
        Ok(()) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            buf,
        )
            .into_response(),
        Err(e) => {
            super::error::ApiError::Internal(format!("serializing a response: {e}")).into_response()
        }
    }
}

pub fn success<T>(data: T) -> axum::Json<Success<T>> {
    axum::Json(Success {
        status: "success",
        data,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceInfoView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transmitter_id: Option<&'a str>,
}

/// A stored reading, as every endpoint returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingView<'a> {
    #[schema(example = "user123")]
    pub user_id: &'a str,
    #[schema(value_type = String, example = "2023-08-15T14:30:00Z")]
    pub timestamp: Rfc3339,
    #[schema(example = 120)]
    pub glucose_value: u16,
    #[schema(example = "mg/dL")]
    pub glucose_unit: &'static str,
    /// `low` or `high` when the sensor read beyond its range (values 39 / 401).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[schema(example = "steady")]
    pub trend_direction: Option<&'static str>,
    pub trend_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_info: Option<DeviceInfoView<'a>>,
    #[schema(example = "CGM")]
    pub reading_type: &'static str,
    #[schema(example = "dexcom")]
    pub source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_record_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_offset_minutes: Option<i16>,
    pub version: u32,
    #[schema(value_type = String, example = "2023-08-15T14:35:12.345Z")]
    pub created_at: Rfc3339,
    #[schema(value_type = String, example = "2023-08-15T14:35:12.345Z")]
    pub updated_at: Rfc3339,
}

/// An instant written as RFC 3339 in UTC straight into the response, without an
/// intermediate String: a one-day page formats about 900 of them. humantime's
/// formatter is several times faster than chrono's general one; chrono covers
/// instants before 1970, which humantime does not format.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339 {
    at: DateTime<Utc>,
    millis: bool,
}

impl Rfc3339 {
    pub fn seconds(at: DateTime<Utc>) -> Self {
        Self { at, millis: false }
    }
    pub fn millis(at: DateTime<Utc>) -> Self {
        Self { at, millis: true }
    }
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since_epoch = u64::try_from(self.at.timestamp())
            .ok()
            .map(|secs| UNIX_EPOCH + Duration::new(secs, self.at.timestamp_subsec_nanos()));
        match (since_epoch, self.millis) {
            (Some(t), false) => humantime::format_rfc3339_seconds(t).fmt(f),
            (Some(t), true) => humantime::format_rfc3339_millis(t).fmt(f),
            (None, millis) => {
                let precision = if millis {
                    SecondsFormat::Millis
                } else {
                    SecondsFormat::Secs
                };
                f.write_str(&self.at.to_rfc3339_opts(precision, true))
            }
        }
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'a> From<&'a StoredReading> for ReadingView<'a> {
    fn from(s: &'a StoredReading) -> Self {
        ReadingView::from(ReadingRef::from(s))
    }
}

impl<'a> From<ReadingRef<'a>> for ReadingView<'a> {
    fn from(r: ReadingRef<'a>) -> Self {
        let device = [r.device_id, r.serial_number, r.transmitter_id];
        Self {
            user_id: r.user_id,
            timestamp: Rfc3339::seconds(r.timestamp.as_datetime()),
            glucose_value: r.glucose.mg_dl().get(),
            glucose_unit: "mg/dL",
            status: r.glucose.status().map(|st| st.as_str()),
            trend_direction: r.trend.map(|t| t.as_str()),
            trend_rate: r.trend_rate.map(TrendRate::get),
            device_info: device
                .iter()
                .any(Option::is_some)
                .then_some(DeviceInfoView {
                    device_id: r.device_id,
                    serial_number: r.serial_number,
                    transmitter_id: r.transmitter_id,
                }),
            reading_type: r.reading_type.as_str(),
            source: r.source,
            source_record_id: r.source_record_id,
            display_offset_minutes: r.display_offset_minutes,
            version: r.version,
            created_at: Rfc3339::millis(r.created_at),
            updated_at: Rfc3339::millis(r.updated_at),
        }
    }
}

/// Appends a reading's JSON, byte for byte what `serde_json` writes for its
/// `ReadingView` (the tests below hold the two together), without serde's
/// per-byte escaping of every key and value and with timestamps formatted by
/// hand: on a one-day page (288 readings) those were a quarter of the request's
/// instructions. The range endpoint encodes its pages with this.
pub fn encode_reading(r: &ReadingRef<'_>, out: &mut Vec<u8>) {
    // Room for a reading with every field, so the pushes below do not grow it.
    out.reserve(640);
    out.extend_from_slice(b"{\"user_id\":");
    json_str(out, r.user_id);
    out.extend_from_slice(b",\"timestamp\":");
    json_time(out, r.timestamp.as_datetime(), false);
    out.extend_from_slice(b",\"glucose_value\":");
    json_uint(out, r.glucose.mg_dl().get().into());
    out.extend_from_slice(b",\"glucose_unit\":\"mg/dL\"");
    if let Some(status) = r.glucose.status() {
        out.extend_from_slice(b",\"status\":");
        json_name(out, status.as_str());
    }
    out.extend_from_slice(b",\"trend_direction\":");
    match r.trend {
        Some(t) => json_name(out, t.as_str()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"trend_rate\":");
    match r.trend_rate.map(TrendRate::get) {
        // serde_json's own float formatting, so the digits are the same.
        Some(rate) if rate.is_finite() => {
            // Writing into a Vec cannot fail.
            let written = serde_json::ser::CompactFormatter.write_f64(&mut *out, rate);
            debug_assert!(written.is_ok());
        }
        _ => out.extend_from_slice(b"null"),
    }
    if r.device_id.is_some() || r.serial_number.is_some() || r.transmitter_id.is_some() {
        out.extend_from_slice(b",\"device_info\":{");
        let mut sep: &[u8] = b"";
        for (key, value) in [
            (&b"\"device_id\":"[..], r.device_id),
            (b"\"serial_number\":", r.serial_number),
            (b"\"transmitter_id\":", r.transmitter_id),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(sep);
                out.extend_from_slice(key);
                json_str(out, value);
                sep = b",";
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"reading_type\":");
    json_name(out, r.reading_type.as_str());
    out.extend_from_slice(b",\"source\":");
    json_str(out, r.source);
    if let Some(id) = r.source_record_id {
        out.extend_from_slice(b",\"source_record_id\":");
        json_str(out, id);
    }
    if let Some(minutes) = r.display_offset_minutes {
        out.extend_from_slice(b",\"display_offset_minutes\":");
        if minutes < 0 {
            out.push(b'-');
        }
        json_uint(out, minutes.unsigned_abs().into());
    }
    out.extend_from_slice(b",\"version\":");
    json_uint(out, r.version.into());
    out.extend_from_slice(b",\"created_at\":");
    let created_start = out.len();
    json_time(out, r.created_at, true);
    let created = created_start..out.len();
    out.extend_from_slice(b",\"updated_at\":");
    if r.updated_at == r.created_at {
        // A reading never replaced (most of them): the same text again.
        out.extend_from_within(created);
    } else {
        json_time(out, r.updated_at, true);
    }
    out.push(b'}');
}

/// A JSON string. Stored values are nearly always plain ASCII, copied as they
/// are; anything serde_json would escape goes through serde_json's escaper.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        json_name(out, s);
    } else {
        // Writing into a Vec cannot fail.
        let escaped = serde_json::to_writer(&mut *out, s);
        debug_assert!(escaped.is_ok());
    }
}

/// A JSON string known to need no escaping: the domain's own names (trends,
/// statuses, reading types).
fn json_name(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn json_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A quoted RFC 3339 instant in UTC, as `Rfc3339` writes it. Instants in years
/// 1970-9999 (every stored reading's) are formatted here from the civil date,
/// into a stack buffer copied once; others, and leap seconds, go through `Rfc3339`.
fn json_time(out: &mut Vec<u8>, at: DateTime<Utc>, millis: bool) {
    const END_OF_9999: i64 = 253_402_300_800;
    let secs = at.timestamp();
    let nanos = at.timestamp_subsec_nanos();
    if !(0..END_OF_9999).contains(&secs) || nanos >= 1_000_000_000 {
        let t = if millis {
            Rfc3339::millis(at)
        } else {
            Rfc3339::seconds(at)
        };
        out.push(b'"');
        out.extend_from_slice(t.to_string().as_bytes());
        out.push(b'"');
        return;
    }
    // Both casts are in range: 0 <= secs < END_OF_9999.
    let (days, second_of_day) = ((secs / 86_400) as u32, (secs % 86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    let mut buf = *b"\"0000-00-00T00:00:00.000Z\"";
    let put2 = |buf: &mut [u8; 26], at: usize, v: u32| {
        buf[at] = b'0' + (v / 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    };
    put2(&mut buf, 1, year / 100);
    put2(&mut buf, 3, year % 100);
    put2(&mut buf, 6, month);
    put2(&mut buf, 9, day);
    put2(&mut buf, 12, second_of_day / 3600);
    put2(&mut buf, 15, second_of_day / 60 % 60);
    put2(&mut buf, 18, second_of_day % 60);
    if millis {
        let ms = nanos / 1_000_000;
        buf[21] = b'0' + (ms / 100) as u8;
        put2(&mut buf, 22, ms % 100);
        out.extend_from_slice(&buf);
    } else {
        buf[20] = b'Z';
        buf[21] = b'"';
        out.extend_from_slice(&buf[..22]);
    }
}

/// Year, month and day of a day count since 1970-01-01: Howard Hinnant's
/// `civil_from_days`, for days >= 0.
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Glucose, MgDl, ReadingTime, ReadingType, SensorStatus, Trend, TrendRate};
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn serde_bytes(r: &ReadingRef<'_>) -> Vec<u8> {
        serde_json::to_vec(&ReadingView::from(*r)).unwrap()
    }

    fn encoded(r: &ReadingRef<'_>) -> Vec<u8> {
        let mut out = b"[prefix]".to_vec();
        encode_reading(r, &mut out);
        out.split_off(8)
    }

    fn sample() -> ReadingRef<'static> {
        ReadingRef {
            user_id: "user123",
            timestamp: ReadingTime::from_unix_seconds(1_692_109_800).unwrap(),
            glucose: Glucose::value(MgDl::new(120).unwrap()),
            trend: Some(Trend::Steady),
            trend_rate: Some(TrendRate::new(0.1).unwrap()),
            device_id: Some("G6-12345"),
            serial_number: Some("SN12345678"),
            transmitter_id: Some("TX12345"),
            reading_type: ReadingType::Cgm,
            source: "dexcom",
            source_record_id: None,
            display_offset_minutes: None,
            version: 1,
            created_at: Utc.timestamp_millis_opt(1_692_110_112_345).unwrap(),
            updated_at: Utc.timestamp_millis_opt(1_692_110_112_345).unwrap(),
        }
    }

    #[test]
    fn encoded_reading_is_the_contract_example_byte_for_byte() {
        let want = r#"{"user_id":"user123","timestamp":"2023-08-15T14:30:00Z","glucose_value":120,"glucose_unit":"mg/dL","trend_direction":"steady","trend_rate":0.1,"device_info":{"device_id":"G6-12345","serial_number":"SN12345678","transmitter_id":"TX12345"},"reading_type":"CGM","source":"dexcom","version":1,"created_at":"2023-08-15T14:35:12.345Z","updated_at":"2023-08-15T14:35:12.345Z"}"#;
        assert_eq!(String::from_utf8(encoded(&sample())).unwrap(), want);
        assert_eq!(String::from_utf8(serde_bytes(&sample())).unwrap(), want);
    }

    #[test]
    fn encoded_reading_writes_optional_fields_as_serde_does() {
        let r = ReadingRef {
            glucose: Glucose::out_of_range(SensorStatus::Low),
            trend: None,
            trend_rate: None,
            device_id: None,
            serial_number: Some("S\"N\\1"),
            transmitter_id: None,
            reading_type: ReadingType::Manual,
            source_record_id: Some("rec \"7\"\n\u{1}é\u{7f}"),
            display_offset_minutes: Some(-330),
            version: 4_000_000_000,
            // Before 1970, and a leap second: the formatter's fallbacks.
            timestamp: ReadingTime::from_unix_seconds(-86_399).unwrap(),
            created_at: Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(),
            ..sample()
        };
        let want = r#"{"user_id":"user123","timestamp":"1969-12-31T00:00:01Z","glucose_value":39,"glucose_unit":"mg/dL","status":"low","trend_direction":null,"trend_rate":null,"device_info":{"serial_number":"S\"N\\1"},"reading_type":"manual","source":"dexcom","source_record_id":"rec \"7\"\n\u0001é","display_offset_minutes":-330,"version":4000000000,"created_at":"2017-01-01T00:00:00.500Z","updated_at":"2023-08-15T14:35:12.345Z"}"#;
        assert_eq!(String::from_utf8(serde_bytes(&r)).unwrap(), want);
        assert_eq!(String::from_utf8(encoded(&r)).unwrap(), want);
    }

    /// The parts of a `ReadingRef` that own their strings, for proptest.
    #[derive(Debug, Clone)]
    struct Parts {
        user_id: String,
        status: Option<bool>,
        value: u16,
        trend: Option<usize>,
        trend_rate: Option<f64>,
        device: Vec<Option<String>>,
        reading_type: usize,
        source: String,
        source_record_id: Option<String>,
        display_offset_minutes: Option<i16>,
        version: u32,
    }

    prop_compose! {
        fn parts()(
            user_id in "[A-Za-z0-9_-]{1,64}",
            status in prop::option::of(any::<bool>()),
            value in 20u16..=600,
            trend in prop::option::of(0usize..10),
            trend_rate in prop::option::of(-100.0f64..=100.0),
            // Printable ASCII, quotes and backslashes included (the device rule).
            device in prop::collection::vec(prop::option::of("[ -~]{1,64}"), 3),
            reading_type in 0usize..3,
            source in "[a-z0-9_-]{1,32}",
            // Anything: non-ASCII, and control characters that JSON escapes.
            source_record_id in prop::option::of("\\PC{0,8}|[\\x00-\\x7f]{0,8}"),
            display_offset_minutes in any::<Option<i16>>(),
            version in any::<u32>(),
        ) -> Parts {
            Parts { user_id, status, value, trend, trend_rate, device, reading_type, source,
                    source_record_id, display_offset_minutes, version }
        }
    }

    proptest! {
        #[test]
        fn encoded_reading_equals_serde_of_its_view(
            p in parts(),
            // Years 1 to 9999 (the formatter's own range is 1970-9999).
            ts in -62_135_596_800i64..253_402_300_799,
            created in -62_135_596_800i64..253_402_300_799,
            created_ns in 0u32..1_000_000_000,
            updated_ms in -62_135_596_800_000i64..253_402_300_799_999,
        ) {
            let r = ReadingRef {
                user_id: &p.user_id,
                timestamp: ReadingTime::from_unix_seconds(ts).unwrap(),
                glucose: match p.status {
                    None => Glucose::value(MgDl::new(p.value).unwrap()),
                    Some(true) => Glucose::out_of_range(SensorStatus::Low),
                    Some(false) => Glucose::out_of_range(SensorStatus::High),
                },
                trend: p.trend.map(|i| Trend::ALL[i]),
                trend_rate: p.trend_rate.map(|x| TrendRate::new(x).unwrap()),
                device_id: p.device[0].as_deref(),
                serial_number: p.device[1].as_deref(),
                transmitter_id: p.device[2].as_deref(),
                reading_type: [ReadingType::Cgm, ReadingType::Manual, ReadingType::Calibration][p.reading_type],
                source: &p.source,
                source_record_id: p.source_record_id.as_deref(),
                display_offset_minutes: p.display_offset_minutes,
                version: p.version,
                created_at: Utc.timestamp_opt(created, created_ns).unwrap(),
                updated_at: Utc.timestamp_millis_opt(updated_ms).unwrap(),
            };
            prop_assert_eq!(
                String::from_utf8(encoded(&r)).unwrap(),
                String::from_utf8(serde_bytes(&r)).unwrap()
            );
        }

        #[test]
        fn fast_formatting_equals_chrono(secs in -2_000_000_000i64..5_000_000_000, ms in 0u32..1000) {
            let at = Utc.timestamp_opt(secs, ms * 1_000_000).unwrap();
            prop_assert_eq!(
                Rfc3339::seconds(at).to_string(),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            prop_assert_eq!(
                Rfc3339::millis(at).to_string(),
                at.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
    }
}

/// What a job did, per record; cumulative across resumptions.
// The API's own view of `records::jobs::JobCounts`, so the record carries no
// schema; published under the record's name, so the OpenAPI document is as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = JobCounts)]
pub struct JobCountsView {
    pub fetched: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl From<JobCounts> for JobCountsView {
    fn from(c: JobCounts) -> Self {
        Self {
            fetched: c.fetched,
            inserted: c.inserted,
            updated: c.updated,
            duplicates: c.duplicates,
            rejected: c.rejected,
        }
    }
}

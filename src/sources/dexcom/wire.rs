//! Serde types for exactly what Dexcom sends, kept at the edge so that its format
//! (v2 and v3 envelopes, open enums, odd timestamps) never leaks into the domain.
//!
//! Everything is lenient (Dexcom adds enum values and fields without notice):
//! unknown fields are ignored, enum-like fields stay `Option<String>`, and a page
//! with one malformed record still yields all the others.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::time::{parse_dexcom_time, TimeError};
use crate::pipeline::wire::json_pointer;

/// A page of estimated glucose values from `GET /v{2,3}/users/self/egvs`.
///
/// Accepts the v3 envelope (`recordType`, `recordVersion`, `userId`, `records`) and
/// the v2 one (`unit`, `rateUnit`, `egvs`), as Dexcom's API documentation describes them.
/// A missing or null array is an empty page ("The size of the array will be zero
/// if there are no egvs", Dexcom's v3 documentation).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "RawEgvsPage")]
pub struct EgvsPage {
    /// The well-formed records, in the order Dexcom sent them.
    pub records: Vec<EgvRecord>,
    /// The page-level glucose unit (v2 only; v3 puts `unit` on each record).
    pub unit: Option<String>,
    /// Array elements that could not be read as an EGV record (a field of the wrong
    /// JSON type, or not an object), in array order. They do not fail the page.
    pub malformed: Vec<MalformedRecord>,
}

impl EgvsPage {
    /// How many elements the page's array had, well-formed or not.
    pub fn len(&self) -> usize {
        self.records.len() + self.malformed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An element of a page's array that is not a readable EGV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRecord {
    /// Its position in the page's array.
    pub index: usize,
    /// Its `recordId`, when it had a string one.
    pub record_id: Option<String>,
    /// JSON pointer to the offending field within the record (`/value`); empty when
    /// the element itself is wrong (not an object).
    pub pointer: String,
    /// serde's description of the problem. It may quote the offending input, so it
    /// is data for the caller, not for logs.
    pub message: String,
}

#[derive(Deserialize)]
struct RawEgvsPage {
    #[serde(default, alias = "egvs", deserialize_with = "null_as_default")]
    records: Vec<Value>,
    #[serde(default)]
    unit: Option<String>,
}

impl From<RawEgvsPage> for EgvsPage {
    fn from(raw: RawEgvsPage) -> Self {
        let mut records = Vec::with_capacity(raw.records.len());
        let mut malformed = Vec::new();
        for (index, value) in raw.records.into_iter().enumerate() {
            let record_id = value
                .get("recordId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match serde_path_to_error::deserialize::<_, EgvRecord>(value) {
                Ok(record) => records.push(record),
                Err(err) => {
                    let pointer = json_pointer(err.path());
                    malformed.push(MalformedRecord {
                        index,
                        record_id,
                        pointer,
                        message: err.into_inner().to_string(),
                    });
                }
            }
        }
        Self {
            records,
            unit: raw.unit,
            malformed,
        }
    }
}

/// One estimated glucose value, v3 (`recordId` … `transmitterGeneration`) or v2 (no
/// `recordId`, `unit`, transmitter or device fields; its `realtimeValue` and
/// `smoothedValue` are ignored, and `value` is the one to consume).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgvRecord {
    pub record_id: Option<String>,
    /// Missing or null reads as empty, so that the translation rejects this one record
    /// (pointer `/systemTime`) instead of the whole page failing.
    #[serde(default, deserialize_with = "null_as_default")]
    pub system_time: String,
    pub display_time: Option<String>,
    pub transmitter_id: Option<String>,
    /// Not used by the translation, so an odd value (a float, a numeric string)
    /// never costs the record: unreadable values become `None`.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub transmitter_ticks: Option<i64>,
    /// Dexcom documents int32 or null; `142.0` is accepted too.
    pub value: Option<f64>,
    /// `unknown`, `high`, `low`, `ok` (v3); v2 also sent `outOfCalibration`, `sensorNoise`.
    pub status: Option<String>,
    pub trend: Option<String>,
    pub trend_rate: Option<f64>,
    pub unit: Option<String>,
    pub rate_unit: Option<String>,
    pub display_device: Option<String>,
    pub transmitter_generation: Option<String>,
}

/// The earliest and latest `systemTime` of a kind of record, in UTC.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// `GET /v3/users/self/dataRange`: earliest and latest record times per kind. Each
/// block is missing when there is no data of that kind (Dexcom's v3 documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataRange {
    pub egvs: Option<RangeBlock>,
    pub calibrations: Option<RangeBlock>,
    pub events: Option<RangeBlock>,
}

impl DataRange {
    /// The `systemTime`s of the earliest and latest EGV, in UTC; `None` when the
    /// user has no EGVs. Both edges are record times, so the latest is inclusive:
    /// a half-open request window must end after it.
    pub fn egvs_span(&self) -> Result<Option<Span>, TimeError> {
        self.egvs.as_ref().map(RangeBlock::span).transpose()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeBlock {
    #[serde(default, deserialize_with = "null_as_default")]
    pub start: RangeEdge,
    #[serde(default, deserialize_with = "null_as_default")]
    pub end: RangeEdge,
}

impl RangeBlock {
    /// `(start, end)` system times in UTC, parsed leniently. An edge without a
    /// `systemTime` is a [`TimeError`] rather than a guess.
    pub fn span(&self) -> Result<Span, TimeError> {
        let start = parse_dexcom_time(&self.start.system_time)?.utc;
        let end = parse_dexcom_time(&self.end.system_time)?.utc;
        Ok((start, end))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeEdge {
    #[serde(default, deserialize_with = "null_as_default")]
    pub system_time: String,
    pub display_time: Option<String>,
}

/// `GET /v{2,3}/users/self/devices` (v2 names the array `devices`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesPage {
    #[serde(default, alias = "devices", deserialize_with = "null_as_default")]
    pub records: Vec<DeviceRecord>,
}

/// One device. Its `alertSchedules` (with 12-hour times) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub last_upload_date: Option<String>,
    pub transmitter_id: Option<String>,
    /// Open set: `g6 pro` and `g715day` have been seen beside the documented values.
    pub transmitter_generation: Option<String>,
    /// Open set: `shareReceiver` and `touchscreenReceiver` have been seen.
    pub display_device: Option<String>,
    pub display_app: Option<String>,
}

/// A successful `POST /v2/oauth2/token`. Its `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds; 7200 in Dexcom's examples, but compute expiry from this value.
    /// Accepted as a number or a numeric string.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub expires_in: Option<i64>,
    pub token_type: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .finish()
    }
}

/// Error codes of RFC 6749 §4.1.2.1 and §5.2 and RFC 6750 §3.1, which a body may
/// mention in free text.
const OAUTH_ERROR_CODES: [&str; 12] = [
    "invalid_grant",
    "invalid_request",
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
];

/// How much of a body is searched for a code in free text.
const MAX_SCANNED_BODY: usize = 64 * 1024;

/// The OAuth error code of a token-endpoint response, read defensively: error bodies
/// may not follow RFC 6749, and only `invalid_grant`
/// means the user must reconnect.
///
/// In order of preference:
/// 1. a known OAuth code in a code field of a JSON object: `error`, `errorCode` /
///    `error_code`, `code` (any letter case), also inside a nested `error` object
///    or the first element of an `errors` array; returned in lowercase;
/// 2. a known OAuth code anywhere in the body as a whole word (a `Message`, plain
///    text, HTML, a form-encoded body), the earliest one;
/// 3. any other code-like token (letters, digits, `_ . -`) in such a code field,
///    as sent (such as Share's `SessionNotValid`).
///
/// A success status (2xx) skips step 2: a successful body that merely mentions a
/// code is not an error. `None` when nothing identifiable is there.
pub fn oauth_error_code(status: u16, body: &[u8]) -> Option<String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let json = serde_json::from_slice::<Value>(body.trim_ascii()).ok();
    let fields = json
        .as_ref()
        .map(|v| {
            let mut found = Vec::new();
            collect_code_fields(v, 0, &mut found);
            found
        })
        .unwrap_or_default();

    if let Some(known) = fields.iter().find_map(|s| known_code(s)) {
        return Some(known.to_owned());
    }
    if !(200..300).contains(&status) {
        if let Some(known) = scan_for_known_code(body) {
            return Some(known.to_owned());
        }
    }
    fields
        .into_iter()
        .find(|s| is_code_like(s))
        .map(|s| s.trim().to_owned())
}

/// String values of code fields, most authoritative first.
fn collect_code_fields<'a>(value: &'a Value, depth: u8, found: &mut Vec<&'a str>) {
    const CODE_KEYS: [&[&str]; 3] = [&["error"], &["errorcode", "error_code"], &["code"]];
    let Some(object) = value.as_object() else {
        return;
    };
    for keys in CODE_KEYS {
        for (key, v) in object {
            if !keys.iter().any(|k| key.eq_ignore_ascii_case(k)) {
                continue;
            }
            match v {
                Value::String(s) => found.push(s),
                Value::Object(_) if depth < 2 => collect_code_fields(v, depth + 1, found),
                _ => {}
            }
        }
    }
    if depth < 2 {
        for (key, v) in object {
            if key.eq_ignore_ascii_case("errors") {
                if let Some(first) = v.as_array().and_then(|a| a.first()) {
                    collect_code_fields(first, depth + 1, found);
                }
            }
        }
    }
}

fn known_code(raw: &str) -> Option<&'static str> {
    let raw = raw.trim();
    OAUTH_ERROR_CODES
        .iter()
        .find(|c| raw.eq_ignore_ascii_case(c))
        .copied()
}

fn is_code_like(raw: &str) -> bool {
    let raw = raw.trim();
    (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && raw.bytes().any(|b| b.is_ascii_alphabetic())
}

/// The earliest known code that stands as a whole word (not inside a longer identifier).
fn scan_for_known_code(body: &[u8]) -> Option<&'static str> {
    let text = body[..body.len().min(MAX_SCANNED_BODY)].to_ascii_lowercase();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    OAUTH_ERROR_CODES
        .iter()
        .filter_map(|code| {
            let code_bytes = code.as_bytes();
            text.windows(code_bytes.len())
                .enumerate()
                .find(|(at, w)| {
                    *w == code_bytes
                        && (*at == 0 || !is_word(text[at - 1]))
                        && text.get(at + code_bytes.len()).is_none_or(|b| !is_word(*b))
                })
                .map(|(at, _)| (at, *code))
        })
        .min_by_key(|(at, _)| *at)
        .map(|(_, code)| code)
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An integer sent as an integer, an integral float or a numeric string; anything
/// else reads as `None`.
fn lenient_i64<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    // Below 2^63, so the cast of an integral float is exact enough and cannot saturate.
    const LIMIT: f64 = 9.2e18;
    Ok(match Value::deserialize(deserializer)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < LIMIT)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Dexcom's documented v3 example, with a full 64-hex transmitter hash.
    const V3_PAGE: &str = r#"{
      "recordType": "egv",
      "recordVersion": "3.0",
      "userId": "5b329ebcfbf2f0ba7e49d4c5eb57775468f5ee657ac16fcde07e1fd08197b4c7",
      "records": [
        { "recordId": "1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0001",
          "systemTime": "2026-04-30T15:00:00+00:00", "displayTime": "2026-04-30T08:00:00-07:00",
          "transmitterId": "cdb4f8ee1c3e4f5a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e046b",
          "transmitterTicks": 12345678, "value": 142, "status": "ok", "trend": "flat",
          "trendRate": 0.3, "unit": "mg/dL", "rateUnit": "mg/dL/min",
          "displayDevice": "iOS", "transmitterGeneration": "g7" },
        { "recordId": "1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0002",
          "systemTime": "2026-04-30T15:05:00", "displayTime": "2026-04-30T08:05:00",
          "transmitterId": "8GA1JK", "transmitterTicks": 12345978, "value": 148, "status": null,
          "trend": "fortyFiveUp", "trendRate": 1.2, "unit": "mg/dL", "rateUnit": "mg/dL/min",
          "displayDevice": "receiver", "transmitterGeneration": "g6" }
      ]
    }"#;

    /// A v2 page: page-level unit, `egvs` array, realtime/smoothed values, no recordId.
    const V2_PAGE: &str = r#"{
      "unit": "mg/dL", "rateUnit": "mg/dL/min",
      "egvs": [
        { "systemTime": "2017-06-16T15:40:00", "displayTime": "2017-06-16T07:40:00",
          "value": 120, "realtimeValue": 120, "smoothedValue": null,
          "status": null, "trend": "flat", "trendRate": -0.1 },
        { "systemTime": "2017-06-16T15:45:00", "displayTime": "2017-06-16T07:45:00",
          "value": null, "realtimeValue": null, "smoothedValue": null,
          "status": "low", "trend": "notComputable", "trendRate": null }
      ]
    }"#;

    #[test]
    fn v3_page_reads_every_field() {
        let page: EgvsPage = serde_json::from_str(V3_PAGE).unwrap();
        assert_eq!(page.records.len(), 2);
        assert!(page.malformed.is_empty());
        assert_eq!(page.unit, None);
        let r = &page.records[0];
        assert_eq!(
            r.record_id.as_deref(),
            Some("1f3a9b56-1f4f-4c70-9d2c-bb4f5d6e0001")
        );
        assert_eq!(r.system_time, "2026-04-30T15:00:00+00:00");
        assert_eq!(r.display_time.as_deref(), Some("2026-04-30T08:00:00-07:00"));
        assert_eq!(r.transmitter_id.as_ref().map(String::len), Some(64));
        assert_eq!(r.transmitter_ticks, Some(12_345_678));
        assert_eq!(r.value, Some(142.0));
        assert_eq!(r.status.as_deref(), Some("ok"));
        assert_eq!(r.trend.as_deref(), Some("flat"));
        assert_eq!(r.trend_rate, Some(0.3));
        assert_eq!(r.unit.as_deref(), Some("mg/dL"));
        assert_eq!(r.rate_unit.as_deref(), Some("mg/dL/min"));
        assert_eq!(r.display_device.as_deref(), Some("iOS"));
        assert_eq!(r.transmitter_generation.as_deref(), Some("g7"));
        assert_eq!(page.records[1].status, None);
    }

    #[test]
    fn v2_page_fills_records_from_egvs() {
        let page: EgvsPage = serde_json::from_str(V2_PAGE).unwrap();
        assert_eq!(page.unit.as_deref(), Some("mg/dL"));
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].record_id, None);
        assert_eq!(page.records[0].value, Some(120.0));
        assert_eq!(page.records[1].value, None);
        assert_eq!(page.records[1].status.as_deref(), Some("low"));
    }

    #[test]
    fn empty_missing_and_null_arrays_are_empty_pages() {
        for json in [
            r#"{"recordType":"egv","recordVersion":"3.0","userId":"u","records":[]}"#,
            r#"{"recordType":"egv","recordVersion":"3.0","userId":"u"}"#,
            r#"{"records":null}"#,
            r#"{"unit":"mg/dL","rateUnit":"mg/dL/min","egvs":[]}"#,
            r#"{}"#,
        ] {
            let page: EgvsPage = serde_json::from_str(json).unwrap();
            assert!(page.is_empty(), "{json}");
        }
    }

    #[test]
    fn open_enums_unknown_fields_and_float_values_are_accepted() {
        let json = r#"{"records":[{"recordId":"r1","systemTime":"2026-04-30T15:00:00Z",
            "value":142.0,"status":"sensorWarmup","trend":"sideways","unit":"mg/dL",
            "transmitterGeneration":"g715day","displayDevice":"touchscreenReceiver",
            "transmitterTicks":1.0e3,"brandNewField":{"nested":[1,2,3]}}],
            "somethingElse":true}"#;
        let page: EgvsPage = serde_json::from_str(json).unwrap();
        let r = &page.records[0];
        assert_eq!(r.value, Some(142.0));
        assert_eq!(r.status.as_deref(), Some("sensorWarmup"));
        assert_eq!(r.trend.as_deref(), Some("sideways"));
        assert_eq!(r.transmitter_generation.as_deref(), Some("g715day"));
        assert_eq!(r.transmitter_ticks, Some(1000));
    }

    #[test]
    fn a_malformed_record_does_not_cost_the_page() {
        let json = r#"{"records":[
            {"recordId":"a","systemTime":"2026-04-30T15:00:00Z","value":100},
            {"recordId":"b","systemTime":"2026-04-30T15:05:00Z","value":"high"},
            "not an object",
            {"recordId":"d","value":110},
            {"recordId":"e","systemTime":"2026-04-30T15:15:00Z","value":120,"transmitterTicks":"x"}
        ]}"#;
        let page: EgvsPage = serde_json::from_str(json).unwrap();
        let ids: Vec<_> = page
            .records
            .iter()
            .map(|r| r.record_id.as_deref())
            .collect();
        assert_eq!(ids, [Some("a"), Some("d"), Some("e")]);
        assert_eq!(
            page.records[1].system_time, "",
            "missing systemTime reads as empty"
        );
        assert_eq!(page.records[2].transmitter_ticks, None);
        assert_eq!(page.len(), 5);
        let bad: Vec<_> = page
            .malformed
            .iter()
            .map(|m| (m.index, m.record_id.as_deref(), m.pointer.as_str()))
            .collect();
        assert_eq!(bad, [(1, Some("b"), "/value"), (2, None, "")]);
        assert!(page.malformed[0].message.contains("invalid type"));
    }

    #[test]
    fn data_range_spans() {
        let json = r#"{"recordType":"dataRange","recordVersion":"3.0","userId":"u",
            "calibrations":{"start":{"systemTime":"2021-06-01T01:10:08","displayTime":"2021-06-01T01:10:08"},
                            "end":{"systemTime":"2021-06-02T01:10:08","displayTime":"2021-06-02T01:10:08"}},
            "egvs":{"start":{"systemTime":"2021-06-01T00:00:00Z","displayTime":"2021-05-31T17:00:00-07:00"},
                    "end":{"systemTime":"2021-07-01T12:30","displayTime":"2021-07-01T05:30"}}}"#;
        let range: DataRange = serde_json::from_str(json).unwrap();
        assert!(range.events.is_none());
        let (start, end) = range.egvs_span().unwrap().unwrap();
        assert_eq!(start, Utc.with_ymd_and_hms(2021, 6, 1, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2021, 7, 1, 12, 30, 0).unwrap());
        let calibrations = range.calibrations.as_ref().unwrap().span().unwrap();
        assert_eq!(
            calibrations.0,
            Utc.with_ymd_and_hms(2021, 6, 1, 1, 10, 8).unwrap()
        );

        let none: DataRange = serde_json::from_str(r#"{"recordType":"dataRange"}"#).unwrap();
        assert_eq!(none.egvs_span().unwrap(), None);
        let null: DataRange = serde_json::from_str(r#"{"egvs":null}"#).unwrap();
        assert_eq!(null.egvs_span().unwrap(), None);

        let bad: DataRange = serde_json::from_str(
            r#"{"egvs":{"start":{"systemTime":"2021-06-0"},"end":{"systemTime":"2021-07-01T00:00:00"}}}"#,
        )
        .unwrap();
        assert_eq!(bad.egvs_span().unwrap_err().raw, "2021-06-0");
        let hollow: DataRange = serde_json::from_str(r#"{"egvs":{}}"#).unwrap();
        assert!(hollow.egvs_span().is_err());
    }

    #[test]
    fn devices_v3_and_v2() {
        let v3 = r#"{"recordType":"device","recordVersion":"3.0","userId":"u","records":[
            {"lastUploadDate":"2026-04-30T15:00:00Z","transmitterId":"","transmitterGeneration":"g6 pro",
             "displayDevice":"shareReceiver","displayApp":"G6",
             "alertSchedules":[{"alertScheduleSettings":{"alertScheduleName":"Default","isEnabled":true,
               "startTime":"12:00 AM","endTime":"11:59 PM","daysOfWeek":["monday"]},
               "alertSettings":[{"alertName":"low","value":70,"unit":"mg/dL","snooze":30,"enabled":true}]}]}]}"#;
        let page: DevicesPage = serde_json::from_str(v3).unwrap();
        let d = &page.records[0];
        assert_eq!(d.transmitter_generation.as_deref(), Some("g6 pro"));
        assert_eq!(d.display_device.as_deref(), Some("shareReceiver"));
        assert_eq!(d.display_app.as_deref(), Some("G6"));
        assert_eq!(d.transmitter_id.as_deref(), Some(""));
        assert_eq!(d.last_upload_date.as_deref(), Some("2026-04-30T15:00:00Z"));

        let v2 = r#"{"devices":[{"model":"G5 Mobile App","lastUploadDate":"2017-06-16T15:45:00",
            "displayDevice":"android"}]}"#;
        let page: DevicesPage = serde_json::from_str(v2).unwrap();
        assert_eq!(page.records[0].display_device.as_deref(), Some("android"));
        let page: DevicesPage = serde_json::from_str("{}").unwrap();
        assert!(page.records.is_empty());
    }

    #[test]
    fn token_response_and_its_debug_hides_secrets() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"at-secret","expires_in":7200,"token_type":"Bearer","refresh_token":"rt-secret"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token, "at-secret");
        assert_eq!(t.refresh_token.as_deref(), Some("rt-secret"));
        assert_eq!(t.expires_in, Some(7200));
        assert_eq!(t.token_type.as_deref(), Some("Bearer"));
        let debug = format!("{t:?}");
        assert!(!debug.contains("secret"), "{debug}");

        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3600"}"#).unwrap();
        assert_eq!((t.expires_in, t.refresh_token), (Some(3600), None));
        assert!(serde_json::from_str::<TokenResponse>(r#"{"expires_in":7200}"#).is_err());
    }

    #[test]
    fn oauth_error_codes_from_many_body_shapes() {
        let cases: &[(u16, &str, Option<&str>)] = &[
            // RFC 6749 §5.2
            (
                400,
                r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"error":"invalid_request"}"#,
                Some("invalid_request"),
            ),
            (401, r#"{"error":"invalid_client"}"#, Some("invalid_client")),
            (400, r#"{"error":"INVALID_GRANT"}"#, Some("invalid_grant")),
            (400, r#"{"error":" invalid_grant "}"#, Some("invalid_grant")),
            // non-conformant shapes
            (
                400,
                r#"{"error":{"code":"invalid_grant","message":"expired"}}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"errorCode":"invalid_grant"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"error_code":"invalid_grant"}"#,
                Some("invalid_grant"),
            ),
            (400, r#"{"code":"invalid_grant"}"#, Some("invalid_grant")),
            (
                400,
                r#"{"Code":"invalid_grant","Message":"x"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"errors":[{"code":"invalid_grant"}]}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"Message":"The provided grant is invalid: invalid_grant"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"error":"Bad Request","message":"invalid_grant"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"error":"Bad Request","code":"invalid_grant"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"code":"AuthError","Message":"invalid_grant: token revoked"}"#,
                Some("invalid_grant"),
            ),
            (
                400,
                "error=invalid_grant&error_description=expired",
                Some("invalid_grant"),
            ),
            (
                400,
                "oauth2: \"invalid_grant\" \"token expired\"",
                Some("invalid_grant"),
            ),
            (
                400,
                "<html><body><h1>400</h1><p>invalid_grant</p></body></html>",
                Some("invalid_grant"),
            ),
            (
                400,
                "\u{feff}{\"error\":\"invalid_grant\"}",
                Some("invalid_grant"),
            ),
            (
                400,
                "  \n{\"error\":\"invalid_grant\"}\n",
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"message":"access_denied, then invalid_grant"}"#,
                Some("access_denied"),
            ),
            // unknown but code-like: returned as sent
            (
                500,
                r#"{"Code":"SSO_InternalError","Message":"Something broke"}"#,
                Some("SSO_InternalError"),
            ),
            (400, r#"{"error":"login_expired"}"#, Some("login_expired")),
            // nothing identifiable
            (400, r#"{"Message":"An error has occurred."}"#, None),
            (400, r#"{"error":"Something went wrong, try again"}"#, None),
            (400, r#"{"code":400,"error":true}"#, None),
            (400, r#"{"code":"400"}"#, None),
            (502, "<html><body>Bad Gateway</body></html>", None),
            (500, "", None),
            (400, "[]", None),
            (400, "null", None),
            (400, "\u{0}\u{1}\u{ff}", None),
            // whole words only
            (400, "my_invalid_grant_flag", None),
            (400, r#"{"message":"not_invalid_grant"}"#, None),
            // 2xx: only structured code fields count
            (
                200,
                r#"{"access_token":"a","token_type":"Bearer","expires_in":7200}"#,
                None,
            ),
            (200, "<html>see invalid_grant docs</html>", None),
            (200, r#"{"error":"invalid_grant"}"#, Some("invalid_grant")),
        ];
        for (status, body, want) in cases {
            assert_eq!(
                oauth_error_code(*status, body.as_bytes()).as_deref(),
                *want,
                "{status} {body:?}"
            );
        }
    }

    #[test]
    fn oauth_error_code_handles_huge_and_invalid_utf8_bodies() {
        let mut body = vec![0xffu8; 10];
        body.extend_from_slice(b" invalid_grant ");
        assert_eq!(
            oauth_error_code(400, &body).as_deref(),
            Some("invalid_grant")
        );
        let mut huge = vec![b'x'; MAX_SCANNED_BODY];
        huge.extend_from_slice(b" invalid_grant");
        assert_eq!(oauth_error_code(400, &huge), None);
    }
}

//! Response bodies: the reading as the contract shows it, and the success envelope.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::domain::{StoredReading, TrendRate};
use crate::records::jobs::JobCounts;

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
        let r = &s.reading;
        Self {
            user_id: r.user_id.as_str(),
            timestamp: Rfc3339::seconds(r.timestamp.as_datetime()),
            glucose_value: r.glucose.mg_dl().get(),
            glucose_unit: "mg/dL",
            status: r.glucose.status().map(|st| st.as_str()),
            trend_direction: r.trend.map(|t| t.as_str()),
            trend_rate: r.trend_rate.map(TrendRate::get),
            device_info: (!r.device.is_empty()).then(|| DeviceInfoView {
                device_id: r.device.device_id(),
                serial_number: r.device.serial_number(),
                transmitter_id: r.device.transmitter_id(),
            }),
            reading_type: r.reading_type.as_str(),
            source: r.source.as_str(),
            source_record_id: r.source_record_id.as_deref(),
            display_offset_minutes: r.display_offset_minutes,
            version: s.version,
            created_at: Rfc3339::millis(s.created_at),
            updated_at: Rfc3339::millis(s.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    proptest! {
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

//! Response bodies: the reading as the contract shows it, and the success envelope.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{StoredReading, TrendRate};

/// `{"status":"success","data":...}`
#[derive(Debug, Serialize)]
pub struct Success<T> {
    pub status: &'static str,
    pub data: T,
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
    #[schema(example = "2023-08-15T14:30:00Z")]
    pub timestamp: String,
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
    pub created_at: String,
    pub updated_at: String,
}

pub fn timestamp_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl<'a> From<&'a StoredReading> for ReadingView<'a> {
    fn from(s: &'a StoredReading) -> Self {
        let r = &s.reading;
        Self {
            user_id: r.user_id.as_str(),
            timestamp: r.timestamp.to_rfc3339(),
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
            created_at: timestamp_ms(s.created_at),
            updated_at: timestamp_ms(s.updated_at),
        }
    }
}

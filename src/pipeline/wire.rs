//! The service's own reading input format (HTTP and JSON imports), parsed once into
//! a domain `Reading`. Every problem is reported with the field's JSON pointer.

use serde::de::IgnoredAny;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::{
    DeviceInfo, FieldError, Glucose, GlucoseUnit, Reading, ReadingTime, ReadingType, SensorStatus,
    Source, Trend, TrendRate, UserId,
};

/// A reading as clients send it. Unknown fields are rejected so typos are not lost
/// silently; `version`, `created_at` and `updated_at` are server-assigned and ignored,
/// so a reading read from the API can be posted back unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingInput {
    /// Optional; when present it must equal the user id in the path.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: Option<String>,
    /// RFC 3339; offsets are converted to UTC, sub-seconds dropped. At most 5
    /// minutes in the future and 10 years (READING_MAX_AGE_YEARS) in the past.
    #[schema(value_type = String, format = DateTime, example = "2023-08-15T14:30:00Z")]
    pub timestamp: Option<String>,
    /// In `glucose_unit`; null only with `status` low/high.
    #[schema(example = 120)]
    pub glucose_value: Option<f64>,
    /// Default mg/dL.
    #[schema(value_type = Option<GlucoseUnitName>, example = "mg/dL")]
    pub glucose_unit: Option<GlucoseUnit>,
    /// Canonical, Dexcom or Nightscout trend name.
    #[schema(example = "steady")]
    pub trend_direction: Option<String>,
    /// mg/dL per minute.
    #[schema(minimum = -100, maximum = 100)]
    pub trend_rate: Option<f64>,
    pub device_info: Option<DeviceInfoInput>,
    /// `CGM` (default), `manual` or `calibration` (case-insensitive).
    #[schema(value_type = Option<ReadingTypeName>)]
    pub reading_type: Option<String>,
    /// Lowercase source name; defaults to `manual` for manual readings, else `api`.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub source: Option<String>,
    /// `low` or `high` for values beyond the sensor's range (case-insensitive).
    #[schema(value_type = Option<SensorStatusName>)]
    pub status: Option<String>,
    /// The source's own id for the record, such as Dexcom's `recordId`.
    #[schema(max_length = 128)]
    pub source_record_id: Option<String>,
    /// Minutes between the device's display clock and UTC.
    #[schema(minimum = -1440, maximum = 1440)]
    pub display_offset_minutes: Option<i16>,
    #[schema(ignore)]
    pub version: Option<IgnoredAny>,
    #[schema(ignore)]
    pub created_at: Option<IgnoredAny>,
    #[schema(ignore)]
    pub updated_at: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfoInput {
    #[schema(max_length = 64)]
    pub device_id: Option<String>,
    #[schema(max_length = 64)]
    pub serial_number: Option<String>,
    #[schema(max_length = 64)]
    pub transmitter_id: Option<String>,
}

/// Reading types, as documented (input is case-insensitive).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum ReadingTypeName {
    #[schema(rename = "CGM")]
    Cgm,
    #[schema(rename = "manual")]
    Manual,
    #[schema(rename = "calibration")]
    Calibration,
}

/// Glucose units, as documented (`mg/dl`, `mgdl`, `mmol/l` and `mmol` are accepted too).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum GlucoseUnitName {
    #[schema(rename = "mg/dL")]
    MgDl,
    #[schema(rename = "mmol/L")]
    MmolL,
}

/// Sensor statuses, as documented (input is case-insensitive).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum SensorStatusName {
    #[schema(rename = "low")]
    Low,
    #[schema(rename = "high")]
    High,
}

const MAX_RECORD_ID_LEN: usize = 128;

/// Collects field errors while parsing goes on, so one response lists them all.
struct Errors(Vec<FieldError>);

impl Errors {
    fn keep<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

impl ReadingInput {
    /// Parses into a `Reading` for `owner`, collecting every field error.
    pub fn into_reading(self, owner: &UserId) -> Result<Reading, Vec<FieldError>> {
        let mut errors = Errors(Vec::new());

        if let Some(given) = &self.user_id {
            if given != owner.as_str() {
                errors.keep(Err::<(), _>(FieldError::new(
                    "user_id",
                    "does not match the user id in the path",
                )));
            }
        }
        let timestamp = errors.keep(match &self.timestamp {
            Some(raw) => ReadingTime::parse_rfc3339(raw),
            None => Err(FieldError::new("timestamp", "is required")),
        });
        let status = errors.keep(
            self.status
                .as_deref()
                .map(|s| {
                    SensorStatus::parse(s)
                        .ok_or_else(|| FieldError::new("status", "must be \"low\" or \"high\""))
                })
                .transpose(),
        );
        let glucose = errors.keep(Glucose::parse(
            self.glucose_value,
            self.glucose_unit.unwrap_or_default(),
            status.flatten(),
        ));
        let trend = errors.keep(
            self.trend_direction
                .as_deref()
                .map(Trend::parse)
                .transpose(),
        );
        let trend_rate = errors.keep(self.trend_rate.map(TrendRate::new).transpose());
        let device = errors.keep(match self.device_info {
            None => Ok(DeviceInfo::default()),
            Some(d) => DeviceInfo::parse(d.device_id, d.serial_number, d.transmitter_id),
        });
        let reading_type = errors.keep(
            self.reading_type
                .as_deref()
                .map_or(Ok(ReadingType::Cgm), ReadingType::parse),
        );
        let source = errors.keep(match (&self.source, reading_type) {
            (Some(s), _) => Source::parse(s),
            (None, Some(ReadingType::Manual)) => Ok(Source::manual()),
            (None, _) => Ok(Source::api()),
        });
        let source_record_id = errors.keep(match self.source_record_id {
            Some(id) if id.len() > MAX_RECORD_ID_LEN => Err(FieldError::new(
                "source_record_id",
                format!("must be at most {MAX_RECORD_ID_LEN} characters"),
            )),
            other => Ok(other),
        });
        let display_offset_minutes = errors.keep(match self.display_offset_minutes {
            Some(m) if !(-24 * 60..=24 * 60).contains(&m) => Err(FieldError::new(
                "display_offset_minutes",
                "must be within ±1440 minutes",
            )),
            other => Ok(other),
        });

        let reading = (|| {
            Some(Reading {
                user_id: owner.clone(),
                timestamp: timestamp?,
                glucose: glucose?,
                trend: trend?,
                trend_rate: trend_rate?,
                device: device?,
                reading_type: reading_type?,
                source: source?,
                source_record_id: source_record_id?,
                display_offset_minutes: display_offset_minutes?,
            })
        })();
        match reading {
            Some(reading) if errors.0.is_empty() => Ok(reading),
            _ => Err(errors.0),
        }
    }
}

/// Parses one JSON record (raw text) into a reading, reporting the failing field's
/// pointer for type errors and unknown fields as well as for invalid values.
pub fn parse_record(json: &str, owner: &UserId) -> Result<Reading, Vec<FieldError>> {
    let mut de = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, ReadingInput>(&mut de) {
        Ok(input) => input.into_reading(owner),
        Err(err) => {
            let pointer = json_pointer(err.path());
            let inner = err.into_inner();
            let message = describe_serde_error(&inner);
            Err(vec![FieldError::new(&pointer, message)])
        }
    }
}

/// A reading in the GlucoLens and Nutri format (`POST /api/v1/glucose/readings`
/// and `/bulk`): `value` always in mg/dL, the owner is the caller. Unknown
/// fields are rejected, as in `ReadingInput`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GlucoseInput {
    /// RFC 3339; offsets are converted to UTC, sub-seconds dropped. At most 5
    /// minutes in the future and 10 years (READING_MAX_AGE_YEARS) in the past.
    #[schema(value_type = String, format = DateTime, example = "2023-08-15T14:30:00Z")]
    pub timestamp: Option<String>,
    /// mg/dL, 20–600 (rounded to a whole mg/dL).
    #[schema(example = 120, minimum = 20, maximum = 600)]
    pub value: Option<f64>,
    /// Lowercase source name such as `dexcom_g7`, `dexcom`, `libre`,
    /// `apple_health` or `manual`; default `api`. `manual` marks a manual
    /// (fingerstick) reading, which the CGM statistics leave out; any other
    /// source is a CGM reading.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", example = "dexcom_g7")]
    pub source: Option<String>,
    /// The device's id (stored as `device_info.device_id`).
    #[schema(max_length = 64, example = "G7-12345")]
    pub device_id: Option<String>,
}

impl GlucoseInput {
    /// Parses into a `Reading` for `owner`, collecting every field error with
    /// this format's pointers (`/timestamp`, `/value`, `/source`, `/device_id`).
    pub fn into_reading(self, owner: &UserId) -> Result<Reading, Vec<FieldError>> {
        let mut errors = Errors(Vec::new());
        let timestamp = errors.keep(match &self.timestamp {
            Some(raw) => ReadingTime::parse_rfc3339(raw),
            None => Err(FieldError::new("timestamp", "is required")),
        });
        let glucose = errors.keep(
            Glucose::parse(self.value, GlucoseUnit::default(), None)
                .map_err(|e| FieldError::new("value", e.message)),
        );
        let source = errors.keep(
            self.source
                .as_deref()
                .map_or(Ok(Source::api()), Source::parse),
        );
        let device = errors.keep(
            DeviceInfo::parse(self.device_id, None, None)
                .map_err(|e| FieldError::new("device_id", e.message)),
        );
        let reading = (|| {
            let source = source?;
            let reading_type = if source == Source::manual() {
                ReadingType::Manual
            } else {
                ReadingType::Cgm
            };
            Some(Reading {
                user_id: owner.clone(),
                timestamp: timestamp?,
                glucose: glucose?,
                trend: None,
                trend_rate: None,
                device: device?,
                reading_type,
                source,
                source_record_id: None,
                display_offset_minutes: None,
            })
        })();
        match reading {
            Some(reading) if errors.0.is_empty() => Ok(reading),
            _ => Err(errors.0),
        }
    }
}

/// Parses one JSON record (raw text) of the GlucoLens format into a reading,
/// with pointers as `parse_record` gives them.
pub fn parse_glucose_record(json: &str, owner: &UserId) -> Result<Reading, Vec<FieldError>> {
    let mut de = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, GlucoseInput>(&mut de) {
        Ok(input) => input.into_reading(owner),
        Err(err) => {
            let pointer = json_pointer(err.path());
            let message = describe_serde_error(&err.into_inner());
            Err(vec![FieldError::new(&pointer, message)])
        }
    }
}

/// serde's messages end in "at line 1 column 42"; the pointer already says where.
fn describe_serde_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The JSON pointer (RFC 6901) of a serde path, for errors that name a field.
pub fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => {}
        }
    }
    pointer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> UserId {
        UserId::parse("user123").unwrap()
    }

    #[test]
    fn contract_example_parses() {
        let json = r#"{"user_id":"user123","timestamp":"2023-08-15T14:30:00Z","glucose_value":120,
            "glucose_unit":"mg/dL","trend_direction":"steady","trend_rate":0.1,
            "device_info":{"device_id":"G6-12345","serial_number":"SN12345678","transmitter_id":"TX12345"},
            "reading_type":"CGM","source":"dexcom","version":1,"created_at":"x","updated_at":"y"}"#;
        let r = parse_record(json, &owner()).unwrap();
        assert_eq!(r.glucose.mg_dl().get(), 120);
        assert_eq!(r.trend, Some(Trend::Steady));
        assert_eq!(r.device.transmitter_id(), Some("TX12345"));
    }

    #[test]
    fn errors_name_their_fields() {
        let cases = [
            (
                r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":"high"}"#,
                "/glucose_value",
            ),
            (
                r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":100,"colour":1}"#,
                "/colour",
            ),
            (
                r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":601}"#,
                "/glucose_value",
            ),
            (r#"{"timestamp":"nope","glucose_value":100}"#, "/timestamp"),
            (
                r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":100,"device_info":{"x":1}}"#,
                "/device_info/x",
            ),
            (
                r#"{"timestamp":"2023-08-15T14:30:00Z","glucose_value":100,"user_id":"other"}"#,
                "/user_id",
            ),
        ];
        for (json, pointer) in cases {
            let errors = parse_record(json, &owner()).unwrap_err();
            assert_eq!(errors[0].pointer, pointer, "{json}");
        }
    }

    #[test]
    fn the_glucolens_format_parses_and_names_its_fields() {
        let json = r#"{"timestamp":"2023-08-15T16:30:00+02:00","value":131.6,"source":"dexcom_g7","device_id":"G7-1"}"#;
        let r = parse_glucose_record(json, &owner()).unwrap();
        assert_eq!(r.glucose.mg_dl().get(), 132);
        assert_eq!(r.timestamp.to_rfc3339(), "2023-08-15T14:30:00Z");
        assert_eq!(r.source.as_str(), "dexcom_g7");
        assert_eq!(r.reading_type, ReadingType::Cgm);
        assert_eq!(r.device.device_id(), Some("G7-1"));
        let manual = parse_glucose_record(
            r#"{"timestamp":"2023-08-15T14:30:00Z","value":100,"source":"manual"}"#,
            &owner(),
        )
        .unwrap();
        assert_eq!(manual.reading_type, ReadingType::Manual);
        let default = parse_glucose_record(
            r#"{"timestamp":"2023-08-15T14:30:00Z","value":100}"#,
            &owner(),
        )
        .unwrap();
        assert_eq!(
            (default.source.as_str(), default.reading_type),
            ("api", ReadingType::Cgm)
        );
        let pointers = |json: &str| -> Vec<String> {
            parse_glucose_record(json, &owner())
                .unwrap_err()
                .into_iter()
                .map(|e| e.pointer)
                .collect()
        };
        assert_eq!(
            pointers(r#"{"value":700,"source":"Dexcom G7","device_id":"\u0001"}"#),
            ["/timestamp", "/value", "/source", "/device_id"]
        );
        assert_eq!(
            pointers(r#"{"timestamp":"2023-08-15T14:30:00Z","value":"x"}"#),
            ["/value"]
        );
        assert_eq!(
            pointers(r#"{"timestamp":"2023-08-15T14:30:00Z","value":100,"glucose_value":100}"#),
            ["/glucose_value"]
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let json = r#"{"timestamp":"bad","glucose_value":5,"trend_direction":"sideways"}"#;
        let pointers: Vec<_> = parse_record(json, &owner())
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(
            pointers,
            ["/timestamp", "/glucose_value", "/trend_direction"]
        );
    }
}

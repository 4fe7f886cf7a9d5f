//! A glucose reading, its provenance, and the rule that settles two readings at one instant.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};

use super::{DeviceInfo, FieldError, Glucose, ReadingTime, Trend, TrendRate, UserId};

/// How a value was obtained. The conflict rule ranks a sensor (CGM) reading above a manual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadingType {
    Cgm,
    Manual,
    Calibration,
}

impl ReadingType {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            _ if raw.eq_ignore_ascii_case("cgm") => Ok(ReadingType::Cgm),
            _ if raw.eq_ignore_ascii_case("manual") => Ok(ReadingType::Manual),
            _ if raw.eq_ignore_ascii_case("calibration") => Ok(ReadingType::Calibration),
            _ => Err(FieldError::new(
                "reading_type",
                format!("unknown reading type {raw:?}; use CGM, manual or calibration"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReadingType::Cgm => "CGM",
            ReadingType::Manual => "manual",
            ReadingType::Calibration => "calibration",
        }
    }
}

/// Where a reading came from: a lowercase token such as `dexcom`, `manual`, `api`, `demo`
/// (and the GlucoLens names `dexcom_g7`, `apple_health`, `libre`).
/// The well-known names are static (no allocation per stored reading).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source(Cow<'static, str>);

const KNOWN_SOURCES: [&str; 8] = [
    "dexcom",
    "manual",
    "api",
    "demo",
    "nightscout",
    "libre",
    "dexcom_g7",
    "apple_health",
];

impl Source {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let ok = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(match KNOWN_SOURCES.iter().find(|k| **k == raw) {
                Some(known) => Cow::Borrowed(known),
                None => Cow::Owned(raw.to_owned()),
            }))
        } else {
            Err(FieldError::new(
                "source",
                "must be 1-32 characters of lowercase letters, digits, '_' or '-'",
            ))
        }
    }

    pub fn dexcom() -> Self {
        Self(Cow::Borrowed("dexcom"))
    }
    pub fn manual() -> Self {
        Self(Cow::Borrowed("manual"))
    }
    pub fn api() -> Self {
        Self(Cow::Borrowed("api"))
    }
    pub fn demo() -> Self {
        Self(Cow::Borrowed("demo"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The source as a metrics label: well-known names, else `other`, so that
    /// clients cannot create unbounded label values.
    pub fn metrics_label(&self) -> &'static str {
        KNOWN_SOURCES
            .iter()
            .find(|k| **k == self.0)
            .copied()
            .unwrap_or("other")
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid reading, before storage assigned it a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub user_id: UserId,
    pub timestamp: ReadingTime,
    pub glucose: Glucose,
    pub trend: Option<Trend>,
    pub trend_rate: Option<TrendRate>,
    pub device: DeviceInfo,
    pub reading_type: ReadingType,
    pub source: Source,
    /// The source's own id for the record (Dexcom's `recordId`), kept for tracing.
    pub source_record_id: Option<String>,
    /// Minutes between the device's display clock and UTC, when the source tells.
    pub display_offset_minutes: Option<i16>,
}

/// What happens when a reading arrives for an instant that already has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Same content: nothing changes.
    Identical,
    /// The stored reading outranks the incoming one (a sensor reading is never
    /// replaced by a manual entry): nothing changes.
    KeepExisting,
    /// The incoming reading replaces the stored one; version and updated_at bump.
    Replace,
}

impl Reading {
    /// The conflict rule of the contract. Both readings share (user, timestamp).
    /// A CGM reading replaces a manual one and not the reverse; otherwise the newer
    /// record (the one arriving now) wins.
    pub fn resolve_against(&self, existing: &Reading) -> Resolution {
        if self == existing {
            return Resolution::Identical;
        }
        match (existing.reading_type, self.reading_type) {
            (ReadingType::Cgm, ReadingType::Manual) => Resolution::KeepExisting,
            _ => Resolution::Replace,
        }
    }
}

/// A reading as stored: the reading plus its version history markers.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReading {
    pub reading: Reading,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GlucoseUnit, MgDl};

    fn reading(kind: ReadingType, value: u16) -> Reading {
        Reading {
            user_id: UserId::parse("u1").unwrap(),
            timestamp: ReadingTime::from_unix_seconds(1_700_000_000).unwrap(),
            glucose: Glucose::value(MgDl::new(value).unwrap()),
            trend: None,
            trend_rate: None,
            device: DeviceInfo::default(),
            reading_type: kind,
            source: Source::api(),
            source_record_id: None,
            display_offset_minutes: None,
        }
    }

    #[test]
    fn conflict_rule() {
        use ReadingType::*;
        let cgm = reading(Cgm, 100);
        let manual = reading(Manual, 110);
        assert_eq!(cgm.resolve_against(&cgm.clone()), Resolution::Identical);
        assert_eq!(cgm.resolve_against(&manual), Resolution::Replace);
        assert_eq!(manual.resolve_against(&cgm), Resolution::KeepExisting);
        assert_eq!(reading(Cgm, 120).resolve_against(&cgm), Resolution::Replace);
        assert_eq!(
            reading(Manual, 90).resolve_against(&manual),
            Resolution::Replace
        );
        let _ = GlucoseUnit::MgDl;
    }

    #[test]
    fn reading_type_and_source_parse() {
        assert_eq!(ReadingType::parse("cgm").unwrap(), ReadingType::Cgm);
        assert_eq!(ReadingType::parse("CGM").unwrap().as_str(), "CGM");
        assert!(ReadingType::parse("guess").is_err());
        assert!(Source::parse("dexcom").is_ok());
        assert!(Source::parse("Dexcom").is_err());
        assert!(Source::parse("").is_err());
    }
}

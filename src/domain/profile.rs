//! A user's profile: the time zone that decides what a "day" is for them, their
//! target range, how they like glucose shown and their diabetes type. Each part
//! is a type that can only hold a valid value, so a stored or requested profile
//! is checked once, where it enters.

use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::FieldError;

/// An IANA time zone name (`Europe/Berlin`, `UTC`); unknown names are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZoneName(Tz);

impl TimeZoneName {
    pub const UTC: TimeZoneName = TimeZoneName(Tz::UTC);

    /// `field` names the input in the error (`timezone`, `tz`).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        raw.parse::<Tz>().map(Self).map_err(|_| {
            FieldError::new(
                field,
                format!("{raw:?} is not an IANA time zone name (e.g. Europe/Berlin)"),
            )
        })
    }

    pub fn tz(self) -> Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The first instant whose local date in this zone is `date`: local
    /// midnight, or the end of a DST gap that swallows midnight.
    pub fn day_start(self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        // A gap is at most a few hours; step through it a minute at a time.
        for minute in 0..=24 * 60 {
            let local = midnight + Duration::minutes(minute);
            if let Some(t) = self.0.from_local_datetime(&local).earliest() {
                return t.with_timezone(&Utc);
            }
        }
        Utc.from_utc_datetime(&midnight)
    }

    /// The local date of an instant in this zone.
    pub fn date_of(self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.0).date_naive()
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        Self::UTC
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A personal target range in mg/dL: both ends within 40–400 and low < high.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetRange {
    low: u16,
    high: u16,
}

impl TargetRange {
    pub const MIN: u16 = 40;
    pub const MAX: u16 = 400;
    pub const DEFAULT: TargetRange = TargetRange { low: 70, high: 180 };

    /// Checks both ends; errors name `/target_low` and `/target_high`.
    pub fn new(low: u16, high: u16) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        for (field, v) in [("target_low", low), ("target_high", high)] {
            if !(Self::MIN..=Self::MAX).contains(&v) {
                errors.push(FieldError::new(
                    field,
                    format!("must be {}-{} mg/dL", Self::MIN, Self::MAX),
                ));
            }
        }
        if errors.is_empty() && low >= high {
            errors.push(FieldError::new("target_high", "must be above target_low"));
        }
        if errors.is_empty() {
            Ok(Self { low, high })
        } else {
            Err(errors)
        }
    }

    pub fn low(self) -> u16 {
        self.low
    }

    pub fn high(self) -> u16 {
        self.high
    }
}

impl Default for TargetRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How glucose is shown to the user (the API always speaks mg/dL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DisplayUnit {
    #[default]
    MgDl,
    MmolL,
}

impl DisplayUnit {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "mg/dL" => Some(Self::MgDl),
            "mmol/L" => Some(Self::MmolL),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MgDl => "mg/dL",
            Self::MmolL => "mmol/L",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiabetesType {
    Type1,
    Type2,
    Prediabetes,
    Gestational,
    Other,
}

impl DiabetesType {
    pub const ALL: [DiabetesType; 5] = [
        Self::Type1,
        Self::Type2,
        Self::Prediabetes,
        Self::Gestational,
        Self::Other,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Type1 => "type1",
            Self::Type2 => "type2",
            Self::Prediabetes => "prediabetes",
            Self::Gestational => "gestational",
            Self::Other => "other",
        }
    }
}

/// A user's profile; `Default` is what a user without a stored one has:
/// UTC, 70–180 mg/dL, mg/dL, no diabetes type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Profile {
    pub timezone: TimeZoneName,
    pub target: TargetRange,
    pub display_unit: DisplayUnit,
    pub diabetes_type: Option<DiabetesType>,
}

impl Profile {
    /// A profile from its stored parts (names as `as_str` gives them); the
    /// error says which part does not parse.
    pub fn from_parts(
        timezone: &str,
        target_low: i64,
        target_high: i64,
        display_unit: &str,
        diabetes_type: Option<&str>,
    ) -> Result<Self, String> {
        Ok(Self {
            timezone: TimeZoneName::parse("timezone", timezone).map_err(|e| e.to_string())?,
            target: target_from_parts(target_low, target_high)?,
            display_unit: DisplayUnit::parse(display_unit)
                .ok_or_else(|| format!("display unit {display_unit:?}"))?,
            diabetes_type: diabetes_type
                .map(|t| DiabetesType::parse(t).ok_or_else(|| format!("diabetes type {t:?}")))
                .transpose()?,
        })
    }
}

/// A target range from stored numbers; the error names them.
pub fn target_from_parts(low: i64, high: i64) -> Result<TargetRange, String> {
    let bad = || format!("target range {low}-{high}");
    TargetRange::new(
        u16::try_from(low).map_err(|_| bad())?,
        u16::try_from(high).map_err(|_| bad())?,
    )
    .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            TimeZoneName::parse("timezone", "Europe/Berlin")
                .unwrap()
                .name(),
            "Europe/Berlin"
        );
        let err = TimeZoneName::parse("timezone", "Mars/Olympus").unwrap_err();
        assert_eq!(err.pointer, "/timezone");
        assert!(TimeZoneName::parse("tz", "").is_err());
    }

    #[test]
    fn target_ranges_are_bounded_and_ordered() {
        assert_eq!(TargetRange::new(70, 180).unwrap(), TargetRange::default());
        assert!(TargetRange::new(40, 400).is_ok());
        let pointers = |r: Result<TargetRange, Vec<FieldError>>| -> Vec<String> {
            r.unwrap_err().into_iter().map(|e| e.pointer).collect()
        };
        assert_eq!(pointers(TargetRange::new(39, 180)), ["/target_low"]);
        assert_eq!(pointers(TargetRange::new(70, 401)), ["/target_high"]);
        assert_eq!(
            pointers(TargetRange::new(10, 500)),
            ["/target_low", "/target_high"]
        );
        assert_eq!(pointers(TargetRange::new(150, 150)), ["/target_high"]);
    }

    #[test]
    fn names_round_trip() {
        for t in DiabetesType::ALL {
            assert_eq!(DiabetesType::parse(t.as_str()), Some(t));
        }
        assert_eq!(DiabetesType::parse("Type1"), None);
        for u in [DisplayUnit::MgDl, DisplayUnit::MmolL] {
            assert_eq!(DisplayUnit::parse(u.as_str()), Some(u));
        }
        assert_eq!(DisplayUnit::parse("mg/dl"), None);
    }

    #[test]
    fn a_day_starts_at_local_midnight_or_after_the_gap() {
        let berlin = TimeZoneName::parse("tz", "Europe/Berlin").unwrap();
        let d = NaiveDate::from_ymd_opt(2025, 3, 30).unwrap();
        assert_eq!(
            berlin.day_start(d),
            Utc.with_ymd_and_hms(2025, 3, 29, 23, 0, 0).unwrap()
        );
        // Santiago skipped 2024-09-08 00:00-01:00: the day starts at 01:00 local.
        let santiago = TimeZoneName::parse("tz", "America/Santiago").unwrap();
        let d = NaiveDate::from_ymd_opt(2024, 9, 8).unwrap();
        let start = santiago.day_start(d);
        assert_eq!(start, Utc.with_ymd_and_hms(2024, 9, 8, 4, 0, 0).unwrap());
        assert_eq!(santiago.date_of(start), d);
        assert_ne!(santiago.date_of(start - Duration::seconds(1)), d);
    }
}

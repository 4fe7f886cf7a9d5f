//! Reading timestamps: UTC, whole seconds, and the window of times the service accepts.

use chrono::{DateTime, Duration, Months, SecondsFormat, TimeZone, Utc};

use super::FieldError;

/// A reading's instant: UTC, truncated to whole seconds (the dedup key's precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadingTime(DateTime<Utc>);

impl ReadingTime {
    /// Parses RFC 3339 with `Z` or an offset (converted to UTC); sub-seconds are dropped.
    pub fn parse_rfc3339(raw: &str) -> Result<Self, FieldError> {
        DateTime::parse_from_rfc3339(raw.trim())
            .map(|t| Self::from_utc(t.with_timezone(&Utc)))
            .map_err(|_| {
                FieldError::new(
                    "timestamp",
                    format!("{raw:?} is not an RFC 3339 date-time such as 2023-08-15T14:30:00Z"),
                )
            })
    }

    pub fn from_utc(t: DateTime<Utc>) -> Self {
        Self::from_unix_seconds(t.timestamp()).unwrap_or(Self(t))
    }

    pub fn from_unix_seconds(secs: i64) -> Option<Self> {
        Utc.timestamp_opt(secs, 0).single().map(Self)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.timestamp()
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// `2023-08-15T14:30:00Z`
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// Which reading times are plausible: not more than `max_future` ahead of now
/// (sensor clocks drift a little), not older than `max_age_years` calendar years.
#[derive(Debug, Clone, Copy)]
pub struct TimePolicy {
    pub max_future: Duration,
    pub max_age_years: u32,
}

impl Default for TimePolicy {
    fn default() -> Self {
        Self {
            max_future: Duration::minutes(5),
            max_age_years: 10,
        }
    }
}

impl TimePolicy {
    pub fn check(&self, t: ReadingTime, now: DateTime<Utc>) -> Result<ReadingTime, FieldError> {
        if t.0 > now + self.max_future {
            return Err(FieldError::new(
                "timestamp",
                format!(
                    "is more than {} minutes in the future",
                    self.max_future.num_minutes()
                ),
            ));
        }
        let horizon = now
            .checked_sub_months(Months::new(self.max_age_years.saturating_mul(12)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if t.0 < horizon {
            return Err(FieldError::new(
                "timestamp",
                format!("is older than {} years", self.max_age_years),
            ));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    #[test]
    fn offsets_become_utc_and_subseconds_are_dropped() {
        let t = ReadingTime::parse_rfc3339("2023-08-15T16:30:00.999+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-08-15T14:30:00Z");
    }

    #[test]
    fn bad_dates_are_rejected() {
        for bad in [
            "2023-02-30T00:00:00Z",
            "yesterday",
            "2023-08-15",
            "2023-08-15T25:00:00Z",
            "",
        ] {
            assert_eq!(
                ReadingTime::parse_rfc3339(bad).unwrap_err().pointer,
                "/timestamp"
            );
        }
    }

    #[test]
    fn five_minutes_into_the_future_is_the_boundary() {
        let policy = TimePolicy::default();
        let at = |d: Duration| ReadingTime::from_utc(now() + d);
        assert!(policy.check(at(Duration::seconds(300)), now()).is_ok());
        assert!(policy.check(at(Duration::seconds(301)), now()).is_err());
        let ten_years = now().checked_sub_months(Months::new(120)).unwrap();
        assert!(policy
            .check(ReadingTime::from_utc(ten_years), now())
            .is_ok());
        let just_older = ten_years - Duration::seconds(1);
        assert!(policy
            .check(ReadingTime::from_utc(just_older), now())
            .is_err());
        assert!(
            policy.check(at(-Duration::days(3652)), now()).is_ok(),
            "leap days count"
        );
    }

    proptest! {
        #[test]
        fn future_boundary_holds_for_any_offset(secs in -100_000i64..100_000) {
            let t = ReadingTime::from_utc(now() + Duration::seconds(secs));
            prop_assert_eq!(TimePolicy::default().check(t, now()).is_ok(), secs <= 300);
        }

        #[test]
        fn rfc3339_round_trips(secs in 0i64..4_000_000_000) {
            let t = ReadingTime::from_unix_seconds(secs).unwrap();
            prop_assert_eq!(ReadingTime::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        }
    }
}

//! The window every analytics route reports on (`startDate`, `endDate`, `tz`),
//! parsed in one place so that `/stats`, `/agp`, `/summary.fhir` and `/daily`
//! agree on defaults, limits and the error pointers.

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{query_params, ApiError};
use crate::api::AppContext;
use crate::domain::{FieldError, UserId};

/// The window when neither end is given: the 14 days ending now.
pub const DEFAULT_DAYS: i64 = 14;
/// The longest window a request may ask for.
pub const MAX_DAYS: i64 = 366;

/// A half-open window `[start, end)` of whole seconds, and the time zone that
/// decides what a day is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tz: Tz,
}

/// The zone a user's days are counted in when the request names none: the
/// profile's (UTC for a user without a profile).
pub async fn default_timezone(state: &AppContext, user: &UserId) -> Result<Tz, ApiError> {
    let profile = crate::store::profile_or_default(state.store.as_ref(), user).await?;
    Ok(profile.timezone.tz())
}

/// The analytics query parameters. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// Inclusive start: RFC 3339, or YYYY-MM-DD (midnight in `tz`). Default: `endDate` − 14 days.
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    pub start_date: Option<String>,
    /// Exclusive end: RFC 3339, or YYYY-MM-DD (midnight in `tz`). Default: now. At most 366 days after `startDate`.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    pub end_date: Option<String>,
    /// IANA time zone that decides what a day is (e.g. `Europe/Berlin`). Default: the user's profile zone (UTC without a profile).
    #[param(example = "Europe/Berlin")]
    pub tz: Option<String>,
}

impl Window {
    /// The window of a request's query (only `startDate`, `endDate`, `tz`; any
    /// other parameter is a VALIDATION_ERROR); without `tz`, the user's zone.
    pub async fn from_query(
        state: &AppContext,
        user: &UserId,
        query: Option<&str>,
    ) -> Result<Self, ApiError> {
        let params: WindowParams = query_params(query)?;
        // The user's zone only matters (and is only looked up) without `tz`.
        let default = match params.tz {
            Some(_) => Tz::UTC,
            None => default_timezone(state, user).await?,
        };
        Self::parse(
            params.start_date.as_deref(),
            params.end_date.as_deref(),
            params.tz.as_deref(),
            default,
            Utc::now(),
        )
        .map_err(|errors| ApiError::bad_request("invalid query parameters", errors))
    }

    /// `start` as RFC 3339 with `Z`, whole seconds.
    pub fn start_rfc3339(&self) -> String {
        self.start.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    pub fn end_rfc3339(&self) -> String {
        self.end.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The window as unix seconds, `[from, until)`.
    pub fn unix_range(&self) -> (i64, i64) {
        (self.start.timestamp(), self.end.timestamp())
    }

    /// Parses the three raw parameters against `now`, collecting every problem
    /// (pointers `/startDate`, `/endDate`, `/tz`); `default` is the zone when
    /// `tz` is absent. A date without a time (YYYY-MM-DD) is midnight in the
    /// window's zone.
    pub fn parse(
        start: Option<&str>,
        end: Option<&str>,
        tz: Option<&str>,
        default: Tz,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let zone = match tz.map(str::trim) {
            None => default,
            Some(name) => name.parse::<Tz>().unwrap_or_else(|_| {
                errors.push(FieldError::new(
                    "tz",
                    format!("{name:?} is not an IANA time zone name"),
                ));
                Tz::UTC
            }),
        };
        let mut instant = |name: &str, raw: Option<&str>| match raw {
            None => None,
            Some(raw) => parse_instant(name, raw, zone)
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let start_at = instant("startDate", start);
        let end_at = instant("endDate", end);
        let (start_given, end_given) = (start.is_some(), end.is_some());
        if (start_given && start_at.is_none()) || (end_given && end_at.is_none()) {
            return Err(errors);
        }
        let end_at = end_at.unwrap_or_else(|| ceil_second(now));
        let start_at = start_at.unwrap_or(end_at - Duration::days(DEFAULT_DAYS));
        if start_at >= end_at {
            errors.push(FieldError::new(
                if end_given { "endDate" } else { "startDate" },
                "the window is empty: endDate must be after startDate",
            ));
        } else if end_at - start_at > Duration::days(MAX_DAYS) {
            errors.push(FieldError::new(
                if end_given { "endDate" } else { "startDate" },
                format!("the window is longer than {MAX_DAYS} days"),
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                start: start_at,
                end: end_at,
                tz: zone,
            })
        } else {
            Err(errors)
        }
    }
}

/// RFC 3339 (fractions rounded up to the next whole second, as readings are
/// whole seconds: that keeps exactly the readings at or after an inclusive
/// start and before an exclusive end), or YYYY-MM-DD as midnight in `tz` (the
/// first instant of that date where midnight does not exist).
fn parse_instant(name: &str, raw: &str, tz: Tz) -> Result<DateTime<Utc>, FieldError> {
    let raw = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return local_midnight(date, tz)
            .ok_or_else(|| FieldError::new(name, format!("{raw:?} is out of range")));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| ceil_second(t.with_timezone(&Utc)))
        .map_err(|_| {
            FieldError::new(
                name,
                format!("{raw:?} is not an RFC 3339 date-time or a date (YYYY-MM-DD)"),
            )
        })
}

fn local_midnight(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    // A zone whose clocks jump at midnight (DST) has no 00:00 that day: the day
    // then starts at the first minute that exists.
    (0..=180).find_map(|minute| {
        let t = date.and_hms_opt(0, 0, 0)? + Duration::minutes(minute);
        tz.from_local_datetime(&t)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = t - Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos()));
    if whole == t {
        t
    } else {
        whole + Duration::seconds(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap() + Duration::milliseconds(250)
    }

    fn pointers(r: Result<Window, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn defaults_to_the_14_days_ending_now() {
        let w = Window::parse(None, None, None, Tz::Europe__Berlin, now()).unwrap();
        assert_eq!(w.end, Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 1).unwrap());
        assert_eq!(w.end - w.start, Duration::days(14));
        assert_eq!(w.tz, Tz::Europe__Berlin, "the default zone");
        // Only one end: the other follows from it.
        let w = Window::parse(None, Some("2025-01-15T00:00:00Z"), None, Tz::UTC, now()).unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
        let w = Window::parse(
            Some("2025-03-01T00:00:00+01:00"),
            None,
            None,
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!(
            (w.start, w.end),
            (
                Utc.with_ymd_and_hms(2025, 2, 28, 23, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 1).unwrap()
            )
        );
    }

    #[test]
    fn dates_are_midnight_in_the_named_zone() {
        let w = Window::parse(
            Some("2024-03-31"),
            Some("2024-04-01"),
            Some("Europe/Berlin"),
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!(
            w.start,
            Utc.with_ymd_and_hms(2024, 3, 30, 23, 0, 0).unwrap()
        );
        // The spring-forward day is 23 hours long.
        assert_eq!(w.end - w.start, Duration::hours(23));
        assert_eq!(w.tz, Tz::Europe__Berlin);
        // Without `tz`, a date is midnight in the default zone.
        let w =
            Window::parse(Some("2024-03-31"), None, None, Tz::America__New_York, now()).unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2024, 3, 31, 4, 0, 0).unwrap());
        // Santiago skips midnight on 2024-09-08: the day starts at 01:00 local.
        let w = Window::parse(
            Some("2024-09-08"),
            Some("2024-09-09"),
            Some("America/Santiago"),
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2024, 9, 8, 4, 0, 0).unwrap());
    }

    #[test]
    fn fractions_round_up_to_whole_seconds() {
        let w = Window::parse(
            Some("2025-01-01T00:00:00.5Z"),
            Some("2025-01-02T00:00:00Z"),
            None,
            Tz::UTC,
            now(),
        )
        .unwrap();
        assert_eq!(w.start, Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 1).unwrap());
    }

    #[test]
    fn bad_input_names_the_parameter() {
        let p = |s, e, tz| pointers(Window::parse(s, e, tz, Tz::UTC, now()));
        assert_eq!(p(Some("yesterday"), None, None), ["/startDate"]);
        assert_eq!(p(None, Some("2025-13-01"), None), ["/endDate"]);
        assert_eq!(p(None, None, Some("Mars/Olympus")), ["/tz"]);
        assert_eq!(
            p(Some("x"), Some("y"), Some("Nowhere")),
            ["/tz", "/startDate", "/endDate"]
        );
        let start = Some("2025-01-02T00:00:00Z");
        assert_eq!(p(start, start, None), ["/endDate"]);
        assert_eq!(p(start, Some("2025-01-01T00:00:00Z"), None), ["/endDate"]);
        assert_eq!(p(Some("2030-01-01T00:00:00Z"), None, None), ["/startDate"]);
        assert_eq!(
            p(
                Some("2024-01-01T00:00:00Z"),
                Some("2025-01-02T00:00:01Z"),
                None
            ),
            ["/endDate"]
        );
        assert_eq!(p(Some("2020-01-01T00:00:00Z"), None, None), ["/startDate"]);
        // Exactly 366 days is allowed.
        assert!(Window::parse(
            Some("2024-01-01T00:00:00Z"),
            Some("2025-01-01T00:00:00Z"),
            None,
            Tz::UTC,
            now()
        )
        .is_ok());
    }
}

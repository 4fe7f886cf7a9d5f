//! Dexcom's timestamp strings: lenient parsing of query dates and the exact
//! shapes the API prints (with or without a UTC offset).

use std::fmt::Write;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Timelike, Utc};

/// Parses a query date such as `startDate` or `lastSyncTime`.
///
/// Dexcom documents `YYYY-MM-DDThh:mm:ss` without offset (read as UTC, the
/// clock `systemTime` uses); clients also send a trailing `Z` or an offset,
/// fractional seconds, a space instead of `T`, no seconds, or a bare date
/// (midnight UTC). Anything else is `None`.
pub(super) fn parse_lenient(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    // "2021-02-03T14:15Z": chrono's %z does not take a bare Z.
    let s = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// `2026-04-30T08:00:00-07:00`: the form of records from mobile apps.
pub(super) fn with_offset(t: DateTime<FixedOffset>) -> String {
    let mut out = without_offset(t.naive_local());
    let secs = t.offset().local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60);
    out
}

/// `2026-04-30T08:00:00`: the form of receiver records, v2 records and
/// Dexcom's own query examples.
pub(super) fn without_offset(t: NaiveDateTime) -> String {
    let mut out = String::with_capacity(25);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_accepted_form_to_the_same_instant() {
        let want = utc("2026-04-30T15:00:00Z");
        for raw in [
            "2026-04-30T15:00:00",
            "2026-04-30T15:00:00Z",
            "2026-04-30T15:00:00.000",
            "2026-04-30T15:00:00.000Z",
            "2026-04-30T08:00:00-07:00",
            "2026-04-30T08:00:00-0700",
            "2026-04-30 15:00:00",
            "2026-04-30T15:00",
            "2026-04-30T15:00Z",
            " 2026-04-30T15:00:00 ",
        ] {
            assert_eq!(parse_lenient(raw), Some(want), "{raw}");
        }
        assert_eq!(
            parse_lenient("2026-04-30"),
            Some(utc("2026-04-30T00:00:00Z"))
        );
        let frac = parse_lenient("2026-04-30T15:00:00.250").map(|t| t.timestamp_subsec_millis());
        assert_eq!(frac, Some(250));
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            "",
            "yesterday",
            "2026-13-01T00:00:00",
            "2026-04-30T25:00:00",
        ] {
            assert_eq!(parse_lenient(raw), None, "{raw}");
        }
    }

    #[test]
    fn formats_with_and_without_offset() {
        let t = utc("2026-04-30T15:00:05Z");
        let west = FixedOffset::west_opt(7 * 3600).map(|o| t.with_timezone(&o));
        assert_eq!(
            west.map(with_offset).as_deref(),
            Some("2026-04-30T08:00:05-07:00")
        );
        let east = FixedOffset::east_opt(5 * 3600 + 1800).map(|o| t.with_timezone(&o));
        assert_eq!(
            east.map(with_offset).as_deref(),
            Some("2026-04-30T20:30:05+05:30")
        );
        assert_eq!(without_offset(t.naive_utc()), "2026-04-30T15:00:05");
    }
}

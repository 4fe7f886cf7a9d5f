//! Dexcom's date-time strings, parsed leniently, because real responses vary far
//! more than the ISO 8601 the documentation promises.
//!
//! Accepted, after trimming surrounding whitespace:
//! - date `YYYY-MM-DD` (fixed widths, so a truncated string never reads as another date),
//! - `T`, `t` or a space,
//! - time `hh:mm`, optionally `:ss`, optionally a fraction (`.` or `,`, any digits),
//! - optionally (after optional spaces) `Z`/`z`/`UTC`, or an offset `±hh`, `±hh:mm`,
//!   `±hhmm`, `±hh:mm:ss` or `±hhmmss`.
//!
//! Without an offset the time is taken as UTC (Dexcom's receiver records carry none).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// The longest prefix of a bad input kept in a [`TimeError`]: enough for any real
/// date-time, bounded so that a garbage body cannot bloat logs.
const MAX_RAW_IN_ERROR: usize = 64;

/// Offsets beyond a day are not time zones; `chrono` cannot hold them either.
const MAX_OFFSET_SECONDS: u32 = 24 * 3600 - 1;

/// A parsed Dexcom time: the instant in UTC, and the offset the string carried, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DexcomTime {
    pub utc: DateTime<Utc>,
    /// The string's UTC offset rounded to whole minutes; `None` when it had none
    /// (then `utc` is the string's wall time read as UTC).
    pub offset_minutes: Option<i16>,
}

/// A string that is not a date-time in any form Dexcom is known to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{raw:?} is not a Dexcom date-time: {reason}")]
pub struct TimeError {
    /// The input (at most its first 64 characters).
    pub raw: String,
    pub reason: &'static str,
}

impl TimeError {
    fn new(raw: &str, reason: &'static str) -> Self {
        let raw = match raw.char_indices().nth(MAX_RAW_IN_ERROR) {
            Some((cut, _)) => &raw[..cut],
            None => raw,
        };
        Self {
            raw: raw.to_owned(),
            reason,
        }
    }
}

/// Parses a `systemTime`, `displayTime` or dataRange edge (variants seen
/// in practice include missing seconds, offsets with seconds such as `-06:59:58`,
/// and truncated strings). An offset with seconds is rounded to the nearest minute
/// (half away from zero), and that rounded offset is the one used for conversion.
pub fn parse_dexcom_time(raw: &str) -> Result<DexcomTime, TimeError> {
    let err = |reason| TimeError::new(raw, reason);
    let mut p = Scanner::new(raw.trim());

    let year = p
        .fixed_digits(4)
        .ok_or_else(|| err("expected a 4-digit year"))?;
    p.expect(b"-")
        .ok_or_else(|| err("expected '-' after the year"))?;
    let month = p
        .fixed_digits(2)
        .ok_or_else(|| err("expected a 2-digit month"))?;
    p.expect(b"-")
        .ok_or_else(|| err("expected '-' after the month"))?;
    let day = p
        .fixed_digits(2)
        .ok_or_else(|| err("expected a 2-digit day"))?;
    p.expect(b"Tt ")
        .ok_or_else(|| err("expected 'T' or a space between date and time"))?;
    let hour = p
        .fixed_digits(2)
        .ok_or_else(|| err("expected a 2-digit hour"))?;
    p.expect(b":")
        .ok_or_else(|| err("expected ':' after the hour"))?;
    let minute = p
        .fixed_digits(2)
        .ok_or_else(|| err("expected 2-digit minutes"))?;
    let (second, nanos) = if p.expect(b":").is_some() {
        let second = p
            .fixed_digits(2)
            .ok_or_else(|| err("expected 2-digit seconds"))?;
        let nanos = if p.expect(b".,").is_some() {
            p.fraction_nanos()
                .ok_or_else(|| err("expected digits after the decimal point"))?
        } else {
            0
        };
        (second, nanos)
    } else {
        (0, 0)
    };
    p.skip_spaces();
    let offset_minutes = p.offset().map_err(err)?;
    if !p.at_end() {
        return Err(err("unexpected characters after the time"));
    }

    let date = i32::try_from(year)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, month, day))
        .ok_or_else(|| err("no such date"))?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| err("no such time"))?;
    let local = NaiveDateTime::new(date, time);
    let utc = local
        .checked_sub_signed(Duration::minutes(i64::from(offset_minutes.unwrap_or(0))))
        .ok_or_else(|| err("out of the representable range"))?
        .and_utc();
    Ok(DexcomTime {
        utc,
        offset_minutes,
    })
}

/// Formats a query bound (`startDate`, `endDate`) as Dexcom documents it:
/// `YYYY-MM-DDThh:mm:ss`, UTC, no offset (as in its EGV request example).
/// Fractions of a second are truncated.
pub fn format_query_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A cursor over ASCII bytes; every method consumes only on success.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            bytes: s.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// Consumes one byte if it is one of `allowed`.
    fn expect(&mut self, allowed: &[u8]) -> Option<u8> {
        let b = self.peek().filter(|b| allowed.contains(b))?;
        self.at += 1;
        Some(b)
    }

    /// Exactly `n` ASCII digits; what follows is the caller's to check.
    fn fixed_digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += n;
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// One or more digits of a fraction of a second; digits past nanoseconds are ignored.
    fn fraction_nanos(&mut self) -> Option<u32> {
        let start = self.at;
        let mut nanos = 0u32;
        let mut scale = 100_000_000u32;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
            self.at += 1;
        }
        (self.at > start).then_some(nanos)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// The zone designator, if any, as whole minutes east of UTC.
    fn offset(&mut self) -> Result<Option<i16>, &'static str> {
        let rest = &self.bytes[self.at..];
        if rest.eq_ignore_ascii_case(b"z") || rest.eq_ignore_ascii_case(b"utc") {
            self.at = self.bytes.len();
            return Ok(Some(0));
        }
        let sign: i32 = match self.expect(b"+-") {
            None => return Ok(None),
            Some(b'-') => -1,
            Some(_) => 1,
        };
        const BAD: &str = "expected an offset such as +01:00, -0700 or -06:59:58";
        let hours = self.fixed_digits(2).ok_or(BAD)?;
        let mut seconds = hours * 3600;
        if !self.at_end() {
            let colon = self.expect(b":").is_some();
            seconds += self.fixed_digits(2).ok_or(BAD)? * 60;
            if !self.at_end() {
                if colon {
                    self.expect(b":").ok_or(BAD)?;
                }
                seconds += self.fixed_digits(2).ok_or(BAD)?;
            }
        }
        if seconds > MAX_OFFSET_SECONDS {
            return Err("offset is a day or more");
        }
        let minutes = sign * ((seconds as i32 + 30) / 60);
        // |minutes| <= 1440, well within i16.
        i16::try_from(minutes).map(Some).map_err(|_| BAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn accepted_variants() {
        let base = utc(2021, 2, 3, 14, 15, 0);
        let cases: &[(&str, DateTime<Utc>, Option<i16>)] = &[
            ("2026-04-30T15:00:00Z", utc(2026, 4, 30, 15, 0, 0), Some(0)),
            (
                "2026-04-30T15:00:00+00:00",
                utc(2026, 4, 30, 15, 0, 0),
                Some(0),
            ),
            (
                "2026-04-30T08:00:00-07:00",
                utc(2026, 4, 30, 15, 0, 0),
                Some(-420),
            ),
            ("2026-04-30T15:05:00", utc(2026, 4, 30, 15, 5, 0), None),
            ("2021-02-03T14:15Z", base, Some(0)),
            ("2021-02-03T14:15", base, None),
            (
                "2021-02-03T14:15+01:00",
                base - Duration::hours(1),
                Some(60),
            ),
            ("2021-02-03T15:15:00+0100", base, Some(60)),
            ("2021-02-03T15:15:00+01", base, Some(60)),
            ("2021-02-03T14:15:00.000Z", base, Some(0)),
            ("2021-02-03 14:15:00", base, None),
            ("2021-02-03t14:15:00z", base, Some(0)),
            ("  2021-02-03T14:15:00Z \n", base, Some(0)),
            ("2021-02-03T14:15:00 UTC", base, Some(0)),
            ("2021-02-03T15:15:00 +01:00", base, Some(60)),
            ("2021-02-03T19:45:00+05:29:45", base, Some(330)),
            ("2021-02-03T12:46:00-01:29:29", base, Some(-89)),
            ("2021-02-03T13:45:00-00:29:30", base, Some(-30)),
            (
                "2021-02-03T14:15:00+23:59:59",
                base - Duration::hours(24),
                Some(1440),
            ),
        ];
        for (raw, want, offset) in cases {
            let got = parse_dexcom_time(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!((got.utc, got.offset_minutes), (*want, *offset), "{raw:?}");
        }
    }

    #[test]
    fn offset_with_seconds_is_rounded_and_the_rounded_offset_converts() {
        // -06:59:58 rounds to -07:00, so 07:59:58 local is 14:59:58 UTC.
        let t = parse_dexcom_time("2021-02-03T07:59:58-06:59:58").unwrap();
        assert_eq!(t.offset_minutes, Some(-420));
        assert_eq!(t.utc, utc(2021, 2, 3, 14, 59, 58));
    }

    #[test]
    fn fractions_are_kept_to_the_nanosecond() {
        let t = parse_dexcom_time("2021-02-03T14:15:16.123456789123Z").unwrap();
        assert_eq!(t.utc.timestamp_subsec_nanos(), 123_456_789);
        let t = parse_dexcom_time("2021-02-03T14:15:16,5").unwrap();
        assert_eq!(t.utc.timestamp_subsec_millis(), 500);
    }

    #[test]
    fn rejected_inputs_carry_the_raw_string() {
        for raw in [
            "",
            "   ",
            "garbage",
            "2021-02-0",
            "2021-02-03",
            "2021-02-03T",
            "2021-02-03T14",
            "2021-02-03T14:1",
            "2021-02-03T14:15:1",
            "2021-02-03T14:15:16.",
            "2021-02-03T14:15:16+",
            "2021-02-03T14:15:16+01:0",
            "2021-02-03T14:15:16-06:59:5",
            "2021-02-03T14:15:16+24:00",
            "2021-02-03T14:15:16Zjunk",
            "2021-2-3T14:15:16Z",
            "2021-02-30T14:15:16Z",
            "2021-02-03T24:00:00Z",
            "2021-02-03T14:60:00Z",
            "2021-02-03T14:15:60Z",
            "2021-02-03X14:15:16Z",
            "Date(1745081013817)",
            "2021-02-03T14:15:16+01:00:00:00",
            "२०२१-02-03T14:15:16Z",
        ] {
            let e = parse_dexcom_time(raw).expect_err(raw);
            assert_eq!(e.raw, raw, "{raw:?}");
        }
    }

    #[test]
    fn error_keeps_a_bounded_prefix_of_the_input() {
        let long = "x".repeat(1000);
        let e = parse_dexcom_time(&long).unwrap_err();
        assert_eq!(e.raw.len(), MAX_RAW_IN_ERROR);
        assert!(e.to_string().contains("is not a Dexcom date-time"));
    }

    #[test]
    fn query_time_has_no_offset_and_no_fraction() {
        let t = utc(2022, 2, 6, 9, 12, 35) + Duration::milliseconds(999);
        assert_eq!(format_query_time(t), "2022-02-06T09:12:35");
        let back = parse_dexcom_time(&format_query_time(t)).unwrap();
        assert_eq!(back.utc, utc(2022, 2, 6, 9, 12, 35));
        assert_eq!(back.offset_minutes, None);
    }

    proptest::proptest! {
        #[test]
        fn any_instant_with_any_offset_round_trips(
            secs in 0i64..4_000_000_000,
            offset in -1080i16..=1080,
            colon in proptest::bool::ANY,
        ) {
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            let local = t + Duration::minutes(i64::from(offset));
            let (sign, abs) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
            let sep = if colon { ":" } else { "" };
            let raw = format!(
                "{}{sign}{:02}{sep}{:02}",
                local.format("%Y-%m-%dT%H:%M:%S"),
                abs / 60,
                abs % 60
            );
            let got = parse_dexcom_time(&raw).unwrap();
            proptest::prop_assert_eq!((got.utc, got.offset_minutes), (t, Some(offset)));
        }

        #[test]
        fn never_panics_on_arbitrary_input(raw in "\\PC{0,40}") {
            let _ = parse_dexcom_time(&raw);
        }

        #[test]
        fn never_panics_on_near_miss_input(raw in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]{0,14}[Zz+ 0-9:-]{0,10}") {
            let _ = parse_dexcom_time(&raw);
        }
    }
}

//! Splits a time range into request windows, because Dexcom's v3 data endpoints
//! take at most 30 days per request (Dexcom's v3 documentation).

use chrono::{DateTime, Duration, Utc};

/// The longest window requested from Dexcom v3, in days (one open-source Dexcom client uses 30
/// "per Dexcom documentation"; older third-party sources say 90, which v3 may refuse).
pub const MAX_WINDOW_DAYS: i64 = 30;

/// A half-open time range `[start, end)`, matched against `systemTime`.
pub use crate::sync::source::FetchWindow as Window;

/// Splits `[start, end)` into contiguous windows of at most `max` each (each window's
/// `end` is the next one's `start`), covering exactly the input, in order. Every
/// window but the last is exactly `max` long. Empty when `start >= end`.
///
/// A non-positive `max` cannot make progress; it is treated as [`MAX_WINDOW_DAYS`].
pub fn split_windows(start: DateTime<Utc>, end: DateTime<Utc>, max: Duration) -> Vec<Window> {
    let max = if max > Duration::zero() {
        max
    } else {
        Duration::days(MAX_WINDOW_DAYS)
    };
    crate::sync::source::split_windows(start, end, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_90_day_backfill_is_three_30_day_windows() {
        let end = Utc.with_ymd_and_hms(2026, 4, 30, 15, 0, 0).unwrap();
        let start = end - Duration::days(90);
        let windows = split_windows(start, end, Duration::days(MAX_WINDOW_DAYS));
        assert_eq!(windows.len(), 3);
        for (i, w) in windows.iter().enumerate() {
            assert_eq!(w.start, start + Duration::days(30 * i as i64));
            assert_eq!(w.end - w.start, Duration::days(30));
        }
        assert_eq!(windows[2].end, end);
    }

    #[test]
    fn short_and_empty_ranges() {
        let max = Duration::days(MAX_WINDOW_DAYS);
        assert_eq!(
            split_windows(t(0), t(60), max),
            vec![Window {
                start: t(0),
                end: t(60)
            }]
        );
        assert!(split_windows(t(60), t(60), max).is_empty());
        assert!(split_windows(t(61), t(60), max).is_empty());
        let ragged = split_windows(t(0), t(100), Duration::seconds(30));
        let bounds: Vec<_> = ragged
            .iter()
            .map(|w| (w.start.timestamp(), w.end.timestamp()))
            .collect();
        assert_eq!(bounds, [(0, 30), (30, 60), (60, 90), (90, 100)]);
    }

    #[test]
    fn non_positive_max_falls_back_to_the_dexcom_limit() {
        let end = t(0) + Duration::days(45);
        for max in [Duration::zero(), Duration::seconds(-5)] {
            let windows = split_windows(t(0), end, max);
            assert_eq!(windows.len(), 2);
            assert_eq!(windows[0].end - windows[0].start, Duration::days(30));
        }
    }

    #[test]
    fn ends_near_the_last_representable_instant() {
        let end = DateTime::<Utc>::MAX_UTC;
        let start = end - Duration::days(31);
        let windows = split_windows(start, end, Duration::days(30));
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1].end, end);
        let windows = split_windows(start, end, Duration::MAX);
        assert_eq!(windows, vec![Window { start, end }]);
    }

    proptest! {
        #[test]
        fn windows_tile_the_range_exactly(
            start in 0i64..4_000_000_000,
            start_nanos in 0u32..1_000_000_000,
            len_secs in -86_400i64..400 * 86_400,
            max_secs in 1i64..40 * 86_400,
            max_nanos in 0i64..1_000_000_000,
        ) {
            let start = DateTime::from_timestamp(start, start_nanos).unwrap();
            let end = start + Duration::seconds(len_secs);
            let max = Duration::seconds(max_secs) + Duration::nanoseconds(max_nanos);
            let windows = split_windows(start, end, max);

            if start >= end {
                prop_assert!(windows.is_empty());
                return Ok(());
            }
            prop_assert_eq!(windows.first().map(|w| w.start), Some(start));
            prop_assert_eq!(windows.last().map(|w| w.end), Some(end));
            for w in &windows {
                prop_assert!(w.start < w.end, "empty window {:?}", w);
                prop_assert!(w.end - w.start <= max, "window longer than max {:?}", w);
            }
            for pair in windows.windows(2) {
                // Contiguous: no gap and no overlap.
                prop_assert_eq!(pair[0].end, pair[1].start);
                // Greedy: only the last window may be short.
                prop_assert_eq!(pair[0].end - pair[0].start, max);
            }
            let total = windows
                .iter()
                .fold(Duration::zero(), |acc, w| acc + (w.end - w.start));
            prop_assert_eq!(total, end - start);
        }
    }
}

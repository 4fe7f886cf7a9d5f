//! The day-by-day grid (`cgm-metrics.md`, "The day-by-day grid"): readings on
//! local wall-clock time, linearly interpolated onto fixed steps from local
//! midnight, with points inside long gaps missing. The grid metrics, the AGP and
//! the episodes all read it.
//!
//! Time runs on the local wall clock of `tz` (the reference package does the
//! same): a spring-forward day has a one-hour hole (a 65-minute gap between
//! wall-clock readings, longer than `inter_gap`), and a fall-back day folds its
//! repeated hour onto the same columns (readings with equal wall-clock times are
//! averaged).

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::Sample;

/// Grid points inside a gap longer than this many minutes are missing.
pub(crate) const INTER_GAP: f64 = 45.0;

/// Readings on the local wall clock, sorted, equal times averaged.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Minutes since 1970-01-01 00:00 of the wall clock.
    pub t: Vec<f64>,
    pub g: Vec<f64>,
}

/// Wall-clock minutes of an instant in `tz`.
pub(crate) fn wall_minutes(s: &Sample, tz: Tz) -> f64 {
    let naive = s.at.with_timezone(&tz).naive_local();
    let utc = naive.and_utc();
    utc.timestamp() as f64 / 60.0 + f64::from(utc.timestamp_subsec_nanos()) / 60e9
}

fn day_of(minutes: f64) -> i64 {
    (minutes / 1440.0).floor() as i64
}

pub(crate) fn date_of(minutes: f64) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    epoch + chrono::Duration::days(day_of(minutes))
}

impl Series {
    pub(crate) fn new(samples: &[Sample], tz: Tz) -> Series {
        let mut pts: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.mg_dl.is_finite())
            .map(|s| (wall_minutes(s, tz), s.mg_dl))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut t = Vec::with_capacity(pts.len());
        let mut g = Vec::with_capacity(pts.len());
        let mut i = 0;
        while i < pts.len() {
            let mut j = i;
            let mut sum = 0.0;
            while j < pts.len() && pts[j].0 == pts[i].0 {
                sum += pts[j].1;
                j += 1;
            }
            t.push(pts[i].0);
            g.push(sum / (j - i) as f64);
            i = j;
        }
        Series { t, g }
    }

    /// The most frequent interval between readings, in whole minutes (ties: the
    /// shortest); `None` with fewer than two readings.
    pub(crate) fn dt0(&self) -> Option<f64> {
        let mut diffs: Vec<i64> = self
            .t
            .windows(2)
            .map(|w| (w[1] - w[0]).round() as i64)
            .filter(|d| *d > 0)
            .collect();
        if diffs.is_empty() {
            return None;
        }
        diffs.sort_unstable();
        let (mut best, mut best_n) = (diffs[0], 0usize);
        let mut i = 0;
        while i < diffs.len() {
            let mut j = i;
            while j < diffs.len() && diffs[j] == diffs[i] {
                j += 1;
            }
            if j - i > best_n {
                best = diffs[i];
                best_n = j - i;
            }
            i = j;
        }
        Some(best as f64)
    }
}

/// `ndays` rows of `cols` columns; `NaN` is a missing point. Row-major.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    pub dt0: f64,
    pub ndays: usize,
    pub cols: usize,
    pub first_day: NaiveDate,
    pub v: Vec<f64>,
}

impl Grid {
    /// The grid of `series` with step `dt0` minutes; `None` without readings.
    pub(crate) fn build(series: &Series, dt0: f64) -> Option<Grid> {
        let (first, last) = (*series.t.first()?, *series.t.last()?);
        let d0 = day_of(first);
        let ndays = (day_of(last) - d0 + 1) as usize;
        let cols = (1440.0 / dt0).floor() as usize;
        let start = d0 as f64 * 1440.0;
        let n = ndays * cols;
        let mut v = vec![f64::NAN; n];
        let (t, g) = (&series.t, &series.g);
        let mut i = 0; // t[i] <= x < t[i+1] candidate
        for (k, slot) in v.iter_mut().enumerate() {
            let x = start + (k as f64 + 1.0) * dt0;
            if x < first || x > last {
                continue;
            }
            while i + 1 < t.len() && t[i + 1] <= x {
                i += 1;
            }
            if t[i] == x {
                *slot = g[i];
                continue;
            }
            // t[i] < x < t[i + 1]
            let (t0, t1) = (t[i], t[i + 1]);
            if t1 - t0 > INTER_GAP {
                continue;
            }
            *slot = g[i] + (g[i + 1] - g[i]) * (x - t0) / (t1 - t0);
        }
        Some(Grid {
            dt0,
            ndays,
            cols,
            first_day: date_of(start),
            v,
        })
    }

    pub(crate) fn row(&self, d: usize) -> &[f64] {
        &self.v[d * self.cols..(d + 1) * self.cols]
    }

    /// Wall-clock time of column `c` (minutes after midnight; the last is 24:00).
    #[allow(dead_code)]
    pub(crate) fn minute(&self, c: usize) -> f64 {
        (c as f64 + 1.0) * self.dt0
    }
}

//! Wear time: the share of expected readings present between the first and the
//! last reading, and the span in days (Danne 2017). Measured on real elapsed
//! time, not the wall clock, so a DST change neither adds nor removes readings.

use super::Sample;

/// `(active_percent, ndays)`; `ndays` is the span rounded to 0.1 day.
pub(crate) fn active_and_days(samples: &[Sample]) -> (Option<f64>, Option<f64>) {
    let mut t: Vec<f64> = samples
        .iter()
        .map(|s| s.at.timestamp() as f64 / 60.0 + f64::from(s.at.timestamp_subsec_nanos()) / 60e9)
        .collect();
    if t.is_empty() {
        return (None, None);
    }
    t.sort_by(f64::total_cmp);
    t.dedup();
    let span = t[t.len() - 1] - t[0];
    let ndays = Some((span / 1440.0 * 10.0).round() / 10.0);
    let diffs: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let Some(dt0) = mode_minutes(&diffs) else {
        return (None, ndays);
    };
    let theoretical = (span / dt0).round() + 1.0;
    let missing: f64 = diffs
        .iter()
        .filter(|d| **d > dt0)
        .map(|d| (d / dt0).round() - 1.0)
        .sum();
    (Some((theoretical - missing) / theoretical * 100.0), ndays)
}

fn mode_minutes(diffs: &[f64]) -> Option<f64> {
    let mut d: Vec<i64> = diffs
        .iter()
        .map(|x| x.round() as i64)
        .filter(|x| *x > 0)
        .collect();
    d.sort_unstable();
    let mut best: Option<(i64, usize)> = None;
    let mut i = 0;
    while i < d.len() {
        let j = d[i..].iter().take_while(|x| **x == d[i]).count() + i;
        if best.is_none_or(|(_, n)| j - i > n) {
            best = Some((d[i], j - i));
        }
        i = j;
    }
    best.map(|(v, _)| v as f64)
}

//! Metrics on the day-by-day grid: CONGA, MODD, MAG, GVP, SD of the rate of
//! change, hourly AUC, Rodbard's SD subtypes and the daily CVs, plus the
//! wear-time figures (active percent, days). Definitions: `cgm-metrics.md`.

use super::descriptive::{mean, sd};
use super::grid::Grid;
use super::Metrics;

/// SD of g(t) − g(t − hours) along the flattened grid.
pub(crate) fn conga(grid: &Grid, hours: f64) -> Option<f64> {
    let lag = (hours * 60.0 / grid.dt0).round() as usize;
    let v = &grid.v;
    if lag == 0 || v.len() <= lag {
        return None;
    }
    sd((lag..v.len()).map(|i| v[i] - v[i - lag]))
}

/// Mean |g(d, t) − g(d − 1, t)| over the grid.
pub(crate) fn modd(grid: &Grid) -> Option<f64> {
    let v = &grid.v;
    let c = grid.cols;
    if v.len() <= c {
        return None;
    }
    mean((c..v.len()).map(|i| (v[i] - v[i - c]).abs()))
}

/// Σ|Δg| / hours over consecutive grid points.
pub(crate) fn mag(grid: &Grid) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for w in grid.v.windows(2) {
        let d = w[1] - w[0];
        if !d.is_nan() {
            s += d.abs();
            n += 1;
        }
    }
    (n > 0).then(|| s / (n as f64 * grid.dt0 / 60.0))
}

/// Glycemic variability percentage (Peyser 2017) over consecutive grid points.
pub(crate) fn gvp(grid: &Grid) -> Option<f64> {
    let dt = grid.dt0;
    let (mut s, mut n) = (0.0, 0usize);
    for w in grid.v.windows(2) {
        let d = w[1] - w[0];
        if !d.is_nan() {
            s += (dt * dt + d * d).sqrt();
            n += 1;
        }
    }
    (n > 0).then(|| (s / (n as f64 * dt) - 1.0) * 100.0)
}

/// SD of (g(t) − g(t − 15 min)) / 15 on the 5-minute grid.
pub(crate) fn sd_roc(grid5: &Grid) -> Option<f64> {
    let lag = (15.0 / grid5.dt0).round() as usize;
    let v = &grid5.v;
    if v.len() <= lag {
        return None;
    }
    sd((lag..v.len()).map(|i| (v[i] - v[i - lag]) / 15.0))
}

/// Hourly AUC (Danne 2017, as iglu's `auc`): the trapezoid rule over the whole
/// grid, area / hours covered, i.e. the mean of (g(t) + g(t + dt0)) / 2 over every
/// pair of consecutive grid points that are both present, midnight included (mg/dL).
///
/// The reference's "hourly AUC per 24-hour period, averaged over the periods"
/// weights each period by the hours it covers, so it is the area over all
/// covered hours (found by probing iglu-python 0.4.3 as a black box: a
/// 100 mg/dL day followed by a 200 mg/dL morning gives the pooled 151.0, not the
/// per-day mean 150).
pub(crate) fn hourly_auc(grid: &Grid) -> Option<f64> {
    mean(grid.v.windows(2).map(|w| (w[0] + w[1]) / 2.0))
}

/// Fills the grid-level metrics of `m`.
pub(crate) fn fill(m: &mut Metrics, grid: &Grid, grid5: &Grid) {
    m.conga24 = conga(grid, 24.0);
    m.conga1 = conga(grid, 1.0);
    m.modd = modd(grid);
    m.mag = mag(grid);
    m.gvp = gvp(grid);
    m.sd_roc = sd_roc(grid5);
    m.hourly_auc = hourly_auc(grid);

    let rows: Vec<&[f64]> = (0..grid.ndays).map(|d| grid.row(d)).collect();
    let day_sd: Vec<f64> = rows
        .iter()
        .map(|r| sd(r.iter().copied()).unwrap_or(f64::NAN))
        .collect();
    let day_mean: Vec<f64> = rows
        .iter()
        .map(|r| mean(r.iter().copied()).unwrap_or(f64::NAN))
        .collect();
    let col = |c: usize| rows.iter().map(move |r| r[c]);
    m.sd_w = mean(day_sd.iter().copied());
    m.sd_hhmm = sd((0..grid.cols).map(|c| mean(col(c)).unwrap_or(f64::NAN)));
    m.sd_dm = sd(day_mean.iter().copied());
    m.sd_b = mean((0..grid.cols).map(|c| sd(col(c)).unwrap_or(f64::NAN)));
    m.sd_bdm = mean(
        (0..grid.cols)
            .map(|c| sd(rows.iter().zip(&day_mean).map(|(r, dm)| r[c] - dm)).unwrap_or(f64::NAN)),
    );
    m.sd_wsh = sd_wsh(grid);
    let cvs: Vec<f64> = day_sd
        .iter()
        .zip(&day_mean)
        .map(|(s, mu)| s / mu * 100.0)
        .collect();
    m.cv_mean = mean(cvs.iter().copied());
    m.cv_sd = sd(cvs.iter().copied());
}

/// SDws,h, the within-series SD over one hour (Rodbard 2009): for every point of
/// the flattened grid, the sample SD of the non-missing values of the hour that
/// **starts** there (the point and the next 60/dt0 − 1; shorter at the end of the
/// grid), when it holds at least two; the mean of those SDs.
///
/// The window looks forward, as iglu-python's `sd_measures` does (found by
/// probing it as a black box: one spike in a flat day contributes to the single
/// window that starts at the spike when it is the grid's first point, and to
/// every window it lies in when it is the last).
fn sd_wsh(grid: &Grid) -> Option<f64> {
    let k = (60.0 / grid.dt0).round().max(1.0) as usize;
    let v = &grid.v;
    mean((0..v.len()).map(|i| {
        let w = &v[i..(i + k).min(v.len())];
        sd(w.iter().copied()).unwrap_or(f64::NAN)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    /// A grid of `days` rows with `cols` columns of `dt0` minutes.
    fn grid(dt0: f64, cols: usize, v: Vec<f64>) -> Grid {
        assert_eq!(v.len() % cols, 0);
        Grid {
            dt0,
            ndays: v.len() / cols,
            cols,
            first_day: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            v,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn hourly_auc_pools_the_trapezoids_across_midnight() {
        let nan = f64::NAN;
        // Two "days" of three 480-minute columns: 100, 100, 100 | 200, 200, NaN.
        // Trapezoids: 100, 100, 150 (across midnight), 200; the one touching the
        // missing point is left out. Pooled: 550 / 4 = 137.5 (the per-day mean
        // would be (100 + 200) / 2 = 150).
        let g = grid(480.0, 3, vec![100.0, 100.0, 100.0, 200.0, 200.0, nan]);
        assert!(close(hourly_auc(&g), 137.5));
    }

    #[test]
    fn hourly_auc_of_nothing_is_none() {
        let g = grid(480.0, 3, vec![f64::NAN, 100.0, f64::NAN]);
        assert_eq!(hourly_auc(&g), None);
    }

    #[test]
    fn sd_wsh_windows_look_forward() {
        let nan = f64::NAN;
        // dt0 = 20 minutes: an hour is 3 points. The windows starting at each
        // point: [0, 0, 6] sd 2√3; [0, 6, -] and [6, -, 0] sd 3√2; [-, 0, 3] and
        // [0, 3] sd 3/√2; [3] has one value. Mean of the five: (2√3 + 9√2) / 5.
        // (Backward windows would give (2√3 + 7.5√2) / 5.)
        let g = grid(20.0, 6, vec![0.0, 0.0, 6.0, nan, 0.0, 3.0]);
        let want = (2.0 * 3f64.sqrt() + 9.0 * 2f64.sqrt()) / 5.0;
        assert!(close(sd_wsh(&g), want), "{:?} vs {want}", sd_wsh(&g));
    }
}

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

/// Per day, the mean of the trapezoids between consecutive grid points of that
/// day (area / hours covered); mean over days.
pub(crate) fn hourly_auc(grid: &Grid) -> Option<f64> {
    mean((0..grid.ndays).map(|d| {
        let r = grid.row(d);
        mean(r.windows(2).map(|w| (w[0] + w[1]) / 2.0)).unwrap_or(f64::NAN)
    }))
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

/// Mean of the rolling 1-hour SD along the flattened grid: at each point, the
/// SD of the non-missing values of the hour ending there (at least two).
fn sd_wsh(grid: &Grid) -> Option<f64> {
    let k = (60.0 / grid.dt0).round().max(1.0) as usize;
    let v = &grid.v;
    mean((0..v.len()).map(|i| {
        let w = &v[i.saturating_sub(k - 1)..=i];
        sd(w.iter().copied()).unwrap_or(f64::NAN)
    }))
}

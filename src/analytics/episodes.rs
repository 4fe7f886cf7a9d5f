//! Glycemic episodes (Battelino 2023): hypoglycemia level 1 (< 70 mg/dL) and
//! level 2 (< 54), hyperglycemia level 1 (> 180) and level 2 (> 250). An episode
//! starts once the grid stays past the threshold for at least `dur_length`
//! minutes and ends once it has stayed back for at least `end_length` minutes.
//! Used by the Personal Glycemic State (Hirsch 2017) and by reports.

use chrono::{NaiveDateTime, TimeDelta};
use chrono_tz::Tz;
use serde::Serialize;

use super::grid::{Grid, Series};
use super::{Metrics, Sample};

/// Which threshold an episode crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeKind {
    HypoLevel1,
    HypoLevel2,
    HyperLevel1,
    HyperLevel2,
}

impl EpisodeKind {
    const ALL: [EpisodeKind; 4] = [
        EpisodeKind::HypoLevel1,
        EpisodeKind::HypoLevel2,
        EpisodeKind::HyperLevel1,
        EpisodeKind::HyperLevel2,
    ];

    fn holds(self, g: f64) -> bool {
        match self {
            EpisodeKind::HypoLevel1 => g < 70.0,
            EpisodeKind::HypoLevel2 => g < 54.0,
            EpisodeKind::HyperLevel1 => g > 180.0,
            EpisodeKind::HyperLevel2 => g > 250.0,
        }
    }
}

/// One episode, in local wall-clock time of the requested zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Episode {
    pub kind: EpisodeKind,
    pub start: NaiveDateTime,
    /// The first grid point back in range (or the last point of data).
    pub end: NaiveDateTime,
    pub minutes: f64,
    pub mean_glucose: f64,
}

/// Index ranges `[start, end)` of the episodes of `kind` on the flattened grid.
fn detect(grid: &Grid, kind: EpisodeKind, dur: f64, end_len: f64) -> Vec<(usize, usize)> {
    let need_in = (dur / grid.dt0).ceil().max(1.0) as usize;
    let need_out = (end_len / grid.dt0).ceil().max(1.0) as usize;
    let mut out = Vec::new();
    let (mut run_in, mut run_out) = (0usize, 0usize);
    let mut open: Option<usize> = None;
    for (i, &g) in grid.v.iter().enumerate() {
        let inside = !g.is_nan() && kind.holds(g);
        match open {
            None => {
                run_in = if inside { run_in + 1 } else { 0 };
                if run_in >= need_in {
                    open = Some(i + 1 - run_in);
                    run_out = 0;
                }
            }
            Some(s) => {
                run_out = if inside { 0 } else { run_out + 1 };
                if run_out >= need_out {
                    out.push((s, i + 1 - run_out));
                    open = None;
                    run_in = 0;
                }
            }
        }
    }
    if let Some(s) = open {
        let mut e = grid.v.len();
        while e > s && grid.v[e - 1].is_nan() {
            e -= 1;
        }
        out.push((s, e));
    }
    out
}

fn count_per_week(grid: &Grid, kind: EpisodeKind, dur: f64, end_len: f64) -> Option<f64> {
    let present = grid.v.iter().filter(|g| !g.is_nan()).count() as f64;
    let days = present * grid.dt0 / 1440.0;
    (days > 0.0).then(|| detect(grid, kind, dur, end_len).len() as f64 / days * 7.0)
}

/// Every episode of the samples (15-minute start and end rules), oldest first.
pub fn episodes(samples: &[Sample], tz: Tz) -> Vec<Episode> {
    let series = Series::new(samples, tz);
    let Some(grid) = series.dt0().and_then(|dt0| Grid::build(&series, dt0)) else {
        return Vec::new();
    };
    let origin = grid
        .first_day
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let at = |i: usize| origin + TimeDelta::seconds(((i as f64 + 1.0) * grid.dt0 * 60.0) as i64);
    let mut all: Vec<Episode> = EpisodeKind::ALL
        .iter()
        .flat_map(|&kind| {
            detect(&grid, kind, 15.0, 15.0)
                .into_iter()
                .map(move |(s, e)| (kind, s, e))
        })
        .map(|(kind, s, e)| {
            let vals = grid.v[s..e].iter().filter(|g| !g.is_nan());
            let (sum, n) = vals.fold((0.0, 0usize), |(a, n), g| (a + g, n + 1));
            Episode {
                kind,
                start: at(s),
                end: at(e.min(grid.v.len() - 1)),
                minutes: (e - s) as f64 * grid.dt0,
                mean_glucose: sum / n.max(1) as f64,
            }
        })
        .collect();
    all.sort_by_key(|a| a.start);
    all
}

/// Personal Glycemic State (Hirsch 2017): the GVP, mean glucose, time in range
/// and hypoglycemic-episode terms (episodes of at least 20 minutes ending after
/// 30 minutes back in range, counted per week).
pub(crate) fn pgs(m: &Metrics, grid: &Grid) -> Option<f64> {
    let (gvp, mg, tir) = (m.gvp?, m.mean?, m.in_range_70_180?);
    let n54 = count_per_week(grid, EpisodeKind::HypoLevel2, 20.0, 30.0)?;
    let n70 = count_per_week(grid, EpisodeKind::HypoLevel1, 20.0, 30.0)?;
    let f_gvp = 1.0 + 9.0 / (1.0 + (-0.049 * (gvp - 65.47)).exp());
    let f_mg = 1.0
        + 9.0
            * (1.0 / (1.0 + (0.1139 * (mg - 72.08)).exp())
                + 1.0 / (1.0 + (-0.09195 * (mg - 157.57)).exp()));
    let f_tir = 1.0 + 9.0 / (1.0 + (0.0833 * (tir - 55.04)).exp());
    let f_h54 = 0.5 + 4.5 * (1.0 - (-0.81093 * n54).exp());
    let f_h70 = if n70 <= 7.65 {
        0.5714 * n70 + 0.625
    } else {
        5.0
    };
    Some(f_gvp + f_mg + f_tir + f_h54 + f_h70)
}

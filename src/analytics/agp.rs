//! The ambulatory glucose profile: per column of the 5-minute day-by-day grid,
//! type-7 percentiles 5/25/50/75/95 of the non-missing values (Bergenstal 2013).

use super::descriptive::{quantile_sorted, sorted};
use super::grid::Grid;
use super::AgpBin;

pub(crate) fn bins(grid: Option<&Grid>) -> Vec<AgpBin> {
    (0..288usize)
        .map(|c| {
            let col = match grid {
                Some(g) => sorted((0..g.ndays).map(|d| g.v[d * g.cols + c])),
                None => Vec::new(),
            };
            let q = |p: f64| quantile_sorted(&col, p);
            AgpBin {
                minute: ((c + 1) * 5) as u16,
                p05: q(0.05),
                p25: q(0.25),
                p50: q(0.5),
                p75: q(0.75),
                p95: q(0.95),
                n: col.len(),
            }
        })
        .collect()
}

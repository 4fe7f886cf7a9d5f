//! MAGE, moving-average version (Fernandes 2022): on the 5-minute grid, split at
//! gaps longer than 180 minutes, a short (5-point) and long (32-point) trailing
//! moving average locate the turning points; excursions of at least one SD
//! between successive peak and nadir are averaged (`direction = avg`).

use super::descriptive::{mean, sd};
use super::grid::Grid;

const SHORT: usize = 5;
const LONG: usize = 32;
const MAX_GAP: f64 = 180.0;

/// Trailing moving average; the first `k - 1` take the first full window's value.
fn moving_average(x: &[f64], k: usize) -> Vec<f64> {
    let n = x.len();
    if n < k {
        let m = x.iter().sum::<f64>() / n as f64;
        return vec![m; n];
    }
    let mut s: f64 = x[..k].iter().sum();
    let mut out = vec![s / k as f64; k];
    out.extend(x[k..].iter().zip(x).map(|(new, old)| {
        s += new - old;
        s / k as f64
    }));
    out
}

/// Segments of the flattened grid: runs separated by more than `MAX_GAP`
/// minutes of missing points; inner short holes are linearly interpolated.
fn segments(grid: &Grid) -> Vec<Vec<f64>> {
    let v = &grid.v;
    let max_missing = (MAX_GAP / grid.dt0) as usize;
    let mut segs = Vec::new();
    let mut cur: Vec<f64> = Vec::new();
    let mut hole = 0usize;
    for &g in v {
        if g.is_nan() {
            hole += 1;
            continue;
        }
        if !cur.is_empty() && hole > 0 {
            if hole > max_missing {
                segs.push(std::mem::take(&mut cur));
            } else {
                let a = *cur.last().expect("non-empty");
                for h in 1..=hole {
                    cur.push(a + (g - a) * h as f64 / (hole + 1) as f64);
                }
            }
        }
        hole = 0;
        cur.push(g);
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    segs
}

/// Alternating turning points (index, value) of one segment.
fn turning_points(x: &[f64]) -> Vec<f64> {
    let short = moving_average(x, SHORT);
    let long = moving_average(x, LONG);
    let delta: Vec<f64> = short.iter().zip(&long).map(|(s, l)| s - l).collect();
    let mut cross = vec![0usize];
    for i in 1..delta.len() {
        if (delta[i - 1] < 0.0) != (delta[i] < 0.0) {
            cross.push(i);
        }
    }
    cross.push(x.len());
    let mut pts = Vec::new();
    for w in cross.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a >= b {
            continue;
        }
        let part = &x[a..b];
        let up = delta[a] >= 0.0;
        let v = if up {
            part.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        } else {
            part.iter().copied().fold(f64::INFINITY, f64::min)
        };
        pts.push(v);
    }
    pts
}

pub(crate) fn mage(grid5: &Grid) -> Option<f64> {
    let all_sd = sd(grid5.v.iter().copied())?;
    let mut plus = Vec::new();
    let mut minus = Vec::new();
    for seg in segments(grid5) {
        if seg.len() < 2 {
            continue;
        }
        let pts = turning_points(&seg);
        for w in pts.windows(2) {
            let d = w[1] - w[0];
            if d.abs() >= all_sd {
                if d > 0.0 {
                    plus.push(d);
                } else {
                    minus.push(-d);
                }
            }
        }
    }
    match (mean(plus), mean(minus)) {
        (Some(p), Some(m)) => Some((p + m) / 2.0),
        (Some(p), None) => Some(p),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    }
}

//! Descriptive statistics over plain values (mean, sample SD, type-7 quantiles),
//! the building blocks every metric family shares; `NaN` means missing.

/// Mean of the non-missing values; `None` if there are none.
pub(crate) fn mean(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs.into_iter().filter(|x| !x.is_nan()) {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Sample SD (n − 1) of the non-missing values; `None` with fewer than two.
pub(crate) fn sd(xs: impl IntoIterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = xs.into_iter().filter(|x| !x.is_nan()).collect();
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (v.len() - 1) as f64).sqrt())
}

/// Quantile of type 7 (numpy's default) of sorted, non-missing values.
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// The values sorted ascending, missing ones dropped.
pub(crate) fn sorted(xs: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = xs.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

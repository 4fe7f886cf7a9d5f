//! Glycemic analytics: pure computation over a user's readings (no HTTP, no
//! store), so that every metric can be checked against its definition and the
//! reference package in isolation. Definitions: `cgm-metrics.md` (contract);
//! parity target iglu-python 0.4.3, used only as a black-box oracle in tests.
//!
//! The entry points are [`stats`], [`agp`] and [`daily`]; each takes the samples in
//! any order and the time zone that decides what a day is. Meals: [`meal_response`]
//! (`meal-response.md`), [`food_insights`] and [`unlogged_meals`] take samples sorted
//! by time, as the store returns them.

mod agp;
mod descriptive;
pub mod episodes;
mod grid;
mod mage;
pub mod meal_insights;
pub mod meal_response;
mod readings;
mod sufficiency;
mod variability;
mod wear;

pub use episodes::{episodes, Episode, EpisodeKind};
pub use meal_insights::{
    food_insights, unlogged_meals, FoodInsights, LoggedMeal, MealSuggestion, DEFAULT_MIN_MEALS,
};
pub use meal_response::{meal_response, MealResponse, MealResponseStatus};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// One glucose value at one instant, in mg/dL. Readings the sensor reported as
/// LOW or HIGH arrive with the stored bound (39 or 401).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub mg_dl: f64,
}

/// The answer of `GET /api/bg/{userId}/stats` for one window, without the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub readings: usize,
    /// The consensus gate: at least 14 days and at least 70 % of the expected readings.
    pub sufficient: bool,
    pub metrics: Metrics,
    /// `None` when there are no readings.
    pub ranges: Option<Ranges>,
    pub gri: Option<Gri>,
}

/// The 49 metrics of `cgm-metrics.md`, under the contract's names; `None` (JSON
/// `null`) where the data cannot define one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub sd: Option<f64>,
    pub cv: Option<f64>,
    pub range: Option<f64>,
    pub iqr: Option<f64>,
    pub mad: Option<f64>,
    pub gmi: Option<f64>,
    pub ea1c: Option<f64>,
    pub in_range_70_180: Option<f64>,
    pub in_range_70_140: Option<f64>,
    pub below_54: Option<f64>,
    pub below_70: Option<f64>,
    pub above_180: Option<f64>,
    pub above_250: Option<f64>,
    pub gri: Option<f64>,
    pub lbgi: Option<f64>,
    pub hbgi: Option<f64>,
    pub adrr: Option<f64>,
    pub j_index: Option<f64>,
    pub grade: Option<f64>,
    pub grade_eugly: Option<f64>,
    pub grade_hyper: Option<f64>,
    pub grade_hypo: Option<f64>,
    pub m_value: Option<f64>,
    pub hyper_index: Option<f64>,
    pub hypo_index: Option<f64>,
    pub igc: Option<f64>,
    pub cogi: Option<f64>,
    pub mage: Option<f64>,
    pub mage_naive: Option<f64>,
    pub conga24: Option<f64>,
    pub conga1: Option<f64>,
    pub modd: Option<f64>,
    pub mag: Option<f64>,
    pub gvp: Option<f64>,
    pub sd_roc: Option<f64>,
    pub hourly_auc: Option<f64>,
    pub active_percent: Option<f64>,
    pub ndays: Option<f64>,
    pub sd_w: Option<f64>,
    pub sd_hhmm: Option<f64>,
    pub sd_wsh: Option<f64>,
    pub sd_dm: Option<f64>,
    pub sd_b: Option<f64>,
    pub sd_bdm: Option<f64>,
    pub cv_mean: Option<f64>,
    pub cv_sd: Option<f64>,
    pub pgs: Option<f64>,
}

/// The five disjoint consensus bands, percent of readings (they sum to 100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ranges {
    pub very_low: f64,
    pub low: f64,
    pub target: f64,
    pub high: f64,
    pub very_high: f64,
}

/// The Glycemia Risk Index and its zone (A: 0–20 … E: 80–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gri {
    pub value: f64,
    pub zone: char,
}

/// One column of the ambulatory glucose profile: `minute` 5, 10, …, 1440 of the
/// day in the time zone; type-7 percentiles of the column's non-missing grid values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgpBin {
    pub minute: u16,
    pub p05: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p95: Option<f64>,
    pub n: usize,
}

/// A target range in mg/dL, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub low: f64,
    pub high: f64,
}

/// The glucose part of one day's aggregate (`GET /api/bg/{userId}/daily`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayGlucose {
    pub date: NaiveDate,
    pub readings: usize,
    pub avg_glucose: f64,
    pub min_glucose: f64,
    pub max_glucose: f64,
    /// Sample SD; `None` for a day with one reading.
    pub std_glucose: Option<f64>,
    pub time_in_range_percent: f64,
    pub time_above_range_percent: f64,
    pub time_below_range_percent: f64,
}

/// Every metric of the window's samples (any order), days counted in `tz`.
pub fn stats(samples: &[Sample], tz: Tz) -> Stats {
    let samples: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.mg_dl.is_finite())
        .collect();
    let readings = samples.len();
    let mut metrics = Metrics::default();
    if readings == 0 {
        return Stats {
            readings,
            sufficient: false,
            metrics,
            ranges: None,
            gri: None,
        };
    }
    let g: Vec<f64> = samples.iter().map(|s| s.mg_dl).collect();
    let days: Vec<NaiveDate> = samples
        .iter()
        .map(|s| s.at.with_timezone(&tz).date_naive())
        .collect();
    readings::fill(&mut metrics, &g, &days);
    let series = grid::Series::new(&samples, tz);
    if let Some(dt0) = series.dt0() {
        if let (Some(grid), Some(grid5)) = (
            grid::Grid::build(&series, dt0),
            grid::Grid::build(&series, 5.0),
        ) {
            variability::fill(&mut metrics, &grid, &grid5);
            metrics.mage = mage::mage(&grid5);
            metrics.pgs = episodes::pgs(&metrics, &grid);
        }
    }
    let (active, ndays) = wear::active_and_days(&samples);
    metrics.active_percent = active;
    metrics.ndays = ndays;
    let sufficient = sufficiency::sufficient(&samples, tz, active);
    let ranges = readings::ranges(&g);
    let gri = ranges.as_ref().map(readings::gri);
    Stats {
        readings,
        sufficient,
        metrics,
        ranges,
        gri,
    }
}

/// The 288 AGP bins of the samples' 5-minute day-by-day grid in `tz`.
pub fn agp(samples: &[Sample], tz: Tz) -> Vec<AgpBin> {
    let series = grid::Series::new(samples, tz);
    agp::bins(grid::Grid::build(&series, 5.0).as_ref())
}

/// One row per local day (in `tz`) that holds at least one sample, oldest first.
pub fn daily(samples: &[Sample], tz: Tz, target: Band) -> Vec<DayGlucose> {
    let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<f64>> = Default::default();
    for s in samples {
        by_day
            .entry(s.at.with_timezone(&tz).date_naive())
            .or_default()
            .push(s.mg_dl);
    }
    by_day
        .into_iter()
        .map(|(date, values)| {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.len() > 1).then(|| {
                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            });
            let share = |f: &dyn Fn(f64) -> bool| {
                values.iter().filter(|v| f(**v)).count() as f64 * 100.0 / n
            };
            DayGlucose {
                date,
                readings: values.len(),
                avg_glucose: mean,
                min_glucose: values.iter().copied().fold(f64::INFINITY, f64::min),
                max_glucose: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                std_glucose: std,
                time_in_range_percent: share(&|v| v >= target.low && v <= target.high),
                time_above_range_percent: share(&|v| v > target.high),
                time_below_range_percent: share(&|v| v < target.low),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn samples(values: &[f64], step: i64) -> Vec<Sample> {
        let t0 = Utc.with_ymd_and_hms(2024, 3, 30, 20, 3, 0).unwrap();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Sample {
                at: t0 + chrono::Duration::minutes(i as i64 * step),
                mg_dl: *v,
            })
            .collect()
    }

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn no_readings_means_null_metrics() {
        let s = stats(&[], Tz::UTC);
        assert_eq!(s.readings, 0);
        assert_eq!(s.metrics, Metrics::default());
        assert!(s.ranges.is_none() && s.gri.is_none() && !s.sufficient);
        assert!(agp(&[], Tz::UTC)
            .iter()
            .all(|b| b.n == 0 && b.p50.is_none()));
    }

    #[test]
    fn fourteen_full_days_pass_the_gate_and_thirteen_do_not() {
        let v: Vec<f64> = (0..14 * 288).map(|i| 100.0 + (i % 50) as f64).collect();
        assert!(stats(&samples(&v, 5), Tz::UTC).sufficient);
        assert!(!stats(&samples(&v[..13 * 288], 5), Tz::UTC).sufficient);
    }

    #[test]
    fn gri_zone_follows_the_value() {
        let z = |very_low| {
            readings::gri(&Ranges {
                very_low,
                low: 0.0,
                target: 100.0 - very_low,
                high: 0.0,
                very_high: 0.0,
            })
        };
        assert_eq!(z(0.0).zone, 'A');
        assert_eq!(z(10.0).zone, 'B');
        assert_eq!(z(40.0).value, 100.0);
        assert_eq!(z(40.0).zone, 'E');
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn bands_sum_to_100_and_gri_is_capped(values in prop::collection::vec(39.0f64..401.0, 1..400)) {
            let s = stats(&samples(&values, 5), Tz::Europe__Berlin);
            let r = s.ranges.unwrap();
            prop_assert!((r.very_low + r.low + r.target + r.high + r.very_high - 100.0).abs() < 1e-9);
            let g = s.gri.unwrap();
            prop_assert!(g.value <= 100.0 && g.value >= 0.0);
        }

        #[test]
        fn metrics_do_not_depend_on_input_order(
            values in prop::collection::vec(39.0f64..401.0, 2..600),
            seed in any::<u64>(),
        ) {
            let a = samples(&values, 5);
            let mut b = a.clone();
            // A deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..b.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                b.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (ma, mb) = (stats(&a, Tz::Europe__Berlin).metrics, stats(&b, Tz::Europe__Berlin).metrics);
            let (ja, jb) = (serde_json::to_value(&ma).unwrap(), serde_json::to_value(&mb).unwrap());
            for (k, va) in ja.as_object().unwrap() {
                prop_assert!(same(va.as_f64(), jb[k].as_f64()), "{k}: {va} vs {}", jb[k]);
            }
            prop_assert_eq!(agp(&a, Tz::Europe__Berlin), agp(&b, Tz::Europe__Berlin));
        }
    }
}

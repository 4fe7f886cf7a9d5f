//! Glycemic analytics: pure computation over a user's readings (no HTTP, no
//! store), so that every metric can be checked against its definition and the
//! reference package in isolation. Definitions: `cgm-metrics.md` (contract);
//! parity target iglu-python 0.4.3, used only as a black-box oracle in tests.
//!
//! The entry points are [`stats`], [`agp`] and [`daily`]; each takes the samples in
//! any order and the time zone that decides what a day is.

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
pub fn stats(samples: &[Sample], _tz: Tz) -> Stats {
    // Skeleton: the count and the mean; the analytics work fills in the rest.
    let readings = samples.len();
    let mean =
        (readings > 0).then(|| samples.iter().map(|s| s.mg_dl).sum::<f64>() / readings as f64);
    Stats {
        readings,
        sufficient: false,
        metrics: Metrics {
            mean,
            ..Metrics::default()
        },
        ranges: None,
        gri: None,
    }
}

/// The 288 AGP bins of the samples' 5-minute day-by-day grid in `tz`.
pub fn agp(_samples: &[Sample], _tz: Tz) -> Vec<AgpBin> {
    (1..=288)
        .map(|i| AgpBin {
            minute: i * 5,
            p05: None,
            p25: None,
            p50: None,
            p75: None,
            p95: None,
            n: 0,
        })
        .collect()
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

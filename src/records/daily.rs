//! Daily aggregates as stored: one row per (user, local date), with the basis it
//! was computed on and the day marks it saw, so that a reader can tell a fresh
//! row from a stale one without touching the readings (see `store::daily`).

use chrono::NaiveDate;

use crate::domain::{TargetRange, TimeZoneName};

/// What a row's figures depend on besides the readings: the zone that decides
/// the day and the target range of the time-in-range figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayBasis {
    pub timezone: TimeZoneName,
    pub target: TargetRange,
}

/// The glucose figures of one day (`GET /api/bg/{userId}/daily`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlucoseFigures {
    pub readings: u32,
    pub avg_glucose: f64,
    pub min_glucose: f64,
    pub max_glucose: f64,
    /// Sample SD; None for a day with one reading.
    pub std_glucose: Option<f64>,
    pub time_in_range_percent: f64,
    pub time_above_range_percent: f64,
    pub time_below_range_percent: f64,
}

/// The journal totals of one day. `GET .../daily` computes them from the
/// journal entries when asked (`store::daily::journal_figures`); the stored
/// rows carry none (these columns stay unwritten), kept as
/// they are when the glucose figures are recomputed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JournalFigures {
    pub total_sleep_minutes: Option<f64>,
    pub sleep_quality_score: Option<f64>,
    pub total_exercise_minutes: Option<f64>,
    pub total_carbs_grams: Option<f64>,
    pub total_calories: Option<f64>,
}

/// One stored day. `glucose` is None for a day that had no reading when it was
/// computed (kept so that an empty day is not recomputed on every request).
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// The local date in `basis.timezone`.
    pub date: NaiveDate,
    pub basis: DayBasis,
    /// The sum of the revisions of the UTC dates the local day overlaps, read
    /// before the readings it was computed from.
    pub marks_revision: i64,
    pub glucose: Option<GlucoseFigures>,
    pub journal: JournalFigures,
}

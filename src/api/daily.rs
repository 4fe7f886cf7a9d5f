//! `GET /api/bg/{userId}/daily`: the daily aggregates of a window of local
//! days, kept current as readings arrive (`store::daily` decides which stored
//! rows are fresh and recomputes the rest), with the journal's totals of each
//! day computed from the entries when asked.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::readings::{parse_date, UserPath};
use super::views::success;
use super::AppState;
use crate::domain::{FieldError, Profile, TimeZoneName, UserId};
use crate::records::audit::Action;
use crate::records::daily::{DailyRow, DayBasis, GlucoseFigures, JournalFigures};
use crate::store::daily::{daily_aggregates, journal_figures};
use crate::store::profile_or_default;

/// The longest window, in days.
const MAX_DAYS: i64 = 366;
/// The default window, in days (ending with today).
const DEFAULT_DAYS: i64 = 14;

/// Query parameters of the daily aggregates. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyParams {
    /// Inclusive: `YYYY-MM-DD` (a local date in `tz`) or RFC 3339 (the local
    /// day containing it). Default: 14 days before `endDate`.
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// Exclusive: `YYYY-MM-DD` (a local date in `tz`) or RFC 3339 (every local
    /// day before it, including the one it falls in unless it is that day's
    /// start). Default: tomorrow in `tz`, so the default window is the 14 days
    /// ending with today. At most 366 days after `startDate`.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
    /// IANA time zone deciding the days; default the profile's.
    #[param(example = "Europe/Berlin")]
    tz: Option<String>,
}

/// One day's aggregate.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayView {
    /// The local date in the window's zone.
    #[schema(value_type = String, example = "2025-01-14")]
    pub date: NaiveDate,
    /// 0 on a day with journal entries and no reading (its glucose figures are null).
    pub readings: u32,
    /// mg/dL.
    pub avg_glucose: Option<f64>,
    pub min_glucose: Option<f64>,
    pub max_glucose: Option<f64>,
    /// Sample standard deviation; null for a day with one reading.
    pub std_glucose: Option<f64>,
    /// Percent of the day's readings within the profile's target range (inclusive).
    pub time_in_range_percent: Option<f64>,
    pub time_above_range_percent: Option<f64>,
    pub time_below_range_percent: Option<f64>,
    /// Journal totals, null until the journal has entries that give them that
    /// day: minutes of the sleep sessions of that `date`, the mean of their
    /// quality scores, minutes of the activities started that day, carbs and
    /// calories of the meals eaten that day (docs/journal.md).
    pub total_sleep_minutes: Option<f64>,
    pub sleep_quality_score: Option<f64>,
    pub total_exercise_minutes: Option<f64>,
    pub total_carbs_grams: Option<f64>,
    pub total_calories: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyView {
    /// The days with readings or journal entries, oldest first (days without
    /// either are omitted).
    pub days: Vec<DayView>,
}

impl DayView {
    fn of(date: NaiveDate, glucose: Option<GlucoseFigures>, journal: JournalFigures) -> Self {
        Self {
            date,
            readings: glucose.map_or(0, |g| g.readings),
            avg_glucose: glucose.map(|g| g.avg_glucose),
            min_glucose: glucose.map(|g| g.min_glucose),
            max_glucose: glucose.map(|g| g.max_glucose),
            std_glucose: glucose.and_then(|g| g.std_glucose),
            time_in_range_percent: glucose.map(|g| g.time_in_range_percent),
            time_above_range_percent: glucose.map(|g| g.time_above_range_percent),
            time_below_range_percent: glucose.map(|g| g.time_below_range_percent),
            total_sleep_minutes: journal.total_sleep_minutes,
            sleep_quality_score: journal.sleep_quality_score,
            total_exercise_minutes: journal.total_exercise_minutes,
            total_carbs_grams: journal.total_carbs_grams,
            total_calories: journal.total_calories,
        }
    }
}

/// The glucose figures of the rows and the journal totals, one view per day
/// that has either, by date.
fn days(rows: &[DailyRow], mut journal: BTreeMap<NaiveDate, JournalFigures>) -> Vec<DayView> {
    let mut glucose: BTreeMap<NaiveDate, GlucoseFigures> = rows
        .iter()
        .filter_map(|r| r.glucose.map(|g| (r.date, g)))
        .collect();
    let dates: BTreeSet<NaiveDate> = glucose.keys().chain(journal.keys()).copied().collect();
    dates
        .into_iter()
        .map(|date| {
            DayView::of(
                date,
                glucose.remove(&date),
                journal.remove(&date).unwrap_or_default(),
            )
        })
        .collect()
}

/// A window bound as a local date: `YYYY-MM-DD` as it is, RFC 3339 as the
/// local date of that instant (for an exclusive end, of the second before it,
/// plus one day).
fn local_date(
    name: &str,
    raw: &str,
    tz: TimeZoneName,
    exclusive: bool,
) -> Result<NaiveDate, FieldError> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date);
    }
    let at = parse_date(name, raw)?.as_datetime();
    Ok(if exclusive {
        tz.date_of(at - Duration::seconds(1)) + Duration::days(1)
    } else {
        tz.date_of(at)
    })
}

/// The zone (None: the profile's) and the local dates `[from, until)` asked
/// for, every problem collected.
fn window(
    params: DailyParams,
    profile_tz: TimeZoneName,
) -> Result<(TimeZoneName, NaiveDate, NaiveDate), ApiError> {
    let mut errors = Vec::new();
    let tz = match params.tz.as_deref() {
        None => profile_tz,
        Some(raw) => TimeZoneName::parse("tz", raw).unwrap_or_else(|e| {
            errors.push(e);
            profile_tz
        }),
    };
    let until = match params.end_date.as_deref() {
        None => Some(tz.date_of(Utc::now()) + Duration::days(1)),
        Some(raw) => local_date("endDate", raw, tz, true)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let from = match (params.start_date.as_deref(), until) {
        (None, Some(until)) => Some(until - Duration::days(DEFAULT_DAYS)),
        (None, None) => None,
        (Some(raw), _) => local_date("startDate", raw, tz, false)
            .map_err(|e| errors.push(e))
            .ok(),
    };
    if let (Some(from), Some(until)) = (from, until) {
        if from >= until {
            errors.push(FieldError::new("endDate", "must be after startDate"));
        } else if (until - from).num_days() > MAX_DAYS {
            errors.push(FieldError::new(
                "endDate",
                format!("the window may span at most {MAX_DAYS} days"),
            ));
        }
    }
    match (from, until) {
        (Some(from), Some(until)) if errors.is_empty() => Ok((tz, from, until)),
        _ => Err(ApiError::bad_request("invalid query parameters", errors)),
    }
}

/// Daily aggregates: per local day with readings, the count, mean, min, max,
/// SD and the time in, above and below the profile's target range, plus the
/// journal's totals. Rows are kept current as readings arrive: a late upload
/// for a past day changes that day's row.
#[utoipa::path(
    get, path = "/api/bg/{userId}/daily", tag = "analytics",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), DailyParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The days of the window that have readings or journal entries, oldest first", body = super::docs::DailyEnvelope),
        (status = 400, description = "VALIDATION_ERROR: invalid user id, startDate, endDate (before startDate, or more than 366 days after it) or tz (pointer /tz)", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
    )
)]
pub async fn daily(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadAnalytics, &user).await?;
    let params: DailyParams = query_params(query.as_deref())?;
    let profile = profile_or_default(state.store.as_ref(), &user).await?;
    let (timezone, from, until) = window(params, profile.timezone)?;
    let days = day_views(&state, &user, &profile, timezone, from, until).await?;
    Ok(success(DailyView { days }).into_response())
}

/// The aggregates of the local dates `[from, until)` in `timezone` with the
/// profile's target range, as every daily route presents them (days without
/// figures left out). The caller has authorized the read.
pub(super) async fn day_views(
    state: &AppState,
    user: &UserId,
    profile: &Profile,
    timezone: TimeZoneName,
    from: NaiveDate,
    until: NaiveDate,
) -> Result<Vec<DayView>, ApiError> {
    let basis = DayBasis {
        timezone,
        target: profile.target,
    };
    let daily = daily_aggregates(state.store.as_ref(), user, basis, from, until).await?;
    tracing::debug!(user_id = %user, days = daily.days.len(), recomputed = daily.recomputed.len(), "daily aggregates");
    let journal = journal_figures(state.store.as_ref(), user, timezone, from, until).await?;
    Ok(days(&daily.days, journal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(start: Option<&str>, end: Option<&str>, tz: Option<&str>) -> DailyParams {
        DailyParams {
            start_date: start.map(str::to_owned),
            end_date: end.map(str::to_owned),
            tz: tz.map(str::to_owned),
        }
    }

    fn pointers(r: Result<(TimeZoneName, NaiveDate, NaiveDate), ApiError>) -> Vec<String> {
        match r {
            Err(ApiError::Validation { errors, .. }) => {
                errors.into_iter().map(|e| e.pointer).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn windows_are_local_dates() {
        let utc = TimeZoneName::UTC;
        let (_, from, until) =
            window(params(Some("2025-01-01"), Some("2025-01-15"), None), utc).unwrap();
        assert_eq!((from, until), (d("2025-01-01"), d("2025-01-15")));
        // An instant: the local day it falls in; an exclusive end at a day's
        // start does not take that day.
        let (tz, from, until) = window(
            params(
                Some("2025-01-01T23:30:00Z"),
                Some("2025-01-03T23:00:00Z"),
                Some("Europe/Berlin"),
            ),
            utc,
        )
        .unwrap();
        assert_eq!(tz.name(), "Europe/Berlin");
        assert_eq!((from, until), (d("2025-01-02"), d("2025-01-04")));
        let (_, from, until) = window(params(None, None, None), utc).unwrap();
        assert_eq!((until - from).num_days(), 14);
        assert_eq!(until, Utc::now().date_naive() + Duration::days(1));
    }

    #[test]
    fn bad_windows_are_named() {
        let utc = TimeZoneName::UTC;
        assert_eq!(
            pointers(window(params(None, None, Some("Nowhere/City")), utc)),
            ["/tz"]
        );
        assert_eq!(
            pointers(window(
                params(Some("2025-01-02"), Some("2025-01-02"), None),
                utc
            )),
            ["/endDate"]
        );
        assert_eq!(
            pointers(window(
                params(Some("2024-01-01"), Some("2025-01-02"), None),
                utc
            )),
            ["/endDate"]
        );
        assert!(window(params(Some("2024-01-01"), Some("2025-01-01"), None), utc).is_ok());
        assert_eq!(
            pointers(window(params(Some("yesterday"), None, None), utc)),
            ["/startDate"]
        );
    }
}

//! Meal glucose responses and food insights over HTTP (issue 20): the routes
//! that join the journal's meals with the readings around them and hand both to
//! the pure `analytics::meal_response` / `analytics::meal_insights`. This module
//! only loads (one window of samples through the process's day cache, one list
//! of meals) and presents; every number is the analytics' own.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::analytics::MAX_WINDOW_READINGS;
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::readings::{parse_date, path_user, UserPath};
use super::views::success;
use super::AppState;
use crate::analytics::{
    food_insights, meal_response, unlogged_meals, FoodInsights, LoggedMeal, MealResponse,
    MealSuggestion, Sample, DEFAULT_MIN_MEALS,
};
use crate::domain::{FieldError, UserId};
use crate::records::audit::Action;
use crate::records::journal::{JournalBody, JournalEntry, JournalKind, JournalQuery};
use crate::store::meal_responses::{self, trace_span, OVERLAP_MIN};

/// Most meals one insights window may hold (ten a day for over two years).
pub const MAX_INSIGHT_MEALS: usize = 10_000;
/// Days the insights look back by default.
pub const DEFAULT_INSIGHT_DAYS: i64 = 90;
/// Meals per store query when a window is listed whole.
const LIST_PAGE: usize = 1_000;

/// The response of one meal as the API shows it: the contract's fields.
#[derive(Debug, Serialize)]
pub struct ResponseView<'a> {
    pub meal_id: uuid::Uuid,
    #[serde(flatten)]
    pub response: &'a MealResponse,
}

fn not_found() -> ApiError {
    ApiError::NotFound("meal".to_owned())
}

fn too_many_readings() -> ApiError {
    ApiError::bad_request(
        "the window holds too many readings",
        vec![FieldError::new(
            "startDate",
            format!(
                "the window holds more than {MAX_WINDOW_READINGS} readings: choose a shorter one"
            ),
        )],
    )
}

/// The user's CGM samples in `[from, until)`, oldest first, through the cache.
async fn samples(
    state: &AppState,
    user: &UserId,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Sample>, ApiError> {
    let window = state
        .glucose_windows
        .window(state.store.as_ref(), user, from, until, MAX_WINDOW_READINGS)
        .await?
        .ok_or_else(too_many_readings)?;
    Ok(window.to_vec())
}

/// Every meal of `user` in `[from, until)`, oldest first; None past `max`.
async fn meals_between(
    state: &AppState,
    user: &UserId,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    max: usize,
) -> Result<Option<Vec<JournalEntry>>, ApiError> {
    let mut out: Vec<JournalEntry> = Vec::new();
    loop {
        let page = state
            .store
            .list_journal_entries(JournalQuery {
                user_id: user.clone(),
                kind: JournalKind::Meal,
                from: Some(from),
                until: Some(until),
                descending: false,
                after: out.last().map(|e| (e.at(), e.id)),
                limit: LIST_PAGE,
            })
            .await?;
        let full = page.len() == LIST_PAGE;
        out.extend(page);
        if out.len() > max {
            return Ok(None);
        }
        if !full {
            return Ok(Some(out));
        }
    }
}

/// The responses of `meals` (any order, one user's), in their order, as of
/// `now`, whatever their number: one read of the day marks of their span, one
/// list of the meals that may overlap them and one read of their stored
/// responses (`store::meal_responses`); a stored response is used while its
/// validity key matches, the others are computed from one read of the samples
/// over the span they need, and those no longer pending are stored (a failure
/// to store is logged and counted, never the request's).
pub async fn responses_of(
    state: &AppState,
    user: &UserId,
    meals: &[JournalEntry],
    now: DateTime<Utc>,
) -> Result<Vec<MealResponse>, ApiError> {
    let (Some(first), Some(last)) = (
        meals.iter().map(JournalEntry::at).min(),
        meals.iter().map(JournalEntry::at).max(),
    ) else {
        return Ok(Vec::new());
    };
    // Meals in (t0, t0 + 180] of any of them; the bound is inclusive, the
    // list's end exclusive: one millisecond more (times are whole ms).
    let others = meals_between(
        state,
        user,
        first,
        last + Duration::minutes(OVERLAP_MIN) + Duration::milliseconds(1),
        usize::MAX,
    )
    .await?
    .unwrap_or_default();
    let mut times: Vec<DateTime<Utc>> = others.iter().map(JournalEntry::at).collect();
    times.sort_unstable();
    let wanted: Vec<(uuid::Uuid, DateTime<Utc>)> = meals.iter().map(|m| (m.id, m.at())).collect();
    // The marks are read here, before the samples below.
    let lookup = meal_responses::read_stored(state.store.as_ref(), user, &wanted, &times).await?;
    let misses = lookup.misses();
    metrics::counter!("meal_responses_total", "source" => "stored").increment(lookup.hits() as u64);
    metrics::counter!("meal_responses_total", "source" => "computed")
        .increment(misses.len() as u64);
    let mut computed = Vec::with_capacity(misses.len());
    if let (Some(from), Some(until)) = (
        misses.iter().map(|&i| trace_span(meals[i].at()).0).min(),
        misses.iter().map(|&i| trace_span(meals[i].at()).1).max(),
    ) {
        let trace = samples(state, user, from, until).await?;
        for i in misses {
            computed.push((i, response_in(&meals[i], &trace, &times, now)));
        }
    }
    let (responses, to_store) = lookup.finish(user, computed, now)?;
    if !to_store.is_empty() {
        let count = to_store.len();
        if let Err(e) = state.store.put_meal_responses(user, to_store).await {
            metrics::counter!("meal_response_store_failures_total").increment(1);
            tracing::warn!(error = %e, user = user.as_str(), count, "storing meal responses failed");
        }
    }
    Ok(responses)
}

/// One meal's response from a trace (any span holding the meal's
/// `trace_span`: only that part is passed on, so the answer does not depend on
/// the other meals asked with it) and the sorted times of the user's meals
/// (only those in (t0, t0 + 180] are passed on).
fn response_in(
    meal: &JournalEntry,
    trace: &[Sample],
    meal_times: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> MealResponse {
    let t0 = meal.at();
    let (from, until) = trace_span(t0);
    let start = trace.partition_point(|s| s.at < from);
    let end = trace.partition_point(|s| s.at < until);
    meal_response(
        t0,
        &trace[start..end.max(start)],
        meal_responses::overlapping(t0, meal_times),
        now,
    )
}

/// The contract's response object of `meal`.
pub fn response_json(meal: &JournalEntry, response: &MealResponse) -> Result<Value, ApiError> {
    serde_json::to_value(ResponseView {
        meal_id: meal.id,
        response,
    })
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Adds `response` to each listed meal item (`include=response`).
pub(super) async fn with_responses(
    state: &AppState,
    user: &UserId,
    meals: &[JournalEntry],
    items: &mut [Value],
) -> Result<(), ApiError> {
    let responses = responses_of(state, user, meals, Utc::now()).await?;
    for ((meal, response), item) in meals.iter().zip(&responses).zip(items.iter_mut()) {
        if let Value::Object(map) = item {
            map.insert("response".to_owned(), response_json(meal, response)?);
        }
    }
    Ok(())
}

/// The response of one meal of `user` (the logic of both paths).
pub async fn meal_response_of(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    raw_id: &str,
) -> Result<Response, ApiError> {
    authorize(state, caller, Action::ReadJournal, user).await?;
    let id = uuid::Uuid::parse_str(raw_id)
        .map_err(|_| ApiError::from(FieldError::new("meal_id", "must be a UUID")))?;
    let Some(meal) = state
        .store
        .get_journal_entry(user, JournalKind::Meal, id)
        .await?
    else {
        return Err(not_found());
    };
    let responses = responses_of(state, user, std::slice::from_ref(&meal), Utc::now()).await?;
    let response = responses.first().ok_or_else(not_found)?;
    Ok(success(response_json(&meal, response)?).into_response())
}

/// The glucose response to one meal (`meal-response.md`): baseline, peak,
/// incremental areas, return to baseline, coverage, overlap and a
/// non-clinical score, computed from the readings stored when asked.
#[utoipa::path(
    get, path = "/api/users/{userId}/meals/{entryId}/response", tag = "journal",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("entryId" = String, Path, format = "uuid", description = "The meal's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The response (status complete, pending or insufficient_data; the metrics null unless complete)", body = super::docs::MealResponseEnvelope),
        (status = 400, description = "Invalid user or meal id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
        (status = 404, description = "No such meal of this user", body = ErrorEnvelope),
    )
)]
pub async fn get_response(
    State(state): State<AppState>,
    Path((raw_user, raw_id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    meal_response_of(&state, &caller, &user, &raw_id).await
}

/// Query parameters of the insights. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InsightParams {
    /// Inclusive (meal times): RFC 3339 or YYYY-MM-DD (midnight UTC); default 90 days before `endDate`.
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// Exclusive: RFC 3339 or YYYY-MM-DD; default now.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
}

/// A rise of the trace that looks like a meal nobody logged: enough for a
/// client to offer logging it (`timestamp` is when the rise started).
#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionView {
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: DateTime<Utc>,
    /// Mean of the stable 30 minutes before the rise (mg/dL).
    pub baseline: f64,
    /// Highest reading of the rise (mg/dL).
    pub peak: f64,
    #[schema(value_type = String, format = DateTime)]
    pub peak_at: DateTime<Utc>,
    /// peak − baseline (mg/dL).
    pub rise: f64,
}

impl From<&MealSuggestion> for SuggestionView {
    fn from(s: &MealSuggestion) -> Self {
        Self {
            timestamp: s.start,
            baseline: s.baseline,
            peak: s.peak,
            peak_at: s.peak_at,
            rise: s.rise,
        }
    }
}

/// The body of the insights.
#[derive(Debug, Serialize)]
pub struct InsightsView<'a> {
    pub user_id: &'a str,
    pub start: String,
    pub end: String,
    #[serde(flatten)]
    pub insights: &'a FoodInsights,
    pub unlogged_meals: Vec<SuggestionView>,
}

fn insight_window(
    params: &InsightParams,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let mut errors = Vec::new();
    let mut date = |name: &str, raw: Option<&str>| {
        raw.and_then(|r| {
            parse_date(name, r)
                .map(|t| t.as_datetime())
                .map_err(|e| errors.push(e))
                .ok()
        })
    };
    let from = date("startDate", params.start_date.as_deref());
    let until = date("endDate", params.end_date.as_deref());
    let until = until.unwrap_or(now);
    let from = from.unwrap_or(until - Duration::days(DEFAULT_INSIGHT_DAYS));
    if errors.is_empty() && from >= until {
        errors.push(FieldError::new("endDate", "must be after startDate"));
    }
    if errors.is_empty() {
        Ok((from, until))
    } else {
        Err(ApiError::bad_request("invalid query parameters", errors))
    }
}

/// The insights of `user` (the logic of both paths).
pub async fn insights_of(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    authorize(state, caller, Action::ReadJournal, user).await?;
    let params: InsightParams = query_params(query)?;
    let now = Utc::now();
    let (from, until) = insight_window(&params, now)?;
    let meals = meals_between(state, user, from, until, MAX_INSIGHT_MEALS)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "the window holds too many meals",
                vec![FieldError::new(
                    "startDate",
                    format!(
                        "the window holds more than {MAX_INSIGHT_MEALS} meals: choose a shorter one"
                    ),
                )],
            )
        })?;
    let responses = responses_of(state, user, &meals, now).await?;
    let logged: Vec<LoggedMeal> = meals
        .iter()
        .map(|entry| match &entry.body {
            JournalBody::Meal(m) => LoggedMeal {
                at: entry.at(),
                meal_type: m.meal_type().map(|t| t.as_str().to_owned()),
                foods: m.foods().iter().map(|f| f.name().to_owned()).collect(),
            },
            _ => LoggedMeal {
                at: entry.at(),
                meal_type: None,
                foods: Vec::new(),
            },
        })
        .collect();
    let insights = food_insights(logged.iter().zip(responses.iter()), DEFAULT_MIN_MEALS);
    // The rises of the window's trace; meals just outside it still explain a rise.
    let trace = samples(state, user, from, until).await?;
    let around = meals_between(
        state,
        user,
        from - Duration::minutes(OVERLAP_MIN),
        until + Duration::minutes(OVERLAP_MIN),
        usize::MAX,
    )
    .await?
    .unwrap_or_default();
    let times: Vec<DateTime<Utc>> = around.iter().map(JournalEntry::at).collect();
    let suggestions = unlogged_meals(&trace, &times);
    let view = InsightsView {
        user_id: user.as_str(),
        start: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        end: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        insights: &insights,
        unlogged_meals: suggestions.iter().map(SuggestionView::from).collect(),
    };
    let data = serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(success(data).into_response())
}

/// Food insights: per food name and per meal type, the count, mean and SD of
/// iauc_120 and delta_g over the window's meals with a complete response,
/// ranked gentlest first once a group has `min_meals` meals; and rises of the
/// trace with no meal logged near them, as suggestions to log.
#[utoipa::path(
    get, path = "/api/users/{userId}/meals/insights", tag = "journal",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), InsightParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The insights", body = super::docs::MealInsightsEnvelope),
        (status = 400, description = "Invalid user id or dates, or a window with too many meals or readings", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
    )
)]
pub async fn get_insights(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    insights_of(&state, &caller, &user, query.as_deref()).await
}

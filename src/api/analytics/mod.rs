//! Analytics routes: `GET /api/bg/{userId}/stats`, `/agp` and `/summary.fhir`.
//! Each reads the window's CGM readings through the store and hands them to the
//! pure `crate::analytics` computation; this module only parses, loads and
//! presents.

pub mod fhir;
mod schema;
pub mod window;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access::{authorize, Caller};
use super::error::{ApiError, ErrorEnvelope};
use super::readings::UserPath;
use super::views::success;
use super::AppState;
use std::sync::Arc;

use crate::analytics::{self, AgpBin, Stats};
use crate::domain::{FieldError, UserId};
use crate::records::audit::Action;
use crate::store::samples::WindowSamples;

pub use schema::{AgpBinDoc, AgpData, FhirBundleDoc, GriDoc, MetricsDoc, RangesDoc, StatsData};
pub use window::{default_timezone, Window, WindowParams};

/// Most CGM readings one window may hold: a year of 1-minute data (Libre 3)
/// with room to spare; 5-minute data for 366 days is about 105,000.
pub const MAX_WINDOW_READINGS: usize = 600_000;

/// The body of `/stats` (and `stats` of `/agp`).
#[derive(Debug, Serialize)]
pub struct StatsView<'a> {
    pub user_id: &'a str,
    pub start: String,
    pub end: String,
    pub tz: &'static str,
    #[serde(flatten)]
    pub stats: &'a Stats,
}

impl<'a> StatsView<'a> {
    pub fn new(user: &'a UserId, window: &Window, stats: &'a Stats) -> Self {
        Self {
            user_id: user.as_str(),
            start: window.start_rfc3339(),
            end: window.end_rfc3339(),
            tz: window.tz.name(),
            stats,
        }
    }
}

/// The body of `/agp`.
#[derive(Debug, Serialize)]
pub struct AgpView<'a> {
    pub start: String,
    pub end: String,
    pub tz: &'static str,
    pub bins: &'a [AgpBin],
    pub stats: StatsView<'a>,
}

/// The window's CGM readings (through the process's cache); VALIDATION_ERROR
/// when it holds more than a request may compute over.
pub async fn load_samples(
    state: &AppState,
    user: &UserId,
    window: &Window,
) -> Result<WindowSamples, ApiError> {
    let loaded = state
        .glucose_windows
        .window(
            state.store.as_ref(),
            user,
            window.start,
            window.end,
            MAX_WINDOW_READINGS,
        )
        .await?;
    loaded.ok_or_else(|| {
        ApiError::bad_request(
            "the window holds too many readings",
            vec![FieldError::new(
                "startDate",
                format!("the window holds more than {MAX_WINDOW_READINGS} readings: choose a shorter one"),
            )],
        )
    })
}

/// The window's statistics: computed once per distinct set of readings and
/// time zone, then served from the cache until a reading in it changes.
pub(super) async fn window_stats(
    state: &AppState,
    samples: &WindowSamples,
    tz: chrono_tz::Tz,
) -> Result<Arc<Stats>, ApiError> {
    if let Some(stats) = state.glucose_windows.cached_stats(samples, tz) {
        return Ok(stats);
    }
    let values = samples.to_vec();
    let stats = Arc::new(compute(move || analytics::stats(&values, tz)).await?);
    state
        .glucose_windows
        .remember_stats(samples, tz, stats.clone());
    Ok(stats)
}

/// Runs a computation off the async workers (a year of readings takes a
/// noticeable slice of a core).
async fn compute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("analytics computation failed: {e}")))
}

/// Authorizes, parses the window and loads its readings: what every route here does first.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    query: Option<&str>,
) -> Result<(Window, WindowSamples), ApiError> {
    authorize(state, caller, Action::ReadAnalytics, user).await?;
    let window = Window::from_query(state, user, query).await?;
    let samples = load_samples(state, user, &window).await?;
    Ok((window, samples))
}

/// Glycemic statistics of a window: the 49 metrics, the five consensus ranges,
/// GRI with its zone and the consensus sufficiency flag.
#[utoipa::path(
    get, path = "/api/bg/{userId}/stats", tag = "analytics",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"), WindowParams),
    responses(
        (status = 200, description = "Statistics of the window's CGM readings (manual and calibration readings are not counted); a window without readings gives `readings: 0` and null metrics, ranges and gri", body = super::docs::StatsEnvelope),
        (status = 400, description = "Invalid user id, startDate, endDate or tz; an empty window or one longer than 366 days; unknown parameters", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's readings", body = ErrorEnvelope),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (window, samples) = prepare(&state, &caller, &user, query.as_deref()).await?;
    let stats = window_stats(&state, &samples, window.tz).await?;
    Ok(success(StatsView::new(&user, &window, &stats)).into_response())
}

/// The ambulatory glucose profile of a window: 288 five-minute columns of the
/// day in `tz`, each with type-7 percentiles, and the window's statistics.
#[utoipa::path(
    get, path = "/api/bg/{userId}/agp", tag = "analytics",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"), WindowParams),
    responses(
        (status = 200, description = "288 bins (`minute` 5 … 1440) with p05, p25, p50, p75, p95 (null where `n` is 0) and the statistics as `/stats` gives them", body = super::docs::AgpEnvelope),
        (status = 400, description = "Invalid user id, startDate, endDate or tz; an empty window or one longer than 366 days; unknown parameters", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's readings", body = ErrorEnvelope),
    )
)]
pub async fn agp(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (window, samples) = prepare(&state, &caller, &user, query.as_deref()).await?;
    let tz = window.tz;
    let stats = window_stats(&state, &samples, tz).await?;
    let values = samples.to_vec();
    let bins = compute(move || analytics::agp(&values, tz)).await?;
    Ok(success(AgpView {
        start: window.start_rfc3339(),
        end: window.end_rfc3339(),
        tz: tz.name(),
        bins: &bins,
        stats: StatsView::new(&user, &window, &stats),
    })
    .into_response())
}

/// The window's summary as a FHIR R4 Bundle (type `collection`) following the
/// HL7 FHIR CGM IG 1.0.0: the summary Observation (LOINC 107931-8) and its
/// members (mean glucose, times in ranges, GMI, CV, days of wear, sensor active
/// percentage), each with `effectivePeriod` = the window. Errors use the JSON
/// error envelope, not an OperationOutcome.
#[utoipa::path(
    get, path = "/api/bg/{userId}/summary.fhir", tag = "analytics",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"), WindowParams),
    responses(
        (status = 200, description = "A FHIR R4 Bundle; a member the data cannot define (no readings) carries dataAbsentReason instead of a value", content_type = "application/fhir+json", body = FhirBundleDoc),
        (status = 400, description = "Invalid user id, startDate, endDate or tz; an empty window or one longer than 366 days; unknown parameters", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's readings", body = ErrorEnvelope),
    )
)]
pub async fn summary_fhir(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (window, samples) = prepare(&state, &caller, &user, query.as_deref()).await?;
    let stats = window_stats(&state, &samples, window.tz).await?;
    let bundle = fhir::summary_bundle(&user, &window, &stats, chrono::Utc::now());
    let body = serde_json::to_vec(&bundle)
        .map_err(|e| ApiError::Internal(format!("serializing a response: {e}")))?;
    Ok(([(header::CONTENT_TYPE, fhir::CONTENT_TYPE)], body).into_response())
}

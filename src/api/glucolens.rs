//! The GlucoLens and Nutri paths (`/api/v1/...`): the caller's own data, the
//! user being the token's `sub`. Each handler resolves the caller (`Me`) and
//! hands over to the logic of the equivalent `/api/bg/{userId}` or
//! `/api/users/{userId}` route, so that parsing, authorization (the caller as
//! the owner), audit, limits and answers are that route's; only the wire
//! format of a reading and the names of the query parameters are their own.
//! The journal's paths (`/api/v1/meals`, `/sleep`, `/activities`, the Apple
//! Health upload, meal responses, insights) are added here the same way: a
//! handler taking `Me` and calling the journal route's logic with `me.user`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::analytics::{load_samples, window_stats, StatsView, Window};
use super::body::RawBody;
use super::daily::{day_views, DayView};
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::middleware::RequestUser;
use super::readings::{self, RangeNames, RawRange, Shape};
use super::views::{success, ReadingView};
use super::{docs, jobs, oauth, AppState};
use crate::domain::{FieldError, TimeZoneName, UserId};
use crate::pipeline::wire;
use crate::records::audit::Action;
use crate::records::connections::Provider;
use crate::store::profile_or_default;

/// The caller of a `/api/v1` path and the user whose data it acts on: the
/// same, the token's `sub` (`dev-admin` with AUTH_DISABLED). The access log
/// is told whose data it is, as `UserPath` tells it for the other routes.
pub struct Me {
    pub caller: Caller,
    pub user: UserId,
}

impl<S: Send + Sync> FromRequestParts<S> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let user = caller.principal.user_id.clone();
        if let Some(request_user) = parts.extensions.get::<RequestUser>() {
            request_user.set(&user);
        }
        Ok(Self { caller, user })
    }
}

/// Stores one reading of the caller's: `{"timestamp","value","source"?,"device_id"?}`.
#[utoipa::path(
    post, path = "/api/v1/glucose/readings", tag = "glucolens",
    request_body(content = wire::GlucoseInput, description = "One reading in mg/dL; a batch goes to /api/v1/glucose/bulk"),
    responses(
        (status = 201, description = "Stored (inserted, updated or duplicate): the record's outcome, as POST /api/bg/{userId}/readings answers one reading", body = docs::WriteEnvelope),
        (status = 400, description = "Unparseable JSON", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field by pointer (/timestamp, /value, /source, /device_id, or an unknown field); a body holding `readings` (pointer /readings)", body = ErrorEnvelope),
        (status = 429, description = "Over the rate limit, or over the hourly write quota (WRITE_QUOTA_READINGS_PER_HOUR)", body = ErrorEnvelope),
    )
)]
pub async fn post_reading(
    State(state): State<AppState>,
    me: Me,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    readings::write_readings(
        &state,
        &me.caller,
        &me.user,
        body,
        Shape::Single,
        wire::parse_glucose_record,
    )
    .await
}

/// Body of `POST /api/v1/glucose/bulk` (documentation: the records are parsed
/// one by one, so that one bad record cannot sink the batch).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct GlucoseBulkInput {
    /// At most MAX_BATCH_RECORDS readings, each a GlucoseInput. Each is
    /// validated on its own: a bad one is rejected in its outcome and the
    /// others are stored, so the items are not constrained here.
    readings: Vec<serde_json::Value>,
}

/// Stores a batch of the caller's readings, each with its outcome.
#[utoipa::path(
    post, path = "/api/v1/glucose/bulk", tag = "glucolens",
    request_body(content = GlucoseBulkInput, description = "Up to MAX_BATCH_RECORDS readings"),
    responses(
        (status = 201, description = "A summary and one outcome per record (inserted, updated, duplicate, or rejected with a VALIDATION_ERROR whose pointers are /readings/{i}/...); valid records are stored even when others are rejected", body = docs::WriteEnvelope),
        (status = 400, description = "Unparseable JSON", body = ErrorEnvelope),
        (status = 413, description = "More than MAX_BATCH_RECORDS readings (nothing stored)", body = ErrorEnvelope),
        (status = 422, description = "No `readings` array, or a field beside it", body = ErrorEnvelope),
        (status = 429, description = "Over the rate limit, or the batch would cross the hourly write quota (nothing stored)", body = ErrorEnvelope),
    )
)]
pub async fn post_bulk(
    State(state): State<AppState>,
    me: Me,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    readings::write_readings(
        &state,
        &me.caller,
        &me.user,
        body,
        Shape::Bulk,
        wire::parse_glucose_record,
    )
    .await
}

/// `start`/`end` with the contract's `startDate`/`endDate` as aliases.
const V1_NAMES: RangeNames = RangeNames {
    start: ("start", "startDate"),
    end: ("end", "endDate"),
};

/// Query parameters of `GET /api/v1/glucose/readings`. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadingsParams {
    /// Inclusive start: RFC 3339 or YYYY-MM-DD (midnight UTC). Alias `startDate`.
    start: Option<String>,
    /// Exclusive end: RFC 3339 or YYYY-MM-DD. Alias `endDate`.
    end: Option<String>,
    /// The contract's name for `start` (give one of the two).
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// The contract's name for `end` (give one of the two).
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Opaque cursor from `pagination.next_cursor` / `prev_cursor`.
    cursor: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(value_type = Option<readings::OrderName>)]
    order: Option<String>,
}

/// The caller's readings in a time range, oldest first unless `order=desc`.
#[utoipa::path(
    get, path = "/api/v1/glucose/readings", tag = "glucolens",
    params(ReadingsParams),
    responses(
        (status = 200, description = "A page of readings with cursors and absolute next/prev links (to this path), as GET /api/bg/{userId} answers", body = docs::PageEnvelope),
        (status = 400, description = "Invalid start, end, limit, order or cursor, or an unknown parameter (pointers /start, /end, /limit, /order, /cursor)", body = ErrorEnvelope),
    )
)]
pub async fn list_readings(
    State(state): State<AppState>,
    me: Me,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &me.caller, Action::ReadReadings, &me.user).await?;
    let params: ReadingsParams = query_params(query.as_deref())?;
    let raw = RawRange {
        start: (params.start, params.start_date),
        end: (params.end, params.end_date),
        limit: params.limit,
        cursor: params.cursor,
        order: params.order,
    };
    let req = readings::page_request(me.user, raw, V1_NAMES)?;
    readings::read_page(&state, &req, &headers, "/api/v1/glucose/readings", V1_NAMES).await
}

/// The caller's newest reading.
#[utoipa::path(
    get, path = "/api/v1/glucose/latest", tag = "glucolens",
    params(("If-None-Match" = Option<String>, Header, description = "ETag from an earlier response")),
    responses(
        (status = 200, description = "The newest reading, with ETag, Last-Modified and Cache-Control, as GET /api/bg/{userId}/latest answers", body = docs::LatestEnvelope),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 404, description = "No reading yet", body = ErrorEnvelope),
    )
)]
pub async fn latest(
    State(state): State<AppState>,
    me: Me,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    readings::latest_of(&state, &me.caller, &me.user, &headers).await
}

/// Query parameters of the daily summary. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailySummaryParams {
    /// The local date, YYYY-MM-DD; default today in `tz`.
    #[param(example = "2025-01-14")]
    date: Option<String>,
    /// IANA time zone deciding the day; default the profile's (UTC without one).
    #[param(example = "Europe/Berlin")]
    tz: Option<String>,
}

/// `data` of the daily summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailySummaryView {
    /// The local date summarized.
    #[schema(value_type = String, example = "2025-01-14")]
    pub date: NaiveDate,
    /// The zone the day was counted in.
    #[schema(example = "Europe/Berlin")]
    pub tz: &'static str,
    /// The day's first instant (RFC 3339, UTC).
    #[schema(example = "2025-01-13T23:00:00Z")]
    pub start: String,
    /// The next day's first instant (exclusive; 23 or 25 hours after `start`
    /// on a day that changes the clock).
    #[schema(example = "2025-01-14T23:00:00Z")]
    pub end: String,
    /// The day's aggregate as `GET /api/bg/{userId}/daily` lists it; null when
    /// the day has nothing to aggregate.
    #[schema(required = true)]
    pub summary: Option<DayView>,
}

/// The caller's aggregate of one local day (in the profile's time zone).
#[utoipa::path(
    get, path = "/api/v1/glucose/daily-summary", tag = "glucolens",
    params(DailySummaryParams),
    responses(
        (status = 200, description = "The day and its aggregate (null for a day without readings); kept current as readings arrive", body = docs::DailySummaryEnvelope),
        (status = 400, description = "VALIDATION_ERROR: date not YYYY-MM-DD (pointer /date), an unknown tz (/tz) or an unknown parameter", body = ErrorEnvelope),
    )
)]
pub async fn daily_summary(
    State(state): State<AppState>,
    me: Me,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &me.caller, Action::ReadAnalytics, &me.user).await?;
    let params: DailySummaryParams = query_params(query.as_deref())?;
    let profile = profile_or_default(state.store.as_ref(), &me.user).await?;
    let (tz, date) = summary_day(params, profile.timezone, Utc::now())?;
    let next = date + Duration::days(1);
    let mut days = day_views(&state, &me.user, &profile, tz, date, next).await?;
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(success(DailySummaryView {
        date,
        tz: tz.name(),
        start: rfc3339(tz.day_start(date)),
        end: rfc3339(tz.day_start(next)),
        summary: days.pop(),
    })
    .into_response())
}

/// The zone and the local date asked for, every problem collected.
fn summary_day(
    params: DailySummaryParams,
    profile_tz: TimeZoneName,
    now: DateTime<Utc>,
) -> Result<(TimeZoneName, NaiveDate), ApiError> {
    let mut errors = Vec::new();
    let tz = match params.tz.as_deref() {
        None => profile_tz,
        Some(raw) => TimeZoneName::parse("tz", raw).unwrap_or_else(|e| {
            errors.push(e);
            profile_tz
        }),
    };
    let date = match params.date.as_deref() {
        None => tz.date_of(now),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap_or_else(|_| {
            errors.push(FieldError::new(
                "date",
                format!("{raw:?} is not a date (YYYY-MM-DD)"),
            ));
            now.date_naive()
        }),
    };
    if errors.is_empty() {
        Ok((tz, date))
    } else {
        Err(ApiError::bad_request("invalid query parameters", errors))
    }
}

/// Query parameters of the dashboard. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DashboardParams {
    /// IANA time zone for the statistics' days; default the profile's.
    #[param(example = "Europe/Berlin")]
    tz: Option<String>,
}

/// `data` of the dashboard.
#[derive(Debug, Serialize)]
pub struct DashboardView<'a> {
    pub user_id: &'a str,
    /// The instant both windows end at (whole seconds).
    pub generated_at: String,
    pub tz: &'static str,
    pub latest: Option<ReadingView<'a>>,
    pub last_7_days: StatsView<'a>,
    pub last_30_days: StatsView<'a>,
}

/// The dashboard's windows, in days before now.
const DASHBOARD_WINDOWS: [i64; 2] = [7, 30];

/// The caller's dashboard: the newest reading and the statistics of the last
/// 7 and the last 30 days.
#[utoipa::path(
    get, path = "/api/v1/dashboard/summary", tag = "glucolens",
    params(DashboardParams),
    responses(
        (status = 200, description = "`latest` (null without readings) and, for the windows [now − 7 days, now) and [now − 30 days, now), the statistics GET /api/bg/{userId}/stats gives (metrics null where the data cannot define them; `sufficient` false for 7 days, which is under the consensus's 14)", body = docs::DashboardEnvelope),
        (status = 400, description = "An unknown tz (pointer /tz) or parameter", body = ErrorEnvelope),
    )
)]
pub async fn dashboard(
    State(state): State<AppState>,
    me: Me,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&state, &me.caller, Action::ReadAnalytics, &me.user).await?;
    authorize(&state, &me.caller, Action::ReadReadings, &me.user).await?;
    let params: DashboardParams = query_params(query.as_deref())?;
    let tz = match params.tz.as_deref() {
        Some(raw) => TimeZoneName::parse("tz", raw)?,
        None => {
            profile_or_default(state.store.as_ref(), &me.user)
                .await?
                .timezone
        }
    };
    let end = Utc::now()
        .duration_trunc(Duration::seconds(1))
        .unwrap_or_else(|_| Utc::now());
    let mut windows = Vec::with_capacity(DASHBOARD_WINDOWS.len());
    for days in DASHBOARD_WINDOWS {
        let window = Window {
            start: end - Duration::days(days),
            end,
            tz: tz.tz(),
        };
        let samples = load_samples(&state, &me.user, &window).await?;
        let stats: Arc<_> = window_stats(&state, &samples, window.tz).await?;
        windows.push((window, stats));
    }
    let latest = state.store.latest_reading(&me.user).await?;
    let [(week, week_stats), (month, month_stats)] = &windows[..] else {
        return Err(ApiError::Internal("the dashboard has two windows".into()));
    };
    Ok(success(DashboardView {
        user_id: me.user.as_str(),
        generated_at: end.to_rfc3339_opts(SecondsFormat::Secs, true),
        tz: tz.name(),
        latest: latest.as_ref().map(ReadingView::from),
        last_7_days: StatsView::new(&me.user, week, week_stats),
        last_30_days: StatsView::new(&me.user, month, month_stats),
    })
    .into_response())
}

/// Body of the CGM connect and sync paths.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CgmInput {
    /// `dexcom` (the default).
    #[schema(example = "dexcom")]
    pub provider: Option<String>,
}

/// The body's provider, if it names one. An empty body names none; bad JSON
/// is a 400, an unknown field or provider a 422 with its pointer.
fn cgm_provider(body: &[u8]) -> Result<Option<Provider>, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(None);
    }
    // serde reads a struct from an array too (`[null]` would pass as `{}`).
    if !text.starts_with(b"{") {
        return Err(ApiError::bad_request(
            "request body must be a JSON object",
            vec![],
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let input: CgmInput = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = wire::json_pointer(e.path());
        let inner = e.into_inner();
        if inner.is_data() {
            let e = FieldError::new(&pointer, describe(&inner));
            ApiError::unprocessable(format!("invalid body: {e}"), vec![e])
        } else {
            ApiError::bad_request(format!("malformed JSON: {inner}"), vec![])
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}"), vec![]))?;
    input
        .provider
        .map(|raw| {
            Provider::parse(&raw).ok_or_else(|| {
                let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
                let e = FieldError::new(
                    "provider",
                    format!("unknown provider; one of {}", known.join(", ")),
                );
                ApiError::unprocessable(e.to_string(), vec![e])
            })
        })
        .transpose()
}

/// serde's message without its "at line 1 column 9" (the pointer says where).
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// `data` of the CGM connect path.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizeUrlView {
    /// The provider's login page: open it in the browser that received this
    /// response's cookie.
    #[schema(example = "https://sandbox-api.dexcom.com/v2/oauth2/login?client_id=...&state=...")]
    pub authorize_url: String,
    #[schema(example = "dexcom")]
    pub provider: &'static str,
}

/// Begins connecting the caller's CGM account (the OAuth start of
/// `GET /oauth/authorize`, answered as JSON instead of a redirect).
#[utoipa::path(
    post, path = "/api/v1/integrations/cgm/connect", tag = "glucolens",
    request_body(content = Option<CgmInput>, description = "The provider; an empty body means dexcom"),
    responses(
        (status = 200, description = "The login URL. The response sets the cookie (HttpOnly, SameSite=Lax, scoped to the redirect URI) that ties the callback to this browser: the callback is accepted only from a browser that carries it, so open the URL in the browser (or web view) that made this request", body = docs::AuthorizeUrlEnvelope),
        (status = 422, description = "An unknown provider (pointer /provider) or field", body = ErrorEnvelope),
        (status = 503, description = "The provider is not configured", body = ErrorEnvelope),
    )
)]
pub async fn cgm_connect(
    State(state): State<AppState>,
    me: Me,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let provider = cgm_provider(&body)?.unwrap_or(Provider::Dexcom);
    let started = oauth::start_connect(&state, &me.caller, &me.user, provider).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::SET_COOKIE, started.cookie),
        ],
        success(AuthorizeUrlView {
            authorize_url: started.login_url,
            provider: provider.as_str(),
        }),
    )
        .into_response())
}

/// Queues a sync of the caller's CGM data (the manual sync of
/// `POST /api/bg/{userId}/sync`).
#[utoipa::path(
    post, path = "/api/v1/integrations/cgm/sync", tag = "glucolens",
    params(
        ("startDate" = Option<String>, Query, description = "Inclusive; YYYY-MM-DD or RFC 3339. Without it: an incremental sync from the last reading synced, minus the overlap window"),
        ("endDate" = Option<String>, Query, description = "Exclusive; default now. Needs startDate"),
        ("provider" = Option<String>, Query, description = "The source (dexcom), as the body may name it too; default: the one the caller has a working connection to"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key returns the same job; reused with a different range: 422"),
    ),
    request_body(content = Option<CgmInput>, description = "Optional: the provider"),
    responses(
        (status = 202, description = "Queued (or the job already queued for the same request, or the job of a known Idempotency-Key); `Location` is /api/jobs/{jobId}", body = docs::JobEnvelope),
        (status = 400, description = "Invalid dates, key or provider; body and query naming different providers (pointer /provider); several working connections and no provider named", body = ErrorEnvelope),
        (status = 409, description = "No working connection: connect first (POST /api/v1/integrations/cgm/connect)", body = ErrorEnvelope),
        (status = 422, description = "An unknown provider or field in the body; an Idempotency-Key used with a different request", body = ErrorEnvelope),
        (status = 429, description = "SYNC_MAX_QUEUED_JOBS_PER_USER jobs already queued (Retry-After says when to try again)", body = ErrorEnvelope),
        (status = 503, description = "No source is configured", body = ErrorEnvelope),
    )
)]
pub async fn cgm_sync(
    State(state): State<AppState>,
    me: Me,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    authorize(&state, &me.caller, Action::Sync, &me.user).await?;
    let RawBody(body) = body?;
    let named = cgm_provider(&body)?;
    let (range, asked) = jobs::requested_range(query.as_deref())?;
    let asked = match (named, asked) {
        (Some(a), Some(b)) if a != b => {
            let e = FieldError::new(
                "provider",
                "the body and the query name different providers",
            );
            return Err(ApiError::bad_request(e.to_string(), vec![e]));
        }
        (named, asked) => named.or(asked),
    };
    jobs::queue_sync(&state, &me.user, range, asked, &headers).await
}

/// The glucose response to one of the caller's meals, as
/// GET /api/users/{userId}/meals/{mealId}/response answers it.
#[utoipa::path(
    get, path = "/api/v1/glucose/meal-response/{mealId}", tag = "glucolens",
    params(("mealId" = String, Path, format = "uuid")),
    responses(
        (status = 200, description = "The response (status complete, pending or insufficient_data)", body = docs::MealResponseEnvelope),
        (status = 400, description = "Invalid meal id", body = ErrorEnvelope),
        (status = 404, description = "No such meal of the caller's", body = ErrorEnvelope),
    )
)]
pub async fn meal_response(
    State(state): State<AppState>,
    me: Me,
    axum::extract::Path(meal_id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    super::meals::meal_response_of(&state, &me.caller, &me.user, &meal_id).await
}

/// The caller's food insights and unlogged-meal suggestions, as
/// GET /api/users/{userId}/meals/insights answers them.
#[utoipa::path(
    get, path = "/api/v1/glucose/insights", tag = "glucolens",
    params(super::meals::InsightParams),
    responses(
        (status = 200, description = "The insights", body = docs::MealInsightsEnvelope),
        (status = 400, description = "Invalid dates, or a window with too many meals or readings", body = ErrorEnvelope),
    )
)]
pub async fn insights(
    State(state): State<AppState>,
    me: Me,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    super::meals::insights_of(&state, &me.caller, &me.user, query.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(date: Option<&str>, tz: Option<&str>) -> DailySummaryParams {
        DailySummaryParams {
            date: date.map(str::to_owned),
            tz: tz.map(str::to_owned),
        }
    }

    fn pointers(r: Result<impl std::fmt::Debug, ApiError>) -> Vec<String> {
        match r {
            Err(ApiError::Validation { errors, .. }) => {
                errors.into_iter().map(|e| e.pointer).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_summary_day_is_today_in_the_zone_unless_named() {
        let berlin = TimeZoneName::parse("tz", "Europe/Berlin").unwrap();
        // 23:30 UTC on the 14th is already the 15th in Berlin.
        let now = "2025-01-14T23:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let (tz, date) = summary_day(params(None, None), berlin, now).unwrap();
        assert_eq!(
            (tz.name(), date.to_string()),
            ("Europe/Berlin", "2025-01-15".into())
        );
        let (tz, date) = summary_day(params(None, Some("UTC")), berlin, now).unwrap();
        assert_eq!((tz.name(), date.to_string()), ("UTC", "2025-01-14".into()));
        let (_, date) = summary_day(params(Some("2024-02-29"), None), berlin, now).unwrap();
        assert_eq!(date.to_string(), "2024-02-29");
        assert_eq!(
            pointers(summary_day(
                params(Some("2025-02-30"), Some("Mars/Base")),
                berlin,
                now
            )),
            ["/tz", "/date"]
        );
    }

    #[test]
    fn the_cgm_body_names_a_provider_or_nothing() {
        assert_eq!(cgm_provider(b"").unwrap(), None);
        assert_eq!(cgm_provider(b" {} ").unwrap(), None);
        assert_eq!(
            cgm_provider(br#"{"provider":"dexcom"}"#).unwrap(),
            Some(Provider::Dexcom)
        );
        assert_eq!(
            pointers(cgm_provider(br#"{"provider":"libre"}"#)),
            ["/provider"]
        );
        assert_eq!(pointers(cgm_provider(br#"{"provider":3}"#)), ["/provider"]);
        assert_eq!(
            pointers(cgm_provider(br#"{"vendor":"dexcom"}"#)),
            ["/vendor"]
        );
        match cgm_provider(b"{\"provider\":") {
            Err(ApiError::Validation { status, .. }) => assert_eq!(status, 400),
            other => panic!("{other:?}"),
        }
    }
}

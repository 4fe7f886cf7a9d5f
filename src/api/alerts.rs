//! Alerts (contract: "Alerts and live streams"): a user's alert settings
//! (`GET`/`PUT .../alert-settings`), their alert history, newest first with
//! cursors (`GET .../alerts`), and acknowledging one (`POST .../alerts/{id}/ack`).
//! Alerts are raised and resolved by the pipeline (`pipeline::alerts`), not here.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::body::RawBody;
use super::cursor;
use super::error::{json_body, query_params, ApiError, ErrorEnvelope};
use super::readings::{parse_date, path_user, UserPath};
use super::views::success;
use super::AppState;
use crate::domain::{AlertSettings, AlertSettingsInput, FieldError};
use crate::records::alerts::{Alert, AlertQuery, AlertStatus};
use crate::records::audit::Action;

/// A user's alert settings (thresholds in mg/dL).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertSettingsView {
    #[schema(example = 54)]
    pub urgent_low: u16,
    #[schema(example = 70)]
    pub low: u16,
    #[schema(example = 250)]
    pub high: u16,
    /// Null: no urgent-high alerts.
    pub urgent_high: Option<u16>,
    /// falling_fast / rising_fast at this rate over 15 minutes.
    #[schema(example = 3.0)]
    pub rate_mgdl_per_min: f64,
    #[schema(example = 20)]
    pub stale_minutes: u16,
    /// Predicted low: an urgent low forecast within this many minutes.
    #[schema(example = 20)]
    pub predicted_low_minutes: u16,
    /// An acknowledged alert still true after this long is raised again.
    #[schema(example = 30)]
    pub snooze_minutes: u16,
}

impl From<&AlertSettings> for AlertSettingsView {
    fn from(s: &AlertSettings) -> Self {
        Self {
            urgent_low: s.urgent_low(),
            low: s.low(),
            high: s.high(),
            urgent_high: s.urgent_high(),
            rate_mgdl_per_min: s.rate_mgdl_per_min(),
            stale_minutes: s.stale_minutes(),
            predicted_low_minutes: s.predicted_low_minutes(),
            snooze_minutes: s.snooze_minutes(),
        }
    }
}

/// The settings to store: absent fields take their defaults.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct AlertSettingsInputDoc {
    /// 40-400, below `low`; default 54.
    urgent_low: Option<i64>,
    /// 40-400, below `high`; default 70.
    low: Option<i64>,
    /// 40-400; default 250.
    high: Option<i64>,
    /// 40-400, above `high`; null or absent: off.
    urgent_high: Option<i64>,
    /// 1-10; default 3.
    rate_mgdl_per_min: Option<f64>,
    /// 1-1440; default 20.
    stale_minutes: Option<i64>,
    /// 5-60; default 20.
    predicted_low_minutes: Option<i64>,
    /// 1-1440; default 30.
    snooze_minutes: Option<i64>,
}

/// An alert, in the contract's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: uuid::Uuid,
    pub user_id: String,
    /// urgent_low, low, high, urgent_high, falling_fast, rising_fast, stale, predicted_low
    #[serde(rename = "type")]
    #[schema(example = "low")]
    pub alert_type: &'static str,
    /// active, acknowledged or resolved
    #[schema(example = "active")]
    pub status: &'static str,
    pub glucose_value: Option<u16>,
    pub reading_timestamp: Option<DateTime<Utc>>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub message: String,
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> Self {
        Self {
            id: a.id,
            user_id: a.user_id.clone(),
            alert_type: a.alert_type.as_str(),
            status: a.status.as_str(),
            glucose_value: a.glucose_value,
            reading_timestamp: a.reading_timestamp,
            raised_at: a.raised_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by.clone(),
            resolved_at: a.resolved_at,
            message: a.message.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
    pub pagination: AlertPagination,
}

/// Where the next (older) page of alerts starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPagination {
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Absolute URL of the next page; null on the last.
    pub next: Option<String>,
    pub limit: usize,
}

/// Query parameters of the alert list. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListParams {
    /// active, acknowledged or resolved; absent: all.
    status: Option<String>,
    /// Raised at or after: RFC 3339 or YYYY-MM-DD (midnight UTC).
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// Raised before: RFC 3339 or YYYY-MM-DD.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Opaque cursor from `pagination.next_cursor`.
    cursor: Option<String>,
}

/// A user's alert settings (the defaults until they are set).
#[utoipa::path(
    get, path = "/api/users/{userId}/alert-settings", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = super::docs::AlertSettingsEnvelope),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
    )
)]
pub async fn get_settings(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadAlertSettings, &user).await?;
    let settings = state
        .store
        .get_alert_settings(&user)
        .await?
        .unwrap_or_default();
    Ok(success(AlertSettingsView::from(&settings)).into_response())
}

/// Replaces a user's alert settings; fields left out take their defaults.
#[utoipa::path(
    put, path = "/api/users/{userId}/alert-settings", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body = AlertSettingsInputDoc,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings as stored", body = super::docs::AlertSettingsEnvelope),
        (status = 400, description = "Malformed body (not JSON, a field of the wrong type, an unknown field) or user id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
        (status = 422, description = "Out of range, or not urgent_low < low < high < urgent_high; each error names its field", body = ErrorEnvelope),
    )
)]
pub async fn put_settings(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::WriteAlertSettings, &user).await?;
    let input: AlertSettingsInput = json_body(&body)?;
    let settings = AlertSettings::parse(&input)
        .map_err(|errors| ApiError::unprocessable("invalid alert settings", errors))?;
    state.store.put_alert_settings(&user, settings).await?;
    Ok(success(AlertSettingsView::from(&settings)).into_response())
}

/// A user's alerts, newest first, a page at a time.
#[utoipa::path(
    get, path = "/api/users/{userId}/alerts", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), AlertListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of alerts, newest first, with the cursor and absolute link of the next page", body = super::docs::AlertListEnvelope),
        (status = 400, description = "Invalid user id, status, dates, limit or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadAlerts, &user).await?;
    let params: AlertListParams = query_params(query.as_deref())?;
    let mut errors = Vec::new();
    let status = match params.status.as_deref() {
        None => None,
        Some(raw) => AlertStatus::parse(raw)
            .ok_or_else(|| {
                errors.push(FieldError::new(
                    "status",
                    "must be active, acknowledged or resolved",
                ))
            })
            .ok(),
    };
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
    if let (Some(f), Some(u)) = (from, until) {
        if f >= u {
            errors.push(FieldError::new("endDate", "must be after startDate"));
        }
    }
    let limit = cursor::page_limit(params.limit.as_deref(), &mut errors);
    let key = |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| t.timestamp().to_string());
    let (from_key, until_key) = (key(from), key(until));
    let fingerprint = cursor::key_fingerprint(&[
        "alerts",
        user.as_str(),
        status.map_or("", AlertStatus::as_str),
        &from_key,
        &until_key,
    ]);
    let before = match params.cursor.as_deref() {
        Some(raw) if errors.is_empty() => cursor::decode_key(raw, fingerprint)
            .and_then(|key| {
                uuid::Uuid::parse_str(&key)
                    .map_err(|_| FieldError::new("/cursor", "invalid cursor"))
            })
            .map_err(|e| errors.push(e))
            .ok(),
        _ => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::bad_request("invalid query parameters", errors));
    }
    // One more than the page, to know whether another follows.
    let mut alerts = state
        .store
        .list_alerts(AlertQuery {
            user_id: user.clone(),
            status,
            from,
            until,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let next_cursor = more
        .then(|| alerts.last())
        .flatten()
        .map(|last| cursor::encode_key(&last.id.to_string(), fingerprint));
    let next = next_cursor.as_ref().map(|c| {
        let mut query = Vec::new();
        if let Some(s) = status {
            query.push(("status", s.as_str().to_owned()));
        }
        if let Some(f) = from {
            query.push(("startDate", f.to_rfc3339()));
        }
        if let Some(u) = until {
            query.push(("endDate", u.to_rfc3339()));
        }
        query.push(("limit", limit.to_string()));
        query.push(("cursor", c.clone()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!(
            "{}/api/users/{user}/alerts?{query}",
            state.base_url(&headers)
        )
    });
    Ok(success(AlertList {
        alerts: alerts.iter().map(AlertView::from).collect(),
        pagination: AlertPagination {
            next_cursor,
            next,
            limit,
        },
    })
    .into_response())
}

/// Acknowledges an alert: it stays open (and is raised again if still true
/// after the user's `snooze_minutes`) until readings resolve it. Acknowledging
/// an acknowledged alert returns it unchanged.
#[utoipa::path(
    post, path = "/api/users/{userId}/alerts/{alertId}/ack", tag = "alerts",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("alertId" = String, Path, format = "uuid")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert, acknowledged (acknowledged_by: the caller)", body = super::docs::AlertEnvelope),
        (status = 400, description = "Invalid user or alert id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Only the user, a caregiver or clinician they share with, or an admin", body = ErrorEnvelope),
        (status = 404, description = "No such alert of this user", body = ErrorEnvelope),
        (status = 409, description = "The alert is resolved already", body = ErrorEnvelope),
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    Path((raw_user, raw_id)): Path<(String, String)>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    authorize(&state, &caller, Action::AcknowledgeAlerts, &user).await?;
    let id = uuid::Uuid::parse_str(&raw_id)
        .map_err(|_| ApiError::from(FieldError::new("alert_id", "must be a UUID")))?;
    // A lost race (resolved or acknowledged meanwhile) reads it again.
    for _ in 0..3 {
        let Some(alert) = state.store.get_alert(&user, id).await? else {
            return Err(ApiError::NotFound("alert".into()));
        };
        match alert.status {
            AlertStatus::Resolved => {
                return Err(ApiError::Conflict("the alert is resolved already".into()))
            }
            AlertStatus::Acknowledged => {
                return Ok(success(AlertView::from(&alert)).into_response())
            }
            AlertStatus::Active => {
                let acked = alert.acknowledged(&caller.principal.user_id, Utc::now());
                if state
                    .store
                    .transition_alert(AlertStatus::Active, acked.clone())
                    .await?
                {
                    return Ok(success(AlertView::from(&acked)).into_response());
                }
            }
        }
    }
    Err(ApiError::Unavailable(
        "the alert keeps changing; try again".into(),
    ))
}

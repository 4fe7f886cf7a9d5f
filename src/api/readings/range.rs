//! `GET /api/bg/{userId}`: a time range, paged with opaque cursors and absolute links.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::UserPath;
use crate::api::access::{authorize, Caller};
use crate::api::error::{query_params, ApiError, ErrorEnvelope};
use crate::api::views::{success_sized, ReadingView};
use crate::api::AppState;
use crate::api::{cursor, docs};
use crate::domain::{FieldError, ReadingTime, UserId};
use crate::records::audit::Action;
use crate::store::{fetch_page, Order, PageRequest};

/// Query parameters of the range endpoint. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Inclusive start: RFC 3339 or YYYY-MM-DD (midnight UTC). Alias `from`.
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// Exclusive end: RFC 3339 or YYYY-MM-DD. Alias `to`.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Opaque cursor from `pagination.next_cursor` / `prev_cursor`.
    cursor: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(value_type = Option<OrderName>)]
    order: Option<String>,
}

/// Listing orders, as documented.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum OrderName {
    #[schema(rename = "asc")]
    Asc,
    #[schema(rename = "desc")]
    Desc,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
    /// Absolute URL of the next page.
    pub next: Option<String>,
    /// Absolute URL of the previous page.
    pub prev: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadingsPage<'a> {
    pub readings: Vec<ReadingView<'a>>,
    pub pagination: Pagination,
}

/// A query date: `YYYY-MM-DD` (midnight UTC) or RFC 3339 (fractions rounded up).
pub(in crate::api) fn parse_date(name: &str, raw: &str) -> Result<ReadingTime, FieldError> {
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
        return midnight
            .map(ReadingTime::from_utc)
            .ok_or_else(|| FieldError::new(name, "is out of range"));
    }
    // Readings are whole seconds, so a fractional bound is rounded up: for an
    // inclusive start and an exclusive end alike, that keeps exactly the readings
    // at or after the start and before the end.
    let parsed = chrono::DateTime::parse_from_rfc3339(raw.trim()).map(|t| {
        let t = t.with_timezone(&Utc);
        let whole = ReadingTime::from_utc(t);
        if t.timestamp_subsec_nanos() > 0 {
            ReadingTime::from_unix_seconds(whole.unix_seconds() + 1).unwrap_or(whole)
        } else {
            whole
        }
    });
    parsed.map_err(|_| {
        FieldError::new(
            name,
            format!("{raw:?} is not a date (YYYY-MM-DD) or RFC 3339 date-time"),
        )
    })
}

fn either(
    a: (&str, Option<String>),
    b: (&str, Option<String>),
) -> Result<Option<ReadingTime>, FieldError> {
    match (a.1, b.1) {
        (Some(_), Some(_)) => Err(FieldError::new(
            a.0,
            format!("give {} or its alias {}, not both", a.0, b.0),
        )),
        (Some(v), None) => parse_date(a.0, &v).map(Some),
        (None, Some(v)) => parse_date(b.0, &v).map(Some),
        (None, None) => Ok(None),
    }
}

/// Parses and checks the query, collecting every problem.
fn page_request(user: UserId, query: Option<&str>) -> Result<PageRequest, ApiError> {
    let params: RangeParams = query_params(query)?;
    let mut errors = Vec::new();
    let start = either(("startDate", params.start_date), ("from", params.from))
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let end = either(("endDate", params.end_date), ("to", params.to))
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            errors.push(FieldError::new("endDate", "must be after startDate"));
        }
    }
    let limit = crate::api::cursor::page_limit(params.limit.as_deref(), &mut errors);
    let order = match params
        .order
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(_) => {
            errors.push(FieldError::new("order", "must be asc or desc"));
            Order::Asc
        }
    };
    let mut req = PageRequest {
        user_id: user,
        start,
        end,
        order,
        limit,
        seek: None,
    };
    if let Some(raw) = params.cursor.as_deref() {
        match cursor::decode(raw, cursor::fingerprint(&req)) {
            Ok(seek) => req.seek = Some(seek),
            Err(e) if errors.is_empty() => errors.push(e),
            Err(_) => {} // the cursor cannot be judged against an invalid query
        }
    }
    if errors.is_empty() {
        Ok(req)
    } else {
        Err(ApiError::bad_request("invalid query parameters", errors))
    }
}

/// Readings of a user in a time range, oldest first unless `order=desc`.
#[utoipa::path(
    get, path = "/api/bg/{userId}", tag = "readings",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"), RangeParams),
    responses(
        (status = 200, description = "A page of readings with cursors and absolute next/prev links", body = docs::PageEnvelope),
        (status = 400, description = "Invalid user id, dates, limit, order or cursor", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
    )
)]
pub async fn range(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadReadings, &user).await?;
    let req = page_request(user, query.as_deref())?;
    let page = fetch_page(state.store.as_ref(), &req).await?;
    let fp = cursor::fingerprint(&req);
    let next_cursor = page.next.map(|s| cursor::encode(s, fp));
    let prev_cursor = page.prev.map(|s| cursor::encode(s, fp));
    let base = state.base_url(&headers);
    let link = |c: &Option<String>| c.as_ref().map(|c| page_link(&base, &req, c));
    let pagination = Pagination {
        next: link(&next_cursor),
        prev: link(&prev_cursor),
        next_cursor,
        prev_cursor,
        limit: req.limit,
    };
    // About 370 bytes per reading in JSON; a little spare avoids a final grow.
    let size_hint = 512 + page.readings.len() * 400;
    Ok(success_sized(
        StatusCode::OK,
        ReadingsPage {
            readings: page.readings.iter().map(ReadingView::from).collect(),
            pagination,
        },
        size_hint,
    ))
}

fn page_link(base: &str, req: &PageRequest, cursor: &str) -> String {
    let mut query = vec![];
    if let Some(s) = req.start {
        query.push(("startDate", s.to_rfc3339()));
    }
    if let Some(e) = req.end {
        query.push(("endDate", e.to_rfc3339()));
    }
    if req.order == Order::Desc {
        query.push(("order", "desc".to_owned()));
    }
    query.push(("limit", req.limit.to_string()));
    query.push(("cursor", cursor.to_owned()));
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("{base}/api/bg/{}?{query}", req.user_id)
}

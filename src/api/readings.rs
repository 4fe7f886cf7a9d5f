//! Reading endpoints: latest (with conditional GET), range with cursor paging, and
//! single or bulk writes with per-record outcomes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DurationRound, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorEnvelope};
use super::views::{success, success_sized, timestamp_ms, ReadingView};
use super::AppState;
use super::{cursor, docs};
use crate::domain::{FieldError, ReadingTime, StoredReading, UserId};
use crate::pipeline::{wire, RecordResult};
use crate::store::{fetch_page, DuplicateKind, Order, Outcome, PageRequest};

pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

/// The `{userId}` path segment, parsed; the request's log span is tagged with it.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = |e: FieldError| {
            ApiError::bad_request(format!("invalid user id in path: {}", e.message), vec![e])
        };
        // A segment that is not UTF-8 once percent-decoded is rejected by `Path`.
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid(FieldError::new("user_id", "is not valid UTF-8")))?;
        let user = UserId::parse(&raw).map_err(invalid)?;
        tracing::Span::current().record("user_id", user.as_str());
        Ok(Self(user))
    }
}

// ---------------------------------------------------------------- latest

/// The newest reading of a user.
#[utoipa::path(
    get, path = "/api/bg/{userId}/latest", tag = "readings",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("If-None-Match" = Option<String>, Header, description = "ETag from an earlier response")),
    responses(
        (status = 200, description = "The newest reading, with ETag, Last-Modified and Cache-Control", body = docs::LatestEnvelope),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 400, description = "Invalid user id", body = ErrorEnvelope),
        (status = 404, description = "No reading yet", body = ErrorEnvelope),
    )
)]
pub async fn latest(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reading = state
        .store
        .latest_reading(&user)
        .await?
        .ok_or_else(|| ApiError::NotFound("reading".into()))?;
    let etag = format!(
        "\"{}-{}\"",
        reading.reading.timestamp.unix_seconds(),
        reading.version
    );
    // HTTP dates have whole seconds: round up, so Last-Modified is never earlier
    // than the change it stands for.
    let last_modified = httpdate::fmt_http_date(
        (reading.updated_at + chrono::Duration::milliseconds(999))
            .duration_trunc(chrono::Duration::seconds(1))
            .unwrap_or(reading.updated_at)
            .into(),
    );
    let mut response = if not_modified(&headers, &etag, &reading) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        success(ReadingView::from(&reading)).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, header_value(&etag));
    h.insert(header::LAST_MODIFIED, header_value(&last_modified));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// RFC 9110 §13.1: If-None-Match wins over If-Modified-Since; weak comparison.
fn not_modified(headers: &HeaderMap, etag: &str, reading: &StoredReading) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|since| {
            let since: chrono::DateTime<Utc> = since.into();
            reading.updated_at <= since
        })
}

// ---------------------------------------------------------------- range

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

fn parse_date(name: &str, raw: &str) -> Result<ReadingTime, FieldError> {
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
    let params: RangeParams = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}"), vec![]))?;
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
    let limit = match params.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                format!("must be an integer in 1..={MAX_LIMIT}"),
            ));
            DEFAULT_LIMIT
        }
    };
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
    )
)]
pub async fn range(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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

// ---------------------------------------------------------------- write

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordOutcome {
    /// Position in the submitted `readings` array (0 for a single reading).
    pub index: usize,
    /// inserted, updated, duplicate or rejected.
    #[schema(example = "inserted")]
    pub outcome: &'static str,
    /// For duplicates: `identical`, or `sensor_precedence` when a stored CGM
    /// reading was kept over a manual one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Summary {
    pub received: usize,
    pub inserted: usize,
    pub updated: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    pub summary: Summary,
    pub results: Vec<RecordOutcome>,
}

/// Body of a bulk write: `{"readings":[...]}`. Documentation only: the handler
/// parses record by record so that one bad record cannot sink the batch.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BulkInput {
    readings: Vec<wire::ReadingInput>,
}

/// Stores one reading, or many at once (`{"readings":[...]}`).
#[utoipa::path(
    post, path = "/api/bg/{userId}/readings", tag = "readings",
    params(("userId" = String, Path, description = "1-64 of [A-Za-z0-9_-]", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    request_body(content = wire::ReadingInput, description = "One reading, or a BulkInput {\"readings\":[...]} with up to MAX_BATCH_RECORDS readings"),
    responses(
        (status = 201, description = "Stored. A single reading answers with its outcome (data is a RecordOutcome); a bulk write with a summary and one outcome per record (data is a BulkResult); valid records are stored even when others are rejected", body = docs::WriteEnvelope),
        (status = 400, description = "Unparseable JSON or invalid user id", body = ErrorEnvelope),
        (status = 413, description = "Body or batch too large", body = ErrorEnvelope),
        (status = 422, description = "A single reading that is invalid", body = ErrorEnvelope),
    )
)]
pub async fn write(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "request body is larger than {} bytes",
                state.limits.max_body_bytes
            )
        } else {
            rejection.body_text()
        };
        ApiError::Validation {
            status,
            message,
            errors: vec![],
        }
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8", vec![]))?;
    let object: BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| {
        let message = if e.is_data() {
            "request body must be a JSON object".to_owned()
        } else {
            format!("malformed JSON: {e}")
        };
        ApiError::bad_request(message, vec![])
    })?;

    if let Some(records) = object.get("readings") {
        if let Some(extra) = object.keys().find(|k| k.as_str() != "readings") {
            return Err(ApiError::unprocessable(
                format!("unknown field {extra:?} next to \"readings\""),
                vec![FieldError::new(&format!("/{extra}"), "unknown field")],
            ));
        }
        let records: Vec<&RawValue> = serde_json::from_str(records.get()).map_err(|_| {
            ApiError::unprocessable(
                "\"readings\" must be an array",
                vec![FieldError::new("/readings", "must be an array")],
            )
        })?;
        if records.len() > state.limits.max_batch_records {
            return Err(ApiError::Validation {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "a batch holds at most {} readings; split it",
                    state.limits.max_batch_records
                ),
                errors: vec![FieldError::new("/readings", "too many records")],
            });
        }
        let parsed = records
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                wire::parse_record(raw.get(), &user).map_err(|errors| {
                    let parent = format!("/readings/{i}");
                    errors.into_iter().map(|e| e.within(&parent)).collect()
                })
            })
            .collect();
        let results = state.pipeline.ingest(parsed).await?;
        let mut summary = Summary {
            received: results.len(),
            ..Summary::default()
        };
        let results: Vec<_> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let outcome = record_outcome(i, r);
                match outcome.outcome {
                    "inserted" => summary.inserted += 1,
                    "updated" => summary.updated += 1,
                    "duplicate" => summary.duplicates += 1,
                    _ => summary.rejected += 1,
                }
                outcome
            })
            .collect();
        return Ok((
            StatusCode::CREATED,
            success(BulkResult { summary, results }),
        )
            .into_response());
    }

    let parsed = wire::parse_record(text, &user);
    let result = state
        .pipeline
        .ingest(vec![parsed])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("pipeline returned no result".into()))?;
    match result {
        RecordResult::Rejected(errors) => Err(ApiError::unprocessable(summarize(&errors), errors)),
        stored => Ok((StatusCode::CREATED, success(record_outcome(0, stored))).into_response()),
    }
}

fn summarize(errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("invalid reading: {one}"),
        many => format!("invalid reading: {} problems", many.len()),
    }
}

fn record_outcome(index: usize, result: RecordResult) -> RecordOutcome {
    match result {
        RecordResult::Stored(timestamp, u) => RecordOutcome {
            index,
            outcome: u.outcome.as_str(),
            reason: match u.outcome {
                Outcome::Duplicate(DuplicateKind::Identical) => Some("identical"),
                Outcome::Duplicate(DuplicateKind::SensorPrecedence) => Some("sensor_precedence"),
                _ => None,
            },
            timestamp: Some(timestamp.to_rfc3339()),
            version: Some(u.version),
            updated_at: Some(timestamp_ms(u.updated_at)),
            error: None,
        },
        RecordResult::Rejected(errors) => RecordOutcome {
            index,
            outcome: "rejected",
            reason: None,
            timestamp: None,
            version: None,
            updated_at: None,
            error: Some(ApiError::unprocessable(summarize(&errors), errors).body()),
        },
    }
}

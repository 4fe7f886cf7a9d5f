//! `GET /api/bg/{userId}`: a time range, paged with opaque cursors and absolute links.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::UserPath;
use crate::api::access::{authorize, Caller};
use crate::api::error::{query_params, ApiError, ErrorEnvelope};
use crate::api::views::{encode_reading, ReadingView};
use crate::api::AppState;
use crate::api::{cursor, docs};
use crate::domain::{FieldError, ReadingTime, UserId};
use crate::records::audit::Action;
use crate::store::query::fetch_page_encoded;
use crate::store::{Order, PageRequest, Seek};

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

/// How a range route names its bounds (each with an alias) and where its page
/// links point; the paging itself is the same on every such route.
#[derive(Debug, Clone, Copy)]
pub struct RangeNames {
    /// The inclusive start and its alias.
    pub start: (&'static str, &'static str),
    /// The exclusive end and its alias.
    pub end: (&'static str, &'static str),
}

/// `GET /api/bg/{userId}`'s names.
const BG_NAMES: RangeNames = RangeNames {
    start: ("startDate", "from"),
    end: ("endDate", "to"),
};

/// A range query's raw values, under whichever names the route gives the bounds.
#[derive(Debug, Default)]
pub struct RawRange {
    /// The start under its name and under its alias.
    pub start: (Option<String>, Option<String>),
    pub end: (Option<String>, Option<String>),
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

/// Parses and checks a range query, collecting every problem.
pub fn page_request(
    user: UserId,
    raw: RawRange,
    names: RangeNames,
) -> Result<PageRequest, ApiError> {
    let mut errors = Vec::new();
    let start = either((names.start.0, raw.start.0), (names.start.1, raw.start.1))
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let end = either((names.end.0, raw.end.0), (names.end.1, raw.end.1))
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            errors.push(FieldError::new(
                names.end.0,
                format!("must be after {}", names.start.0),
            ));
        }
    }
    let limit = crate::api::cursor::page_limit(raw.limit.as_deref(), &mut errors);
    let order = match raw.order.as_deref().map(str::to_ascii_lowercase).as_deref() {
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
    if let Some(raw) = raw.cursor.as_deref() {
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
    let params: RangeParams = query_params(query.as_deref())?;
    let raw = RawRange {
        start: (params.start_date, params.from),
        end: (params.end_date, params.to),
        limit: params.limit,
        cursor: params.cursor,
        order: params.order,
    };
    let req = page_request(user, raw, BG_NAMES)?;
    let link_path = format!("/api/bg/{}", req.user_id);
    read_page(&state, &req, &headers, &link_path, BG_NAMES).await
}

/// One page of `req` with its cursors and links to `link_path` (after
/// authorization): the body every range route answers with.
pub async fn read_page(
    state: &AppState,
    req: &PageRequest,
    headers: &HeaderMap,
    link_path: &str,
    names: RangeNames,
) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(body_capacity(req));
    body.extend_from_slice(PAGE_PREFIX);
    let page = fetch_page_encoded(state.store.as_ref(), req, encode_reading, body).await?;
    let links = Links {
        base: &state.base_url(headers),
        path: link_path,
        names,
    };
    let pagination = pagination(&links, req, page.next, page.prev);
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        page_body(page.bytes, &pagination)?,
    )
        .into_response())
}

// The page's envelope is written by hand around readings that the store encodes
// as it reads them (`encode_reading`), byte for byte what serializing
// `Success { data: ReadingsPage }` gives (the tests below hold the two together).
const PAGE_PREFIX: &[u8] = br#"{"status":"success","data":{"readings":["#;

/// About 370 bytes per reading: sized for a day at 5-minute resolution (288), so
/// that the common page never grows its buffer; larger pages grow.
fn body_capacity(req: &PageRequest) -> usize {
    512 + req.limit.min(300) * 400
}

/// Closes the envelope after the encoded readings (which follow `PAGE_PREFIX`).
fn page_body(mut body: Vec<u8>, pagination: &Pagination) -> Result<Vec<u8>, ApiError> {
    body.extend_from_slice(br#"],"pagination":"#);
    serde_json::to_writer(&mut body, pagination)
        .map_err(|e| ApiError::Internal(format!("serializing a response: {e}")))?;
    body.extend_from_slice(b"}}");
    Ok(body)
}

/// Where a page's links point.
struct Links<'a> {
    /// Scheme and authority.
    base: &'a str,
    path: &'a str,
    names: RangeNames,
}

fn pagination(
    links: &Links,
    req: &PageRequest,
    next: Option<Seek>,
    prev: Option<Seek>,
) -> Pagination {
    let fp = cursor::fingerprint(req);
    let next_cursor = next.map(|s| cursor::encode(s, fp));
    let prev_cursor = prev.map(|s| cursor::encode(s, fp));
    let link = |c: &Option<String>| c.as_ref().map(|c| page_link(links, req, c));
    Pagination {
        next: link(&next_cursor),
        prev: link(&prev_cursor),
        next_cursor,
        prev_cursor,
        limit: req.limit,
    }
}

fn page_link(links: &Links, req: &PageRequest, cursor: &str) -> String {
    let mut query = vec![];
    if let Some(s) = req.start {
        query.push((links.names.start.0, s.to_rfc3339()));
    }
    if let Some(e) = req.end {
        query.push((links.names.end.0, e.to_rfc3339()));
    }
    if req.order == Order::Desc {
        query.push(("order", "desc".to_owned()));
    }
    query.push(("limit", req.limit.to_string()));
    query.push(("cursor", cursor.to_owned()));
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("{}{}?{query}", links.base, links.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::views::Success;
    use crate::config::Durability;
    use crate::domain::{
        DeviceInfo, Glucose, MgDl, Reading, ReadingType, SensorStatus, Source, Trend, TrendRate,
    };
    use crate::store::sqlite::SqliteStore;
    use crate::store::{fetch_page, ReadingStore};

    /// The body as it was before the range path encoded rows itself: the page's
    /// `StoredReading`s, their views, and serde over the whole envelope.
    fn serde_body(readings: &[crate::domain::StoredReading], pagination: Pagination) -> Vec<u8> {
        serde_json::to_vec(&Success {
            status: "success",
            data: ReadingsPage {
                readings: readings.iter().map(ReadingView::from).collect(),
                pagination,
            },
        })
        .unwrap()
    }

    fn reading(user: &UserId, i: i64) -> Reading {
        let device = |s: &str| (i % 4 != 0).then(|| format!("{s}-{i}"));
        Reading {
            user_id: user.clone(),
            timestamp: ReadingTime::from_unix_seconds(1_700_000_000 + i * 300).unwrap(),
            glucose: match i % 7 {
                3 => Glucose::out_of_range(SensorStatus::Low),
                5 => Glucose::out_of_range(SensorStatus::High),
                _ => Glucose::value(MgDl::new(60 + (i * 13 % 300) as u16).unwrap()),
            },
            trend: (i % 5 != 0).then(|| Trend::ALL[i as usize % 10]),
            trend_rate: (i % 3 != 0).then(|| TrendRate::new(i as f64 / 7.0 - 3.0).unwrap()),
            device: DeviceInfo::parse(
                device("G7"),
                (i % 2 == 0).then(|| "S\"N\\".into()),
                device("TX"),
            )
            .unwrap(),
            reading_type: if i % 6 == 0 {
                ReadingType::Manual
            } else {
                ReadingType::Cgm
            },
            source: if i % 6 == 0 {
                Source::manual()
            } else {
                Source::parse("nightscout-x").unwrap()
            },
            source_record_id: (i % 2 == 1).then(|| format!("rec \"{i}\"\n\u{1}é")),
            display_offset_minutes: (i % 4 == 1).then_some(-330),
        }
    }

    /// Every page of a range, in both orders and both directions, is byte for
    /// byte the body the serde path writes for the same page.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn encoded_pages_are_byte_for_byte_the_serde_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db"), Durability::Normal).unwrap();
        let user = UserId::parse("page-user").unwrap();
        store
            .upsert_readings((0..40).map(|i| reading(&user, i)).collect())
            .await
            .unwrap();
        // A second version of some readings (version 2, created_at != updated_at).
        let mut again: Vec<Reading> = (0..40).step_by(9).map(|i| reading(&user, i)).collect();
        for r in &mut again {
            r.glucose = Glucose::value(MgDl::new(222).unwrap());
        }
        store.upsert_readings(again).await.unwrap();

        let path = format!("/api/bg/{user}");
        let base = Links {
            base: "http://h:1",
            path: &path,
            names: BG_NAMES,
        };
        let base = &base;
        let mut pages = 0;
        for order in [Order::Asc, Order::Desc] {
            for limit in [1, 7, 40, 1000] {
                let mut req = PageRequest {
                    user_id: user.clone(),
                    start: ReadingTime::from_unix_seconds(1_700_000_000 + 300),
                    end: ReadingTime::from_unix_seconds(1_700_000_000 + 39 * 300),
                    order,
                    limit,
                    seek: None,
                };
                // Forward to the end, then back to the start with `prev`.
                let mut forward = true;
                loop {
                    let old = fetch_page(&store, &req).await.unwrap();
                    let mut prefix = Vec::with_capacity(body_capacity(&req));
                    prefix.extend_from_slice(PAGE_PREFIX);
                    let new = fetch_page_encoded(&store, &req, encode_reading, prefix)
                        .await
                        .unwrap();
                    assert_eq!(
                        (new.next, new.prev, new.count),
                        (old.next, old.prev, old.readings.len())
                    );
                    let want =
                        serde_body(&old.readings, pagination(base, &req, old.next, old.prev));
                    let got =
                        page_body(new.bytes, &pagination(base, &req, new.next, new.prev)).unwrap();
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        String::from_utf8(want).unwrap()
                    );
                    pages += 1;
                    req.seek = match (forward, old.next, old.prev) {
                        (true, Some(next), _) => Some(next),
                        (true, None, Some(prev)) => {
                            forward = false;
                            Some(prev)
                        }
                        (false, _, Some(prev)) => Some(prev),
                        _ => break,
                    };
                }
            }
        }
        assert!(pages > 80, "{pages} pages compared");
    }
}

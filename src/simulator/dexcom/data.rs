//! Dexcom's data endpoints (`/v3|v2/users/self/egvs`, `dataRange`, `devices`):
//! faults, bearer check, query validation, then records from the sim user.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::faults::DataFault;
use super::records;
use super::reply::{data_error, json_bytes, json_value};
use super::stats::Counter;
use super::time::parse_lenient;
use super::users::SimUser;
use super::DexcomSimulator;

/// API version of a data route: v3 envelopes with offsets, or v2 without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
}

pub(super) async fn egvs_v3(sim: State<DexcomSimulator>, h: HeaderMap, q: RawQuery) -> Response {
    egvs(&sim, &h, q.0, Version::V3).await
}

pub(super) async fn egvs_v2(sim: State<DexcomSimulator>, h: HeaderMap, q: RawQuery) -> Response {
    egvs(&sim, &h, q.0, Version::V2).await
}

pub(super) async fn data_range_v3(
    sim: State<DexcomSimulator>,
    h: HeaderMap,
    q: RawQuery,
) -> Response {
    data_range(&sim, &h, q.0, Version::V3).await
}

pub(super) async fn data_range_v2(
    sim: State<DexcomSimulator>,
    h: HeaderMap,
    q: RawQuery,
) -> Response {
    data_range(&sim, &h, q.0, Version::V2).await
}

pub(super) async fn devices_v3(sim: State<DexcomSimulator>, h: HeaderMap) -> Response {
    devices(&sim, &h, Version::V3).await
}

pub(super) async fn devices_v2(sim: State<DexcomSimulator>, h: HeaderMap) -> Response {
    devices(&sim, &h, Version::V2).await
}

/// EGVs with `systemTime` in [startDate, endDate] — both ends inclusive —
/// that are already visible (time + data_delay <= now) and not before the
/// user's history start, ascending.
async fn egvs(
    sim: &DexcomSimulator,
    headers: &HeaderMap,
    query: Option<String>,
    v: Version,
) -> Response {
    let user = match gate(sim, headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    sim.bump(Counter::Egvs);
    let Some(params) = parse_query(query.as_deref()) else {
        return bad_request("The query string is not valid URL encoding.");
    };
    let date = |k: &str| params.get(k).and_then(|s| parse_lenient(s));
    let (Some(start), Some(end)) = (date("startDate"), date("endDate")) else {
        return bad_request("startDate and endDate are required, as YYYY-MM-DDThh:mm:ss.");
    };
    if end < start {
        return bad_request("endDate must not be before startDate.");
    }
    let max_days = sim.inner.config.max_window_days;
    if end - start > TimeDelta::try_days(max_days).unwrap_or(TimeDelta::MAX) {
        let why =
            format!("The window between startDate and endDate must not exceed {max_days} days.");
        return bad_request(&why);
    }
    let from = start.max(sim.history_start());
    let to = end.min(sim.visible_until_for(&user.name, Utc::now()));
    let samples = user.samples_inclusive(from, to);
    let style = sim.style();
    let body = match v {
        Version::V3 => records::egvs_v3(&user, style, &samples),
        Version::V2 => records::egvs_v2(&user, style, &samples),
    };
    json_bytes(StatusCode::OK, body)
}

/// The first and newest visible reading. With `lastSyncTime`, the `egvs`
/// block is left out unless a visible reading is newer than it. Calibrations
/// and events are never simulated, so their blocks are always absent.
async fn data_range(
    sim: &DexcomSimulator,
    headers: &HeaderMap,
    query: Option<String>,
    v: Version,
) -> Response {
    let user = match gate(sim, headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    sim.bump(Counter::DataRange);
    let Some(params) = parse_query(query.as_deref()) else {
        return bad_request("The query string is not valid URL encoding.");
    };
    let last_sync = match params.get("lastSyncTime").map(|s| parse_lenient(s)) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return bad_request("lastSyncTime is not a date."),
    };
    let style = sim.style();
    let until = sim.visible_until_for(&user.name, Utc::now());
    let floor = sim.history_start();
    let first = user.first_at_or_after(floor, until);
    let last = user.last_at_or_before(until, floor);
    let times = |t: DateTime<Utc>| match v {
        Version::V3 => records::times_v3(&user, style, t),
        Version::V2 => records::times_v2(&user, t),
    };
    let egvs = match (first, last) {
        (Some(f), Some(l)) if last_sync.is_none_or(|s| l.timestamp > s) => {
            Some(records::range_block(times(f.timestamp), times(l.timestamp)))
        }
        _ => None,
    };
    let mut body = match v {
        Version::V3 => json!({
            "recordType": "dataRange",
            "recordVersion": "3.0",
            "userId": user.user_id,
        }),
        Version::V2 => json!({}),
    };
    if let (Some(block), Some(map)) = (egvs, body.as_object_mut()) {
        map.insert("egvs".to_owned(), block);
    }
    json_value(StatusCode::OK, &body)
}

/// One display device; `lastUploadDate` is the newest visible reading.
async fn devices(sim: &DexcomSimulator, headers: &HeaderMap, v: Version) -> Response {
    let user = match gate(sim, headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    sim.bump(Counter::Devices);
    let style = sim.style();
    let until = sim.visible_until_for(&user.name, Utc::now());
    let last = user
        .last_at_or_before(until, sim.history_start())
        .map_or(until, |s| s.timestamp);
    let body: Value = match v {
        Version::V3 => {
            let upload = records::times_v3(&user, style, last).system_time;
            json!({
                "recordType": "device",
                "recordVersion": "3.0",
                "userId": user.user_id,
                "records": [records::device(&user, style, upload, false)],
            })
        }
        Version::V2 => {
            let upload = records::times_v2(&user, last).system_time;
            json!({ "devices": [records::device(&user, style, upload, true)] })
        }
    };
    json_value(StatusCode::OK, &body)
}

/// Slowness, then injected faults, then the bearer token: the sim user, or
/// the response to give instead.
async fn gate(sim: &DexcomSimulator, headers: &HeaderMap) -> Result<SimUser, Response> {
    sim.bump(Counter::DataRequests);
    let delay = sim.inner.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match sim.inner.faults.take_data_fault() {
        Some(DataFault::RateLimited {
            retry_after_seconds,
        }) => {
            sim.bump(Counter::RateLimited);
            let mut r = data_error(
                StatusCode::TOO_MANY_REQUESTS,
                "policies.ratelimit.QuotaViolation",
                "Rate limit quota violation. Quota limit exceeded.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            return Err(r);
        }
        Some(DataFault::ServerError) => {
            sim.bump(Counter::ServerErrors);
            return Err(data_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "messaging.adaptors.http.flow.ServiceUnavailable",
                "The Service is temporarily unavailable",
            ));
        }
        None => {}
    }
    let name = bearer(headers).and_then(|t| sim.tokens().user_of(t).map(str::to_owned));
    match name {
        Some(name) => Ok(SimUser::resolve(&name, &sim.inner.config.client_id)),
        None => {
            sim.bump(Counter::Unauthorized);
            let mut r = data_error(
                StatusCode::UNAUTHORIZED,
                "keymanagement.service.invalid_access_token",
                "Invalid access token",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            Err(r)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The query's parameters (for duplicates, the last wins).
fn parse_query(raw: Option<&str>) -> Option<HashMap<String, String>> {
    serde_urlencoded::from_str(raw.unwrap_or_default()).ok()
}

fn bad_request(why: &str) -> Response {
    data_error(StatusCode::BAD_REQUEST, "invalid_request", why)
}

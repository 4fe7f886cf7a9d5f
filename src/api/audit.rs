//! `GET /api/audit`: the audit trail, for admins, filtered by user and time,
//! paged by an opaque cursor.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{authorize, Caller};
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::views::success;
use super::AppState;
use crate::domain::{FieldError, UserId};
use crate::records::audit::Action;
use crate::records::audit::{AuditQuery, AuditRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    user_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub at: DateTime<Utc>,
    /// Who: the caller's user id.
    pub actor: String,
    pub actor_roles: Vec<&'static str>,
    /// What, e.g. read_readings, manage_shares.
    pub action: &'static str,
    /// On whose data.
    pub target_user: String,
    /// allowed or denied.
    pub decision: &'static str,
    /// The HTTP status the request ended with.
    pub status: u16,
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

fn parse(query: Option<&str>) -> Result<AuditQuery, ApiError> {
    let p: Params = query_params(query)?;
    let mut errors = Vec::new();
    let target_user = p
        .user_id
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    let mut time = |name: &'static str, raw: Option<String>| {
        raw.map(|r| DateTime::parse_from_rfc3339(&r).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|_| errors.push(FieldError::new(name, "must be an RFC 3339 date-time")))
            .ok()
            .flatten()
    };
    let from = time("from", p.from);
    let until = time("to", p.to);
    let after_seq = match p.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(seq)) => Some(seq),
        Some(None) => {
            errors.push(FieldError::new(
                "cursor",
                "is not a cursor from this endpoint",
            ));
            None
        }
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        errors.push(FieldError::new("limit", "must be 1-1000"));
    }
    if !errors.is_empty() {
        return Err(ApiError::bad_request("invalid audit query", errors));
    }
    Ok(AuditQuery {
        target_user,
        from,
        until,
        after_seq,
        limit,
    })
}

fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{seq}"))
}

fn decode_cursor(raw: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("audit:")?
        .parse()
        .ok()
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> Self {
        let e = r.entry;
        Self {
            at: e.at,
            actor: e.actor.to_string(),
            actor_roles: e.actor_roles.iter().map(|r| r.as_str()).collect(),
            action: e.action,
            target_user: e.target_user.to_string(),
            decision: e.decision,
            status: e.status,
            request_id: e.request_id,
        }
    }
}

/// Who accessed or changed what, when, with which outcome (admins only).
#[utoipa::path(
    get, path = "/api/audit", tag = "operations",
    params(
        ("user_id" = Option<String>, Query, description = "Whose data", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
        ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1-1000, default 100", minimum = 1, maximum = 1000),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Entries, oldest first", body = super::docs::AuditEnvelope),
        (status = 400, description = "Invalid query", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let own = caller.principal.user_id.clone();
    authorize(&state, &caller, Action::ReadAudit, &own).await?;
    let query = parse(query.as_deref())?;
    let limit = query.limit;
    let records = state.store.query_audit(query).await?;
    let next_cursor = (records.len() == limit)
        .then(|| records.last().map(|r| encode_cursor(r.seq)))
        .flatten();
    let entries = records.into_iter().map(AuditView::from).collect();
    Ok(success(AuditPage {
        entries,
        next_cursor,
    })
    .into_response())
}

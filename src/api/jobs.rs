//! Sync jobs over HTTP: `POST /api/bg/{userId}/sync` queues one (202; the same
//! `Idempotency-Key` returns the same job, and so does the same request while
//! its job is still queued; a user's queue is capped), `GET /api/jobs/{jobId}` reports it,
//! `GET /api/users/{userId}/jobs` lists a user's latest ones.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::{authorize, Caller};
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::readings::{parse_date, UserPath};
use super::views::{success, JobCountsView};
use super::AppState;
use crate::digest::sha256_hex;
use crate::domain::{FieldError, UserId};
use crate::records::audit::Action;
use crate::records::connections::Provider;
use crate::records::jobs::{Created, Idempotency, NewJob, SyncJob, TimeRange, Trigger};
use crate::sync::provider::{provider_name, sync_target, SyncTarget};

/// The longest range one sync request may ask for.
const MAX_RANGE_DAYS: i64 = 3650;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Retry-After for a sync refused because the user's queue is full: about
/// how long a few queued jobs take to run.
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 60;

#[derive(Debug, Serialize, ToSchema)]
pub struct RangeView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl From<TimeRange> for RangeView {
    fn from(r: TimeRange) -> Self {
        Self {
            start: r.start,
            end: r.end,
        }
    }
}

/// A sync job as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: Uuid,
    #[schema(example = "user123")]
    pub user_id: String,
    #[schema(example = "dexcom")]
    pub provider: &'static str,
    /// scheduled, manual, backfill or webhook
    #[schema(example = "manual")]
    pub trigger: &'static str,
    /// queued, running, succeeded or failed
    #[schema(example = "queued")]
    pub status: &'static str,
    /// The range asked for; null for an incremental sync (from the last
    /// reading synced, minus the overlap window).
    pub requested_range: Option<RangeView>,
    /// The range being fetched, once the job has started (clipped to the data
    /// source holds).
    pub range: Option<RangeView>,
    pub counts: JobCountsView,
    /// Runs so far (a passing failure is retried with backoff).
    pub attempts: u32,
    /// One message per failed run, oldest first.
    pub errors: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From the first start to the finish.
    pub duration_ms: Option<i64>,
}

impl From<SyncJob> for JobView {
    fn from(j: SyncJob) -> Self {
        Self {
            job_id: j.id,
            user_id: j.user_id.to_string(),
            provider: j.provider.as_str(),
            trigger: j.trigger.as_str(),
            status: j.status.as_str(),
            requested_range: j.requested.map(RangeView::from),
            range: j.resolved.map(RangeView::from),
            counts: j.counts.into(),
            attempts: j.attempts,
            errors: j.errors,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            duration_ms: j
                .started_at
                .zip(j.finished_at)
                .map(|(s, f)| (f - s).num_milliseconds()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncQuery {
    #[serde(rename = "startDate")]
    start_date: Option<String>,
    #[serde(rename = "endDate")]
    end_date: Option<String>,
    provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
}

/// The requested range: none (incremental), or `startDate` (until now) with
/// an optional `endDate`; and the provider, if one is named.
pub(super) fn requested_range(
    query: Option<&str>,
) -> Result<(Option<TimeRange>, Option<Provider>), ApiError> {
    let q: SyncQuery = query_params(query)?;
    let range = sync_range(q.start_date.as_deref(), q.end_date.as_deref())?;
    let provider = q
        .provider
        .map(|raw| {
            Provider::parse(&raw).ok_or_else(|| FieldError::new("provider", "unknown provider"))
        })
        .transpose()?;
    Ok((range, provider))
}

/// The range of a manual sync from its `startDate` and `endDate` (both optional:
/// none means incremental; an end alone is refused), as the API and the operator
/// CLI (`cgm-hub sync`) accept them.
pub fn sync_range(start: Option<&str>, end: Option<&str>) -> Result<Option<TimeRange>, FieldError> {
    let start = start.map(|raw| parse_date("startDate", raw)).transpose()?;
    let end = end.map(|raw| parse_date("endDate", raw)).transpose()?;
    let (start, end) = match (start, end) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(FieldError::new("startDate", "is required with endDate")),
        (Some(start), end) => (
            start.as_datetime(),
            end.map_or_else(Utc::now, |e| e.as_datetime()),
        ),
    };
    if start >= end {
        return Err(FieldError::new(
            "endDate",
            "must be after startDate (and startDate in the past)",
        ));
    }
    if end - start > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(FieldError::new(
            "startDate",
            format!("a sync may span at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok(Some(TimeRange { start, end }))
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            vec![FieldError::new("Idempotency-Key", "invalid")],
        )
    })
}

fn request_hash(range: Option<TimeRange>, provider: Provider) -> String {
    let mut described = match range {
        None => "incremental".to_owned(),
        Some(r) => format!("{}/{}", r.start.timestamp(), r.end.timestamp()),
    };
    // Dexcom's requests hash as they did before there were other sources.
    if provider != Provider::Dexcom {
        described = format!("{described}@{provider}");
    }
    sha256_hex(described.as_bytes())
}

/// Queues a sync of the user's data from a source: `provider` if named, else
/// the one configured source the user has a working connection to.
#[utoipa::path(
    post, path = "/api/bg/{userId}/sync", tag = "sync",
    params(
        ("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("startDate" = Option<String>, Query, description = "Inclusive; YYYY-MM-DD or RFC 3339. Without it: an incremental sync from the last reading synced, minus the overlap window"),
        ("endDate" = Option<String>, Query, description = "Exclusive; default now. Needs startDate"),
        ("provider" = Option<String>, Query, description = "The source to sync from (dexcom); default: the one the user has a working connection to"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key (per user) returns the same job; reused with a different range: 422"),
    ),
    responses(
        (status = 202, description = "Queued; or the job already queued for the same request (same trigger and range, not yet started); or, for a known Idempotency-Key, the job it created", body = super::docs::JobEnvelope),
        (status = 400, description = "Invalid user id, dates, key or provider; or several working connections and no provider named", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 409, description = "The user has no working Dexcom connection", body = ErrorEnvelope),
        (status = 422, description = "The Idempotency-Key was used with a different request", body = ErrorEnvelope),
        (status = 429, description = "The user already has SYNC_MAX_QUEUED_JOBS_PER_USER jobs queued (Retry-After says when to try again)", body = ErrorEnvelope),
        (status = 503, description = "Dexcom is not configured", body = ErrorEnvelope),
    )
)]
pub async fn sync(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::Sync, &user).await?;
    let (range, asked) = requested_range(query.as_deref())?;
    queue_sync(&state, &user, range, asked, &headers).await
}

/// Queues a manual sync of `user`'s data (the caller has been authorized for
/// `Action::Sync`): from `asked` if named, else the one source the user has a
/// working connection to; 202 with the job, `Location` and, for a replayed
/// `Idempotency-Key`, `Idempotent-Replayed`.
pub(super) async fn queue_sync(
    state: &AppState,
    user: &UserId,
    range: Option<TimeRange>,
    asked: Option<Provider>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?;
    let engine = state.sync_engine()?;
    let registered = engine.sources().providers();
    if let Some(p) = asked.filter(|p| !registered.contains(p)) {
        return Err(ApiError::Unavailable(format!(
            "{} is not configured on this service",
            provider_name(p)
        )));
    }
    let provider = match sync_target(state.store.as_ref(), user, asked, &registered).await? {
        SyncTarget::Ready(provider) => provider,
        SyncTarget::NotSyncable(reason) => {
            return Err(ApiError::Conflict(format!(
                "{reason}; connect through /oauth/authorize first"
            )))
        }
        SyncTarget::Ambiguous(reason) => {
            return Err(ApiError::bad_request(
                reason,
                vec![FieldError::new(
                    "provider",
                    "required: several sources are connected",
                )],
            ))
        }
    };
    let mut job = NewJob::new(user.clone(), provider, Trigger::Manual, range, Utc::now());
    job.idempotency = key.map(|key| Idempotency {
        key,
        request_hash: request_hash(range, provider),
    });
    let (job, replayed) = match engine.submit_requested(job).await? {
        Created::New(job) | Created::Queued(job) => (job, false),
        Created::Existing(job) => (job, true),
        Created::KeyReused(_) => {
            return Err(ApiError::unprocessable(
                "this Idempotency-Key was used for a different sync request",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "already used with another range",
                )],
            ))
        }
        Created::QueueFull { max_queued } => {
            return Err(ApiError::QuotaExceeded {
                retry_after: QUEUE_FULL_RETRY_AFTER_SECS,
                message: format!(
                    "{user} already has {max_queued} sync jobs queued \
                     (SYNC_MAX_QUEUED_JOBS_PER_USER); retry when some have run"
                ),
            })
        }
        Created::Coalesced => return Err(ApiError::Internal("a manual sync was coalesced".into())),
    };
    let location = format!("/api/jobs/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, success(JobView::from(job))).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// One sync job: status, counts, errors and timings.
#[utoipa::path(
    get, path = "/api/jobs/{jobId}", tag = "sync",
    params(("jobId" = String, Path, description = "The job's UUID")),
    responses(
        (status = 200, description = "The job", body = super::docs::JobEnvelope),
        (status = 400, description = "Not a job id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "The job belongs to a user the caller may not see", body = ErrorEnvelope),
        (status = 404, description = "No such job", body = ErrorEnvelope),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    caller: Caller,
) -> Result<axum::Json<super::views::Success<JobView>>, ApiError> {
    let id =
        Uuid::parse_str(&raw).map_err(|_| FieldError::new("jobId", "is not a job id (a UUID)"))?;
    let job = state
        .store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("job".into()))?;
    authorize(&state, &caller, Action::ReadJobs, &job.user_id).await?;
    Ok(success(JobView::from(job)))
}

/// A user's most recent sync jobs (scheduled ones included), newest first.
#[utoipa::path(
    get, path = "/api/users/{userId}/jobs", tag = "sync",
    params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
           ("limit" = Option<u32>, Query, description = "1–100, default 20")),
    responses(
        (status = 200, description = "Jobs, newest first", body = super::docs::JobListEnvelope),
        (status = 400, description = "Invalid user id or limit", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<super::views::Success<JobList>>, ApiError> {
    authorize(&state, &caller, Action::ReadJobs, &user).await?;
    let q: ListQuery = query_params(query.as_deref())?;
    let limit = match q.limit {
        None => 20,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 100"))?,
    };
    let jobs = state.store.list_jobs(&user, limit).await?;
    Ok(success(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

//! The health journal over HTTP (contract: "Journal: meals, sleep,
//! activities"): for each kind, create (idempotent by `external_id`), list a
//! time window with cursors, get, partial update (a JSON merge patch, the
//! result validated as a whole) and delete. Bodies are parsed once into the
//! domain types (`domain::journal`); the store keeps them and announces each
//! change on the bus.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::access::{authorize, Caller};
use super::body::RawBody;
use super::cursor;
use super::error::{query_params, ApiError, ErrorEnvelope};
use super::readings::{parse_date, path_user, UserPath};
use super::views::success;
use super::AppState;
use crate::domain::{
    Activity, ActivityInput, FieldError, Meal, MealInput, SleepInput, SleepSession, TimePolicy,
    UserId,
};
use crate::pipeline::wire::json_pointer;
use crate::records::audit::Action;
use crate::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use crate::store::profile_or_default;

/// The path segment of a kind, and the key of its list.
pub fn plural(kind: JournalKind) -> &'static str {
    match kind {
        JournalKind::Meal => "meals",
        JournalKind::Sleep => "sleep",
        JournalKind::Activity => "activities",
    }
}

/// A body as `T`: malformed JSON is 400; a field of the wrong type, an
/// unknown field or a value outside an enum is 422 naming it by pointer.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let pointer = json_pointer(err.path());
        let message = err.into_inner().to_string();
        ApiError::unprocessable(
            format!("invalid entry: {pointer}: {message}"),
            vec![FieldError::new(&pointer, message)],
        )
    })
}

/// The body as a JSON object (400 otherwise).
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "request body must be a JSON object",
            vec![],
        )),
        Err(e) => Err(ApiError::bad_request(
            format!("malformed JSON: {e}"),
            vec![],
        )),
    }
}

fn invalid(kind: JournalKind, errors: Vec<FieldError>) -> ApiError {
    let what = kind.as_str();
    match errors.as_slice() {
        [one] => ApiError::unprocessable(format!("invalid {what}: {one}"), errors),
        many => ApiError::unprocessable(format!("invalid {what}: {} problems", many.len()), errors),
    }
}

/// Parses a whole entry of `kind`: its origin (`source`, `external_id`) and
/// its fields.
async fn parse_entry(
    state: &AppState,
    user: &UserId,
    kind: JournalKind,
    map: Map<String, Value>,
) -> Result<(crate::domain::EntryOrigin, JournalBody), ApiError> {
    let policy = TimePolicy::default();
    let now = Utc::now();
    let value = Value::Object(map);
    let (origin, body) = match kind {
        JournalKind::Meal => {
            let input: MealInput = typed(value)?;
            let origin = input.origin();
            (
                origin,
                Meal::parse(input, user.as_str(), &policy, now).map(JournalBody::Meal),
            )
        }
        JournalKind::Sleep => {
            let input: SleepInput = typed(value)?;
            let origin = input.origin();
            let tz = profile_or_default(state.store.as_ref(), user)
                .await?
                .timezone;
            (
                origin,
                SleepSession::parse(input, user.as_str(), tz, &policy, now).map(JournalBody::Sleep),
            )
        }
        JournalKind::Activity => {
            let input: ActivityInput = typed(value)?;
            let origin = input.origin();
            (
                origin,
                Activity::parse(input, user.as_str(), &policy, now).map(JournalBody::Activity),
            )
        }
    };
    let mut errors = Vec::new();
    let origin = origin.parse().map_err(|e| errors.extend(e)).ok();
    let body = body.map_err(|e| errors.extend(e)).ok();
    match (origin, body) {
        (Some(origin), Some(body)) if errors.is_empty() => Ok((origin, body)),
        _ => Err(invalid(kind, errors)),
    }
}

fn item(entry: &JournalEntry) -> Value {
    Value::Object(entry.item())
}

pub(super) async fn create(
    state: AppState,
    user: UserId,
    caller: Caller,
    body: RawBody,
    kind: JournalKind,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::WriteJournal, &user).await?;
    let map = object(&body.0)?;
    let (origin, body) = parse_entry(&state, &user, kind, map).await?;
    let entry = JournalEntry::new(user, origin.source, origin.external_id, body, Utc::now());
    match state.store.create_journal_entry(entry).await? {
        JournalCreated::Created(entry) => {
            tracing::info!(user_id = %entry.user_id, kind = kind.as_str(), id = %entry.id, "journal entry stored");
            Ok((StatusCode::CREATED, success(item(&entry))).into_response())
        }
        JournalCreated::Existing(entry) => Ok(success(item(&entry)).into_response()),
    }
}

/// Query parameters of a journal list. Unknown parameters are rejected.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JournalListParams {
    /// Inclusive (by `timestamp`, for sleep by `sleep_start`): RFC 3339 or YYYY-MM-DD (midnight UTC).
    #[serde(rename = "startDate")]
    #[param(rename = "startDate")]
    start_date: Option<String>,
    /// Exclusive: RFC 3339 or YYYY-MM-DD.
    #[serde(rename = "endDate")]
    #[param(rename = "endDate")]
    end_date: Option<String>,
    /// 1-1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Opaque cursor from `pagination.next_cursor`.
    cursor: Option<String>,
    /// `asc` (default, oldest first) or `desc`.
    #[param(value_type = Option<super::readings::OrderName>)]
    order: Option<String>,
    /// Meals only: `response` adds each meal's glucose response (as
    /// `GET .../meals/{id}/response` answers it) under `response`.
    #[param(value_type = Option<String>, pattern = "^response$")]
    include: Option<String>,
}

/// Where the next page starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalPagination {
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Absolute URL of the next page; null on the last.
    pub next: Option<String>,
    pub limit: usize,
}

async fn list(
    state: AppState,
    user: UserId,
    caller: Caller,
    query: Option<String>,
    headers: HeaderMap,
    kind: JournalKind,
) -> Result<Response, ApiError> {
    authorize(&state, &caller, Action::ReadJournal, &user).await?;
    let params: JournalListParams = query_params(query.as_deref())?;
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
    if let (Some(f), Some(u)) = (from, until) {
        if f >= u {
            errors.push(FieldError::new("endDate", "must be after startDate"));
        }
    }
    let descending = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            errors.push(FieldError::new("order", "must be asc or desc"));
            false
        }
    };
    let include_response = match params.include.as_deref() {
        None => false,
        Some("response") if kind == JournalKind::Meal => true,
        Some(_) if kind == JournalKind::Meal => {
            errors.push(FieldError::new("include", "must be response"));
            false
        }
        Some(_) => {
            errors.push(FieldError::new("include", "only meals include a response"));
            false
        }
    };
    let limit = cursor::page_limit(params.limit.as_deref(), &mut errors);
    let key = |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| t.timestamp().to_string());
    let (from_key, until_key) = (key(from), key(until));
    let fingerprint = cursor::key_fingerprint(&[
        "journal",
        kind.as_str(),
        user.as_str(),
        &from_key,
        &until_key,
        if descending { "desc" } else { "asc" },
    ]);
    let after = match params.cursor.as_deref() {
        Some(raw) if errors.is_empty() => cursor::decode_key(raw, fingerprint)
            .and_then(|key| {
                let bad = || FieldError::new("/cursor", "invalid cursor");
                let (ms, id) = key.split_once('#').ok_or_else(bad)?;
                let at = ms
                    .parse::<i64>()
                    .ok()
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                    .ok_or_else(bad)?;
                let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
                Ok((at, id))
            })
            .map_err(|e| errors.push(e))
            .ok(),
        _ => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::bad_request("invalid query parameters", errors));
    }
    // One more than the page, to know whether another follows.
    let mut entries = state
        .store
        .list_journal_entries(JournalQuery {
            user_id: user.clone(),
            kind,
            from,
            until,
            descending,
            after,
            limit: limit + 1,
        })
        .await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = more.then(|| entries.last()).flatten().map(|last| {
        cursor::encode_key(
            &format!("{}#{}", last.at().timestamp_millis(), last.id),
            fingerprint,
        )
    });
    let next = next_cursor.as_ref().map(|c| {
        let mut query = Vec::new();
        if let Some(f) = from {
            query.push(("startDate", f.to_rfc3339()));
        }
        if let Some(u) = until {
            query.push(("endDate", u.to_rfc3339()));
        }
        if descending {
            query.push(("order", "desc".to_owned()));
        }
        if include_response {
            query.push(("include", "response".to_owned()));
        }
        query.push(("limit", limit.to_string()));
        query.push(("cursor", c.clone()));
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!(
            "{}/api/users/{user}/{}?{query}",
            state.base_url(&headers),
            plural(kind)
        )
    });
    let mut items: Vec<Value> = entries.iter().map(item).collect();
    if include_response {
        super::meals::with_responses(&state, &user, &entries, &mut items).await?;
    }
    let mut data = Map::new();
    data.insert(plural(kind).to_owned(), Value::Array(items));
    let pagination = JournalPagination {
        next_cursor,
        next,
        limit,
    };
    data.insert(
        "pagination".to_owned(),
        serde_json::to_value(pagination).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok(success(Value::Object(data)).into_response())
}

fn entry_path(raw_user: &str, raw_id: &str) -> Result<(UserId, uuid::Uuid), ApiError> {
    let user = path_user(raw_user)?;
    let id = uuid::Uuid::parse_str(raw_id)
        .map_err(|_| ApiError::from(FieldError::new("entry_id", "must be a UUID")))?;
    Ok((user, id))
}

fn not_found(kind: JournalKind) -> ApiError {
    ApiError::NotFound(kind.as_str().to_owned())
}

async fn get(
    state: AppState,
    (raw_user, raw_id): (String, String),
    caller: Caller,
    kind: JournalKind,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    authorize(&state, &caller, Action::ReadJournal, &user).await?;
    let (user, id) = entry_path(&raw_user, &raw_id)?;
    match state.store.get_journal_entry(&user, kind, id).await? {
        Some(entry) => Ok(success(item(&entry)).into_response()),
        None => Err(not_found(kind)),
    }
}

/// Fields that a PATCH of a sleep session may leave to be derived again: when
/// the times or awake minutes change and the patch does not give them, the
/// stored (possibly derived) values would no longer fit.
const SLEEP_DERIVED: [&str; 2] = ["duration_minutes", "date"];
const SLEEP_BASIS: [&str; 3] = ["sleep_start", "sleep_end", "awake_minutes"];

async fn patch(
    state: AppState,
    (raw_user, raw_id): (String, String),
    caller: Caller,
    body: RawBody,
    kind: JournalKind,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    authorize(&state, &caller, Action::WriteJournal, &user).await?;
    let (user, id) = entry_path(&raw_user, &raw_id)?;
    let changes = object(&body.0)?;
    let Some(stored) = state.store.get_journal_entry(&user, kind, id).await? else {
        return Err(not_found(kind));
    };
    // Where it came from is part of its identity.
    let mut errors = Vec::new();
    for (field, now) in [
        ("source", Some(stored.source.as_str())),
        ("external_id", stored.external_id.as_deref()),
    ] {
        if let Some(given) = changes.get(field) {
            if given.as_str() != now {
                errors.push(FieldError::new(field, "cannot be changed"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(invalid(kind, errors));
    }
    // A JSON merge patch (RFC 7396) of the stored fields: null removes.
    let mut merged = stored.body.to_json();
    if kind == JournalKind::Sleep && SLEEP_BASIS.iter().any(|f| changes.contains_key(*f)) {
        for derived in SLEEP_DERIVED {
            if !changes.contains_key(derived) {
                merged.remove(derived);
            }
        }
    }
    for (field, value) in changes {
        if matches!(field.as_str(), "source" | "external_id") {
            continue;
        }
        if value.is_null() {
            merged.remove(&field);
        } else {
            merged.insert(field, value);
        }
    }
    let (_, body) = parse_entry(&state, &user, kind, merged).await?;
    let next = stored.replaced(body, Utc::now());
    match state.store.update_journal_entry(next).await? {
        Some(entry) => Ok(success(item(&entry)).into_response()),
        None => Err(not_found(kind)),
    }
}

async fn delete(
    state: AppState,
    (raw_user, raw_id): (String, String),
    caller: Caller,
    kind: JournalKind,
) -> Result<Response, ApiError> {
    let user = path_user(&raw_user)?;
    authorize(&state, &caller, Action::WriteJournal, &user).await?;
    let (user, id) = entry_path(&raw_user, &raw_id)?;
    if state.store.delete_journal_entry(&user, kind, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(kind))
    }
}

/// The five routes of one kind, each with its OpenAPI description.
macro_rules! journal_routes {
    ($kind:expr, $what:literal, $collection:literal, $one:literal, $input:ty, $item:ty,
     $create:ident, $list:ident, $get:ident, $patch:ident, $delete:ident) => {
        #[doc = concat!("Stores a ", $what, "; with an `external_id` seen before (same source), answers 200 with the stored one and stores nothing.")]
        #[utoipa::path(
            post, path = $collection, tag = "journal",
            params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
            request_body = $input,
            security(("bearer" = [])),
            responses(
                (status = 201, description = "Stored", body = $item),
                (status = 200, description = "An entry with this source and external_id was stored before: that one", body = $item),
                (status = 400, description = "Malformed JSON, not an object, or an invalid user id", body = ErrorEnvelope),
                (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
                (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
                (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorEnvelope),
                (status = 422, description = "VALIDATION_ERROR naming each bad field by JSON pointer (an unknown field, a wrong type or enum value, a bound); nothing stored", body = ErrorEnvelope),
            )
        )]
        pub async fn $create(
            State(state): State<AppState>,
            UserPath(user): UserPath,
            caller: Caller,
            body: RawBody,
        ) -> Result<Response, ApiError> {
            create(state, user, caller, body, $kind).await
        }

        #[doc = concat!("Lists ", $what, " entries in a time window, a page at a time.")]
        #[utoipa::path(
            get, path = $collection, tag = "journal",
            params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"), JournalListParams),
            security(("bearer" = [])),
            responses(
                (status = 200, description = "A page: data {\"<kind>\":[...],\"pagination\":{next_cursor,next,limit}}", body = super::docs::JournalPageEnvelope),
                (status = 400, description = "Invalid user id, dates, order, limit or cursor", body = ErrorEnvelope),
                (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
                (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
            )
        )]
        pub async fn $list(
            State(state): State<AppState>,
            UserPath(user): UserPath,
            caller: Caller,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
        ) -> Result<Response, ApiError> {
            list(state, user, caller, query, headers, $kind).await
        }

        #[doc = concat!("One ", $what, ".")]
        #[utoipa::path(
            get, path = $one, tag = "journal",
            params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
                   ("entryId" = String, Path, format = "uuid")),
            security(("bearer" = [])),
            responses(
                (status = 200, description = "The entry", body = $item),
                (status = 400, description = "Invalid user or entry id", body = ErrorEnvelope),
                (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
                (status = 403, description = "Not allowed to read this user's data", body = ErrorEnvelope),
                (status = 404, description = "No such entry of this user", body = ErrorEnvelope),
            )
        )]
        pub async fn $get(
            State(state): State<AppState>,
            Path(path): Path<(String, String)>,
            caller: Caller,
        ) -> Result<Response, ApiError> {
            get(state, path, caller, $kind).await
        }

        #[doc = concat!("Changes a ", $what, ": a JSON merge patch of its fields (null removes an optional one); the result is validated as a whole. `source` and `external_id` cannot change.")]
        #[utoipa::path(
            patch, path = $one, tag = "journal",
            params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
                   ("entryId" = String, Path, format = "uuid")),
            // Any subset of the create fields: none is required in a patch,
            // and the merged result is what gets validated.
            request_body(content = serde_json::Value, description = "A JSON merge patch (RFC 7396): an object with any of the fields the create request takes; null removes an optional field"),
            security(("bearer" = [])),
            responses(
                (status = 200, description = "The entry as stored now", body = $item),
                (status = 400, description = "Malformed JSON, or an invalid user or entry id", body = ErrorEnvelope),
                (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
                (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
                (status = 404, description = "No such entry of this user", body = ErrorEnvelope),
                (status = 422, description = "VALIDATION_ERROR naming each bad field of the result; nothing changed", body = ErrorEnvelope),
            )
        )]
        pub async fn $patch(
            State(state): State<AppState>,
            Path(path): Path<(String, String)>,
            caller: Caller,
            body: RawBody,
        ) -> Result<Response, ApiError> {
            patch(state, path, caller, body, $kind).await
        }

        #[doc = concat!("Removes a ", $what, ".")]
        #[utoipa::path(
            delete, path = $one, tag = "journal",
            params(("userId" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$"),
                   ("entryId" = String, Path, format = "uuid")),
            security(("bearer" = [])),
            responses(
                (status = 204, description = "Removed"),
                (status = 400, description = "Invalid user or entry id", body = ErrorEnvelope),
                (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
                (status = 403, description = "Only the user (or an admin)", body = ErrorEnvelope),
                (status = 404, description = "No such entry of this user", body = ErrorEnvelope),
            )
        )]
        pub async fn $delete(
            State(state): State<AppState>,
            Path(path): Path<(String, String)>,
            caller: Caller,
        ) -> Result<Response, ApiError> {
            delete(state, path, caller, $kind).await
        }
    };
}

journal_routes!(
    JournalKind::Meal,
    "meal",
    "/api/users/{userId}/meals",
    "/api/users/{userId}/meals/{entryId}",
    MealInput,
    super::docs::MealEnvelope,
    create_meal,
    list_meals,
    get_meal,
    patch_meal,
    delete_meal
);
journal_routes!(
    JournalKind::Sleep,
    "sleep session",
    "/api/users/{userId}/sleep",
    "/api/users/{userId}/sleep/{entryId}",
    SleepInput,
    super::docs::SleepEnvelope,
    create_sleep,
    list_sleep,
    get_sleep,
    patch_sleep,
    delete_sleep
);
journal_routes!(
    JournalKind::Activity,
    "activity",
    "/api/users/{userId}/activities",
    "/api/users/{userId}/activities/{entryId}",
    ActivityInput,
    super::docs::ActivityEnvelope,
    create_activity,
    list_activities,
    get_activity,
    patch_activity,
    delete_activity
);

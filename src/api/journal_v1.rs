//! The journal's GlucoLens and Nutri paths (contract: "GlucoLens and Nutri
//! paths"): `POST /api/v1/meals`, `/sleep` and `/activities` store an entry of
//! the caller's own, by the logic of `POST /api/users/{userId}/{kind}`; and
//! `POST /api/v1/integrations/apple-health` takes a phone's Apple Health
//! upload (readings, sleep sessions, activities) and stores all of it or none
//! (docs/journal.md, "Apple Health upload"): every item is validated before
//! anything is written, then the readings (through the pipeline) and the
//! entries are stored by one `store_health_upload` call, one transaction on
//! SQL. Every item has a deterministic key, so a retry after a failed write
//! (on DynamoDB, which is not one transaction) completes the same set without
//! duplicates.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::access::authorize;
use super::body::RawBody;
use super::error::{ApiError, ErrorEnvelope};
use super::glucolens::Me;
use super::journal::create;
use super::views::success;
use super::AppState;
use crate::digest::sha256_hex;
use crate::domain::{
    Activity, ActivityInput, EntryOrigin, FieldError, MealInput, Reading, SleepInput, SleepSession,
    TimePolicy, UserId,
};
use crate::pipeline::wire::{self, json_pointer};
use crate::pipeline::Tally;
use crate::records::audit::Action;
use crate::records::journal::{JournalBody, JournalCreated, JournalEntry, JournalKind};
use crate::store::{profile_or_default, StoreError};

/// Stores a meal of the caller's, as `POST /api/users/{userId}/meals` does.
#[utoipa::path(
    post, path = "/api/v1/meals", tag = "glucolens",
    request_body = MealInput,
    responses(
        (status = 201, description = "Stored", body = super::docs::MealEnvelope),
        (status = 200, description = "An entry with this source and external_id was stored before: that one", body = super::docs::MealEnvelope),
        (status = 400, description = "Malformed JSON or not an object", body = ErrorEnvelope),
        (status = 403, description = "The caller may not write their own data (a token with only caregiver or clinician roles)", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field by JSON pointer; nothing stored", body = ErrorEnvelope),
    )
)]
pub async fn post_meal(
    State(state): State<AppState>,
    me: Me,
    body: RawBody,
) -> Result<Response, ApiError> {
    create(state, me.user, me.caller, body, JournalKind::Meal).await
}

/// Stores a sleep session of the caller's, as `POST /api/users/{userId}/sleep` does.
#[utoipa::path(
    post, path = "/api/v1/sleep", tag = "glucolens",
    request_body = SleepInput,
    responses(
        (status = 201, description = "Stored", body = super::docs::SleepEnvelope),
        (status = 200, description = "An entry with this source and external_id was stored before: that one", body = super::docs::SleepEnvelope),
        (status = 400, description = "Malformed JSON or not an object", body = ErrorEnvelope),
        (status = 403, description = "The caller may not write their own data", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field by JSON pointer; nothing stored", body = ErrorEnvelope),
    )
)]
pub async fn post_sleep(
    State(state): State<AppState>,
    me: Me,
    body: RawBody,
) -> Result<Response, ApiError> {
    create(state, me.user, me.caller, body, JournalKind::Sleep).await
}

/// Stores an activity of the caller's, as `POST /api/users/{userId}/activities` does.
#[utoipa::path(
    post, path = "/api/v1/activities", tag = "glucolens",
    request_body = ActivityInput,
    responses(
        (status = 201, description = "Stored", body = super::docs::ActivityEnvelope),
        (status = 200, description = "An entry with this source and external_id was stored before: that one", body = super::docs::ActivityEnvelope),
        (status = 400, description = "Malformed JSON or not an object", body = ErrorEnvelope),
        (status = 403, description = "The caller may not write their own data", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming each bad field by JSON pointer; nothing stored", body = ErrorEnvelope),
    )
)]
pub async fn post_activity(
    State(state): State<AppState>,
    me: Me,
    body: RawBody,
) -> Result<Response, ApiError> {
    create(state, me.user, me.caller, body, JournalKind::Activity).await
}

/// The `source` of upload items that name none.
pub const UPLOAD_SOURCE: &str = "apple_health";

/// Body of `POST /api/v1/integrations/apple-health`. Each list is optional;
/// together they hold at most MAX_BATCH_RECORDS items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppleHealthUpload {
    /// Readings as `POST /api/v1/glucose/readings` takes them.
    #[serde(default)]
    #[schema(value_type = Vec<wire::GlucoseInput>)]
    glucose_readings: Vec<Box<RawValue>>,
    /// Sleep sessions as `POST /api/v1/sleep` takes them (default source `apple_health`).
    #[serde(default)]
    #[schema(value_type = Vec<SleepInput>)]
    sleep_sessions: Vec<Box<RawValue>>,
    /// Activities as `POST /api/v1/activities` takes them (default source `apple_health`).
    #[serde(default)]
    #[schema(value_type = Vec<ActivityInput>)]
    activities: Vec<Box<RawValue>>,
}

/// What an upload stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppleHealthSynced {
    /// Items of the upload now stored: every one (new, updated, or there before).
    pub records_synced: usize,
    pub glucose_readings: GlucoseCounts,
    /// Sleep sessions of the upload (new or there before).
    pub sleep_sessions: usize,
    /// Activities of the upload (new or there before).
    pub activities: usize,
    /// Of those, stored by this request (0 for a repeat).
    pub new_sleep_sessions: usize,
    pub new_activities: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GlucoseCounts {
    pub received: usize,
    pub inserted: u64,
    pub updated: u64,
    /// Already stored with this value.
    pub duplicate: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppleHealthEnvelope {
    #[schema(example = "success")]
    pub status: String,
    pub data: AppleHealthSynced,
}

/// One item of a list as `T`, errors located at `parent`.
fn item<T: DeserializeOwned>(raw: &RawValue, parent: &str) -> Result<T, Vec<FieldError>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let pointer = json_pointer(err.path());
        let message = err.into_inner().to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_owned(),
            None => message,
        };
        vec![FieldError::new(&pointer, message).within(parent)]
    })
}

/// The item's origin: its `source` (default `apple_health`) and `external_id`,
/// or one derived from what identifies it (`key`), so that a retry of the
/// same upload finds it again.
fn origin(
    source: Option<String>,
    external_id: Option<String>,
    kind: JournalKind,
    key: &str,
    parent: &str,
) -> Result<EntryOrigin, Vec<FieldError>> {
    let external_id = external_id.or_else(|| {
        let digest = sha256_hex(format!("{}|{key}", kind.as_str()).as_bytes());
        Some(format!("ahu-{}", &digest[..32]))
    });
    crate::domain::OriginInput {
        source: Some(source.unwrap_or_else(|| UPLOAD_SOURCE.to_owned())),
        external_id,
    }
    .parse()
    .map_err(|errors| errors.into_iter().map(|e| e.within(parent)).collect())
}

fn within(errors: Vec<FieldError>, parent: &str) -> Vec<FieldError> {
    errors.into_iter().map(|e| e.within(parent)).collect()
}

/// Parses every item; all errors, with their pointers, or everything parsed.
async fn parse_upload(
    state: &AppState,
    user: &UserId,
    upload: AppleHealthUpload,
) -> Result<(Vec<Reading>, Vec<JournalEntry>), ApiError> {
    let now = Utc::now();
    let journal_policy = TimePolicy::default();
    let reading_policy = state.pipeline.policy();
    let tz = profile_or_default(state.store.as_ref(), user)
        .await?
        .timezone;
    let mut errors = Vec::new();
    let mut readings = Vec::with_capacity(upload.glucose_readings.len());
    for (i, raw) in upload.glucose_readings.iter().enumerate() {
        let parent = format!("/glucose_readings/{i}");
        // The pipeline checks the time policy again when it stores: a reading
        // that passes it a minute from now as well passes it then.
        let checked = wire::parse_glucose_record(raw.get(), user).and_then(|r| {
            for at in [now, now + Duration::minutes(1)] {
                reading_policy.check(r.timestamp, at).map_err(|e| vec![e])?;
            }
            Ok(r)
        });
        match checked {
            Ok(r) => readings.push(r),
            Err(e) => errors.extend(within(e, &parent)),
        }
    }
    let mut entries = Vec::new();
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    for (i, raw) in upload.sleep_sessions.iter().enumerate() {
        let parent = format!("/sleep_sessions/{i}");
        let parsed = item::<SleepInput>(raw, &parent).and_then(|input| {
            let (source, external_id) = (input.source.clone(), input.external_id.clone());
            let session = SleepSession::parse(input, user.as_str(), tz, &journal_policy, now)
                .map_err(|e| within(e, &parent));
            let key = session.as_ref().map_or(String::new(), |s| {
                format!("{}|{}", stamp(s.sleep_start()), stamp(s.sleep_end()))
            });
            let origin = origin(source, external_id, JournalKind::Sleep, &key, &parent);
            match (origin, session) {
                (Ok(o), Ok(s)) => Ok((o, JournalBody::Sleep(s))),
                (o, s) => Err([o.err(), s.err()].into_iter().flatten().flatten().collect()),
            }
        });
        match parsed {
            Ok((o, body)) => entries.push(JournalEntry::new(
                user.clone(),
                o.source,
                o.external_id,
                body,
                now,
            )),
            Err(e) => errors.extend(e),
        }
    }
    for (i, raw) in upload.activities.iter().enumerate() {
        let parent = format!("/activities/{i}");
        let parsed = item::<ActivityInput>(raw, &parent).and_then(|input| {
            let (source, external_id) = (input.source.clone(), input.external_id.clone());
            let activity = Activity::parse(input, user.as_str(), &journal_policy, now)
                .map_err(|e| within(e, &parent));
            let key = activity.as_ref().map_or(String::new(), |a| {
                let item = JournalBody::Activity(a.clone()).to_json();
                format!("{}|{}", stamp(a.timestamp()), item["activity_type"])
            });
            let origin = origin(source, external_id, JournalKind::Activity, &key, &parent);
            match (origin, activity) {
                (Ok(o), Ok(a)) => Ok((o, JournalBody::Activity(a))),
                (o, a) => Err([o.err(), a.err()].into_iter().flatten().flatten().collect()),
            }
        });
        match parsed {
            Ok((o, body)) => entries.push(JournalEntry::new(
                user.clone(),
                o.source,
                o.external_id,
                body,
                now,
            )),
            Err(e) => errors.extend(e),
        }
    }
    match errors.as_slice() {
        [] => Ok((readings, entries)),
        [one] => Err(ApiError::unprocessable(
            format!("invalid upload, nothing stored: {one}"),
            errors,
        )),
        many => Err(ApiError::unprocessable(
            format!("invalid upload, nothing stored: {} problems", many.len()),
            errors,
        )),
    }
}

/// Stores an Apple Health upload of the caller's: all of it or none.
#[utoipa::path(
    post, path = "/api/v1/integrations/apple-health", tag = "glucolens",
    request_body = AppleHealthUpload,
    responses(
        (status = 201, description = "Everything stored (something new)", body = AppleHealthEnvelope),
        (status = 200, description = "Everything was stored before (a repeat): nothing new", body = AppleHealthEnvelope),
        (status = 400, description = "Malformed JSON or not an object", body = ErrorEnvelope),
        (status = 403, description = "The caller may not write their own data", body = ErrorEnvelope),
        (status = 413, description = "More than MAX_BATCH_RECORDS items in all (pointer empty); nothing stored", body = ErrorEnvelope),
        (status = 422, description = "VALIDATION_ERROR naming every bad item's field (/glucose_readings/{i}/value, /sleep_sessions/{i}/sleep_end, /activities/{i}/duration_minutes, an unknown field); nothing stored", body = ErrorEnvelope),
        (status = 429, description = "Over the rate limit, or the readings would cross the hourly write quota; nothing stored", body = ErrorEnvelope),
        (status = 500, description = "A store failed: on SQLite and PostgreSQL nothing of the upload was stored (one transaction); on DynamoDB a part may be. Send the same upload again: it stores what is missing, without duplicates (docs/journal.md)", body = ErrorEnvelope),
    )
)]
pub async fn apple_health(
    State(state): State<AppState>,
    me: Me,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    let user = me.user;
    authorize(&state, &me.caller, Action::WriteReadings, &user).await?;
    authorize(&state, &me.caller, Action::WriteJournal, &user).await?;
    let RawBody(body) = body?;
    // serde reads a struct from an array too: only an object is an upload.
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::bad_request(
            "request body must be a JSON object",
            vec![],
        ));
    }
    let upload: AppleHealthUpload = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let pointer = json_pointer(err.path());
            let inner = err.into_inner();
            if inner.is_data() {
                ApiError::unprocessable(
                    format!("invalid upload: {pointer}: {inner}"),
                    vec![FieldError::new(&pointer, inner.to_string())],
                )
            } else {
                ApiError::bad_request(format!("malformed JSON: {inner}"), vec![])
            }
        })?
    };
    let total =
        upload.glucose_readings.len() + upload.sleep_sessions.len() + upload.activities.len();
    let max = state.limits.max_batch_records;
    if total > max {
        return Err(ApiError::Validation {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("an upload holds at most {max} items in all; split it"),
            errors: vec![FieldError::new("", "too many items")],
        });
    }
    let (readings, entries) = parse_upload(&state, &user, upload).await?;
    state.write_quota.admit(&user, readings.len())?;
    let received = readings.len();
    let (sleep_sessions, activities) = entries.iter().fold((0, 0), |(s, a), e| match e.kind() {
        JournalKind::Sleep => (s + 1, a),
        _ => (s, a + 1),
    });
    // The readings through the pipeline (time policy, metrics, alerts), stored
    // with the journal entries by one call: one transaction on SQL; on
    // DynamoDB the journal batch, then the readings (docs/journal.md).
    let store = state.store.clone();
    let (results, created) = state
        .pipeline
        .ingest_with(readings.into_iter().map(Ok).collect(), |valid| async move {
            if valid.len() != received {
                // Checked above against the same policy a minute ahead: not
                // reached. Refused before anything is written.
                return Err(StoreError::Internal(format!(
                    "{} of {received} validated readings were refused when stored",
                    received - valid.len()
                )));
            }
            store.store_health_upload(valid, entries).await
        })
        .await?;
    let mut new = (0, 0);
    for c in &created {
        if let JournalCreated::Created(e) = c {
            match e.kind() {
                JournalKind::Sleep => new.0 += 1,
                _ => new.1 += 1,
            }
        }
    }
    let tally = Tally::of(&results);
    tracing::info!(
        user_id = %user,
        readings = received,
        sleep_sessions,
        activities,
        "apple health upload stored"
    );
    let anything_new = tally.inserted + tally.updated > 0 || new.0 + new.1 > 0;
    let status = if anything_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let data = AppleHealthSynced {
        records_synced: received + sleep_sessions + activities,
        glucose_readings: GlucoseCounts {
            received,
            inserted: tally.inserted,
            updated: tally.updated,
            duplicate: tally.duplicates,
        },
        sleep_sessions,
        activities,
        new_sleep_sessions: new.0,
        new_activities: new.1,
    };
    Ok((status, success(data)).into_response())
}

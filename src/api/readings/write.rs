//! `POST /api/bg/{userId}/readings`: one reading or a bulk batch, with an outcome per record.

use std::cell::Cell;
use std::fmt;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::UserPath;
use crate::api::access::{authorize, Caller};
use crate::api::body::RawBody;
use crate::api::docs;
use crate::api::error::{ApiError, ErrorBody, ErrorEnvelope};
use crate::api::views::{success, success_sized, Rfc3339};
use crate::api::AppState;
use crate::domain::{FieldError, Reading, UserId};
use crate::pipeline::{wire, RecordResult, Tally};
use crate::records::audit::Action;
use crate::records::readings::{DuplicateKind, Outcome};

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
    #[schema(value_type = Option<String>, example = "2023-08-15T14:30:00Z")]
    pub timestamp: Option<Rfc3339>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2023-08-15T14:35:12.345Z")]
    pub updated_at: Option<Rfc3339>,
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
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "Not allowed for this user", body = ErrorEnvelope),
        (status = 413, description = "Body or batch too large", body = ErrorEnvelope),
        (status = 422, description = "A single reading that is invalid", body = ErrorEnvelope),
        (status = 429, description = "Over the rate limit, or the batch would cross the user's hourly write quota (WRITE_QUOTA_READINGS_PER_HOUR; nothing stored, Retry-After says when it fits)", body = ErrorEnvelope),
    )
)]
pub async fn write(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    caller: Caller,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    write_readings(
        &state,
        &caller,
        &user,
        body,
        Shape::SingleOrBulk,
        wire::parse_record,
    )
    .await
}

/// What a write route takes in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One reading, or `{"readings":[...]}` (`POST /api/bg/{userId}/readings`).
    SingleOrBulk,
    /// One reading only.
    Single,
    /// `{"readings":[...]}` only.
    Bulk,
}

/// Parses one record of a route's format into a reading of `owner`.
pub type ParseRecord = fn(&str, &UserId) -> Result<Reading, Vec<FieldError>>;

/// Stores what `body` holds for `user`, after asking whether `caller` may write
/// it: the pipeline, write quota, batch limit and outcomes of every write route,
/// whatever the format of its records (`parse`) and the shape of its body.
pub async fn write_readings(
    state: &AppState,
    caller: &Caller,
    user: &UserId,
    body: Result<RawBody, ApiError>,
    shape: Shape,
    parse: ParseRecord,
) -> Result<Response, ApiError> {
    authorize(state, caller, Action::WriteReadings, user).await?;
    let RawBody(body) = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8", vec![]))?;
    let batch = match top_level(text, state.limits.max_batch_records) {
        Ok(batch) => batch,
        Err(TopLevel::TooMany) => {
            return Err(ApiError::Validation {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "a batch holds at most {} readings; split it",
                    state.limits.max_batch_records
                ),
                errors: vec![FieldError::new("/readings", "too many records")],
            })
        }
        Err(TopLevel::NotAnArray) => {
            return Err(ApiError::unprocessable(
                "\"readings\" must be an array",
                vec![FieldError::new("/readings", "must be an array")],
            ))
        }
        Err(TopLevel::Json(e)) => {
            let message = if e.is_data() {
                "request body must be a JSON object".to_owned()
            } else {
                format!("malformed JSON: {e}")
            };
            return Err(ApiError::bad_request(message, vec![]));
        }
    };

    match (batch, shape) {
        (Batch::Bulk { .. }, Shape::Single) => Err(ApiError::unprocessable(
            "this route takes one reading; send a batch to the bulk route",
            vec![FieldError::new("/readings", "unknown field")],
        )),
        (Batch::Single, Shape::Bulk) => Err(ApiError::unprocessable(
            "a bulk upload is {\"readings\":[...]}",
            vec![FieldError::new("/readings", "is required")],
        )),
        (Batch::Bulk { records, extra }, _) => write_bulk(state, user, records, extra, parse).await,
        (Batch::Single, _) => write_single(state, user, text, parse).await,
    }
}

async fn write_bulk(
    state: &AppState,
    user: &UserId,
    records: Vec<&RawValue>,
    extra: Option<String>,
    parse: ParseRecord,
) -> Result<Response, ApiError> {
    if let Some(extra) = extra {
        return Err(ApiError::unprocessable(
            format!("unknown field {extra:?} next to \"readings\""),
            vec![FieldError::new(&format!("/{extra}"), "unknown field")],
        ));
    }
    state.write_quota.admit(user, records.len())?;
    let parsed = records
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            parse(raw.get(), user).map_err(|errors| {
                let parent = format!("/readings/{i}");
                errors.into_iter().map(|e| e.within(&parent)).collect()
            })
        })
        .collect();
    let results = state.pipeline.ingest(parsed).await?;
    let tally = Tally::of(&results);
    let summary = Summary {
        received: results.len(),
        inserted: tally.inserted as usize,
        updated: tally.updated as usize,
        duplicates: tally.duplicates as usize,
        rejected: tally.rejected as usize,
    };
    let results: Vec<_> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| record_outcome(i, r))
        .collect();
    // About 130 bytes of JSON per outcome.
    let size_hint = 256 + results.len() * 160;
    Ok(success_sized(
        StatusCode::CREATED,
        BulkResult { summary, results },
        size_hint,
    ))
}

async fn write_single(
    state: &AppState,
    user: &UserId,
    text: &str,
    parse: ParseRecord,
) -> Result<Response, ApiError> {
    state.write_quota.admit(user, 1)?;
    let parsed = parse(text, user);
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
            timestamp: Some(Rfc3339::seconds(timestamp.as_datetime())),
            version: Some(u.version),
            updated_at: Some(Rfc3339::millis(u.updated_at)),
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

/// What the body holds, found without materializing more than the batch limit.
enum Batch<'a> {
    /// `{"readings":[...]}`; `extra` is a field found beside `readings`, if any.
    Bulk {
        records: Vec<&'a RawValue>,
        extra: Option<String>,
    },
    /// Any other object: a single reading, parsed as such.
    Single,
}

enum TopLevel {
    /// `readings` holds more than the limit: parsing stopped at the first record over it.
    TooMany,
    NotAnArray,
    Json(serde_json::Error),
}

/// Reads the body's top level in one pass. A `readings` array is read record by record
/// and parsing stops at the first record over `limit`, so an oversized batch costs at
/// most `limit + 1` records of work and memory, however long the body.
fn top_level(text: &str, limit: usize) -> Result<Batch<'_>, TopLevel> {
    let stop = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de
        .deserialize_map(TopLevelVisitor { limit, stop: &stop })
        .and_then(|batch| de.end().map(|()| batch));
    match (parsed, stop.get()) {
        (_, Some(reason)) => Err(reason.into()),
        (Ok(batch), None) => Ok(batch),
        (Err(e), None) => Err(TopLevel::Json(e)),
    }
}

/// Set by the visitors when they stop for a reason of ours rather than serde_json's.
type Stop<'s> = &'s Cell<Option<StopReason>>;

#[derive(Clone, Copy)]
enum StopReason {
    TooMany,
    NotAnArray,
}

impl From<StopReason> for TopLevel {
    fn from(r: StopReason) -> Self {
        match r {
            StopReason::TooMany => TopLevel::TooMany,
            StopReason::NotAnArray => TopLevel::NotAnArray,
        }
    }
}

struct TopLevelVisitor<'s> {
    limit: usize,
    stop: Stop<'s>,
}

impl<'de> Visitor<'de> for TopLevelVisitor<'_> {
    type Value = Batch<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch<'de>, A::Error> {
        let mut records = None;
        let mut extra = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "readings" && records.is_none() {
                records = Some(map.next_value_seed(Records {
                    limit: self.limit,
                    stop: self.stop,
                })?);
            } else {
                if extra.is_none() {
                    extra = Some(key.into_owned());
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match records {
            Some(records) => Batch::Bulk { records, extra },
            None => Batch::Single,
        })
    }
}

/// The `readings` array, at most `limit` records.
struct Records<'s> {
    limit: usize,
    stop: Stop<'s>,
}

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of readings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
        while let Some(record) = seq.next_element::<&'de RawValue>()? {
            if records.len() == self.limit {
                self.stop.set(Some(StopReason::TooMany));
                return Err(serde::de::Error::custom("too many records"));
            }
            records.push(record);
        }
        Ok(records)
    }

    // Anything but an array: reported as such, after the whole body was checked to be JSON.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.not_an_array()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.not_an_array()
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.not_an_array()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.not_an_array()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.not_an_array()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.not_an_array()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.not_an_array()
    }
}

impl Records<'_> {
    fn not_an_array<T, E: serde::de::Error>(&self) -> Result<T, E> {
        self.stop.set(Some(StopReason::NotAnArray));
        Err(E::custom("\"readings\" must be an array"))
    }
}

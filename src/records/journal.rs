//! Journal entries (meals, sleep sessions, activities) as the store keeps them:
//! one record shape for the three kinds, the kind's own fields kept as a JSON
//! document (the serde form of `domain::{Meal, SleepSession, Activity}`), so
//! each backend stores and pages one table of entries.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{Activity, Meal, SleepSession, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JournalKind {
    Meal,
    Sleep,
    Activity,
}

impl JournalKind {
    pub const ALL: [JournalKind; 3] =
        [JournalKind::Meal, JournalKind::Sleep, JournalKind::Activity];

    /// The stored name, and the first part of the kind's event types.
    pub fn as_str(self) -> &'static str {
        match self {
            JournalKind::Meal => "meal",
            JournalKind::Sleep => "sleep",
            JournalKind::Activity => "activity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The kind's own fields, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalBody {
    Meal(Meal),
    Sleep(SleepSession),
    Activity(Activity),
}

impl JournalBody {
    pub fn kind(&self) -> JournalKind {
        match self {
            JournalBody::Meal(_) => JournalKind::Meal,
            JournalBody::Sleep(_) => JournalKind::Sleep,
            JournalBody::Activity(_) => JournalKind::Activity,
        }
    }

    /// The instant the entry is listed by: a meal's or activity's
    /// timestamp, a sleep session's start.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            JournalBody::Meal(m) => m.timestamp(),
            JournalBody::Sleep(s) => s.sleep_start(),
            JournalBody::Activity(a) => a.timestamp(),
        }
    }

    /// The fields as one JSON object.
    pub fn to_json(&self) -> Map<String, Value> {
        let value = match self {
            JournalBody::Meal(m) => serde_json::to_value(m),
            JournalBody::Sleep(s) => serde_json::to_value(s),
            JournalBody::Activity(a) => serde_json::to_value(a),
        };
        // Plain structs of numbers, strings and dates always serialize to an object.
        match value {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// The fields as stored, read back (the store's text of `to_json`).
    pub fn from_json(kind: JournalKind, json: &str) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            JournalKind::Meal => JournalBody::Meal(serde_json::from_str(json)?),
            JournalKind::Sleep => JournalBody::Sleep(serde_json::from_str(json)?),
            JournalKind::Activity => JournalBody::Activity(serde_json::from_str(json)?),
        })
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub id: Uuid,
    pub user_id: UserId,
    /// Where it came from (`manual` unless the writer said otherwise).
    pub source: String,
    /// The source's id of it: (user, kind, source, external_id) is unique.
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub body: JournalBody,
}

impl JournalEntry {
    /// A new entry, created (and updated) at `now` (milliseconds: what every
    /// backend keeps).
    pub fn new(
        user_id: UserId,
        source: String,
        external_id: Option<String>,
        body: JournalBody,
        now: DateTime<Utc>,
    ) -> Self {
        let now = whole_ms(now);
        Self {
            id: Uuid::new_v4(),
            user_id,
            source,
            external_id,
            created_at: now,
            updated_at: now,
            body,
        }
    }

    pub fn kind(&self) -> JournalKind {
        self.body.kind()
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.body.at()
    }

    /// This entry with new fields, updated at `now`; id, source, external id
    /// and creation stay.
    pub fn replaced(&self, body: JournalBody, now: DateTime<Utc>) -> Self {
        Self {
            body,
            updated_at: whole_ms(now),
            ..self.clone()
        }
    }

    /// The entry as the API and the bus show it: the kind's fields with `id`,
    /// `user_id`, `source`, `external_id`, `created_at` and `updated_at`.
    pub fn item(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.to_string()));
        map.insert("user_id".into(), Value::String(self.user_id.to_string()));
        map.extend(self.body.to_json());
        map.insert("source".into(), Value::String(self.source.clone()));
        map.insert(
            "external_id".into(),
            self.external_id.clone().map_or(Value::Null, Value::String),
        );
        map.insert("created_at".into(), rfc3339(self.created_at));
        map.insert("updated_at".into(), rfc3339(self.updated_at));
        map
    }
}

fn rfc3339(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What creating an entry did.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalCreated {
    Created(JournalEntry),
    /// An entry of the same (user, kind, source, external_id) was stored
    /// before: that one, nothing written.
    Existing(JournalEntry),
}

impl JournalCreated {
    pub fn entry(&self) -> &JournalEntry {
        match self {
            JournalCreated::Created(e) | JournalCreated::Existing(e) => e,
        }
    }
}

/// A batch that was not stored, and why (nothing of it was written).
#[derive(Debug, Clone, PartialEq)]
pub enum BatchRefused {
    /// Entry `index` of the batch has the (kind, source, external_id) of an
    /// entry stored before, or of an earlier entry of the batch.
    Duplicate { index: usize },
}

/// Which entries of one user and kind to list: `at` in `[from, until)`, in
/// `at` then id order (descending when `descending`), after the position of
/// the last entry of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalQuery {
    pub user_id: UserId,
    pub kind: JournalKind,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub descending: bool,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: usize,
}

/// How a journal change is announced on the bus (`meal.created`, ...): the
/// item as the API shows it (for a deletion, as it was).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalChange {
    pub user_id: String,
    #[serde(flatten)]
    pub item: Map<String, Value>,
}

/// Times as every backend keeps them: whole milliseconds.
pub fn whole_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

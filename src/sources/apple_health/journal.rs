//! Where an import's sleep sessions and workouts go: the journal store. Each
//! Apple item becomes the journal's own wire input (`SleepInput`,
//! `ActivityInput`) and is parsed by the domain, so an imported entry obeys
//! exactly the rules of one posted over HTTP; it is stored with source
//! `apple_health` and the import's deterministic `external_id`, in batches
//! through `create_journal_entries`, so a second import stores nothing new.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};

use super::translate::{ActivityKind, AppleSleep, AppleWorkout};
use super::{JournalImportSink, PutCounts, REFUSAL_EXAMPLES};
use crate::domain::{
    Activity, ActivityInput, ActivityType, FieldError, SleepInput, SleepSession, TimePolicy, UserId,
};
use crate::records::journal::{JournalBody, JournalCreated, JournalEntry};
use crate::store::{profile_or_default, Store, StoreError};

/// The journal `source` of imported entries.
pub const SOURCE: &str = "apple_health";
/// Entries per `create_journal_entries` call (each all or none on SQL).
pub const JOURNAL_BATCH: usize = 500;

/// A `JournalImportSink` over the store's journal.
pub struct StoreJournal {
    store: Arc<dyn Store>,
    policy: TimePolicy,
}

impl StoreJournal {
    pub fn new(store: Arc<dyn Store>, policy: TimePolicy) -> Self {
        Self { store, policy }
    }

    /// Stores `entries` in batches; counts what was new and what was there.
    async fn put(
        &self,
        entries: Vec<JournalEntry>,
        refused: u64,
        refusals: Vec<String>,
    ) -> Result<PutCounts, StoreError> {
        let mut counts = PutCounts {
            refused,
            refusals,
            ..PutCounts::default()
        };
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let batch: Vec<JournalEntry> = entries.by_ref().take(JOURNAL_BATCH).collect();
            for created in self.store.create_journal_entries(batch).await? {
                match created {
                    JournalCreated::Created(_) => counts.new += 1,
                    JournalCreated::Existing(_) => counts.duplicate += 1,
                }
            }
        }
        Ok(counts)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The journal's wire form of an Apple sleep session. Minutes asleep with an
/// unknown stage (older watches) count in the duration, in no stage.
pub fn sleep_input(s: &AppleSleep) -> SleepInput {
    let staged = s.deep_minutes + s.rem_minutes + s.light_minutes > 0;
    let stage = |m: u32| staged.then_some(m);
    // Stages of one source that overlap each other (a broken app) could add
    // up to more than the night: the time asleep is at most the session.
    let session = u32::try_from((s.sleep_end - s.sleep_start).num_minutes()).unwrap_or(0);
    let asleep = s.asleep_minutes().min(session);
    SleepInput {
        sleep_start: Some(rfc3339(s.sleep_start)),
        sleep_end: Some(rfc3339(s.sleep_end)),
        // The local date of sleep_end in the user's profile zone.
        date: None,
        // Time asleep; a session of in-bed samples only: end − start − awake.
        duration_minutes: (asleep > 0).then_some(asleep),
        deep_sleep_minutes: stage(s.deep_minutes),
        rem_sleep_minutes: stage(s.rem_minutes),
        light_sleep_minutes: stage(s.light_minutes),
        awake_minutes: Some(s.awake_minutes),
        source: Some(SOURCE.to_owned()),
        external_id: Some(s.external_id.clone()),
        ..SleepInput::default()
    }
}

/// The journal's wire form of an Apple workout.
pub fn activity_input(w: &AppleWorkout) -> ActivityInput {
    let activity_type = match w.activity_type {
        ActivityKind::Walking => ActivityType::Walking,
        ActivityKind::Running => ActivityType::Running,
        ActivityKind::Cycling => ActivityType::Cycling,
        ActivityKind::Strength => ActivityType::Strength,
        ActivityKind::Swimming => ActivityType::Swimming,
        ActivityKind::Other => ActivityType::Other,
    };
    ActivityInput {
        timestamp: Some(rfc3339(w.start)),
        activity_type: Some(activity_type),
        duration_minutes: Some(w.duration_minutes),
        calories_burned: w.calories_burned.map(f64::from),
        source: Some(SOURCE.to_owned()),
        external_id: Some(w.external_id.clone()),
        ..ActivityInput::default()
    }
}

/// Logs a refusal and keeps the first few for the summary.
fn refuse(
    refusals: &mut Vec<String>,
    user: &UserId,
    what: &str,
    external_id: &str,
    errors: &[FieldError],
) {
    let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let why = why.join("; ");
    tracing::warn!(user_id = %user, external_id, "apple health import: {what} refused: {why}");
    if refusals.len() < REFUSAL_EXAMPLES {
        refusals.push(format!("{external_id}: {why}"));
    }
}

#[async_trait]
impl JournalImportSink for StoreJournal {
    async fn put_sleep(
        &self,
        user: &UserId,
        sessions: Vec<AppleSleep>,
    ) -> Result<PutCounts, StoreError> {
        let tz = profile_or_default(self.store.as_ref(), user)
            .await?
            .timezone;
        let now = Utc::now();
        let mut entries = Vec::with_capacity(sessions.len());
        let mut refused = 0;
        let mut refusals = Vec::new();
        for s in &sessions {
            match SleepSession::parse(sleep_input(s), user.as_str(), tz, &self.policy, now) {
                Ok(session) => entries.push(JournalEntry::new(
                    user.clone(),
                    SOURCE.to_owned(),
                    Some(s.external_id.clone()),
                    JournalBody::Sleep(session),
                    now,
                )),
                Err(errors) => {
                    refused += 1;
                    refuse(
                        &mut refusals,
                        user,
                        "sleep session",
                        &s.external_id,
                        &errors,
                    );
                }
            }
        }
        self.put(entries, refused, refusals).await
    }

    async fn put_workouts(
        &self,
        user: &UserId,
        workouts: Vec<AppleWorkout>,
    ) -> Result<PutCounts, StoreError> {
        let now = Utc::now();
        let mut entries = Vec::with_capacity(workouts.len());
        let mut refused = 0;
        let mut refusals = Vec::new();
        for w in &workouts {
            match Activity::parse(activity_input(w), user.as_str(), &self.policy, now) {
                Ok(activity) => entries.push(JournalEntry::new(
                    user.clone(),
                    SOURCE.to_owned(),
                    Some(w.external_id.clone()),
                    JournalBody::Activity(activity),
                    now,
                )),
                Err(errors) => {
                    refused += 1;
                    refuse(&mut refusals, user, "workout", &w.external_id, &errors);
                }
            }
        }
        self.put(entries, refused, refusals).await
    }
}

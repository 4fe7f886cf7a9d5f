//! The ingest pipeline every source feeds: parse → validate → dedup/store → publish.
//!
//! Sources (HTTP, demo, later Dexcom) turn their own formats into domain `Reading`s
//! (or per-record errors); the pipeline applies the time policy, stores the valid
//! ones in one atomic batch (whose events the store commits to its outbox in the
//! same transaction), and counts everything. Invalid records are returned with
//! their reasons, never silently dropped.

pub mod alerts;
pub mod stale;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;

use crate::domain::{FieldError, Reading, ReadingTime, TimePolicy, UserId};
use crate::records::jobs::JobCounts;
use crate::records::readings::{Outcome, Upserted};
use crate::store::{AlertStore, ReadingStore, StoreError};

/// The fate of one submitted record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordResult {
    Stored(ReadingTime, Upserted),
    Rejected(Vec<FieldError>),
}

/// How a batch's records fared: the counts every caller of `ingest` reports
/// (bulk writes, sync jobs, webhook deliveries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub inserted: u64,
    pub updated: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl Tally {
    pub fn of(results: &[RecordResult]) -> Self {
        let mut tally = Self::default();
        for result in results {
            match result {
                RecordResult::Stored(_, u) => match u.outcome {
                    Outcome::Inserted => tally.inserted += 1,
                    Outcome::Updated => tally.updated += 1,
                    Outcome::Duplicate(_) => tally.duplicates += 1,
                },
                RecordResult::Rejected(_) => tally.rejected += 1,
            }
        }
        tally
    }

    /// A job's counts: `fetched` records, and what the pipeline did with them.
    pub fn counts(self, fetched: u64) -> JobCounts {
        JobCounts {
            fetched,
            inserted: self.inserted,
            updated: self.updated,
            duplicates: self.duplicates,
            rejected: self.rejected,
        }
    }
}

#[derive(Clone)]
pub struct Pipeline {
    readings: Arc<dyn ReadingStore>,
    policy: TimePolicy,
    /// Evaluates alerts after each batch (`alerts`); None: no alerting.
    alerts: Option<alerts::AlertEvaluator>,
}

impl Pipeline {
    pub fn new(readings: Arc<dyn ReadingStore>, policy: TimePolicy) -> Self {
        Self {
            readings,
            policy,
            alerts: None,
        }
    }

    /// The time rule readings are held to when stored.
    pub fn policy(&self) -> TimePolicy {
        self.policy
    }

    /// The same pipeline, evaluating alerts after every stored batch.
    pub fn with_alerts(mut self, alerts: Arc<dyn AlertStore>) -> Self {
        self.alerts = Some(alerts::AlertEvaluator::new(self.readings.clone(), alerts));
        self
    }

    /// Validates and stores a batch of parsed records; returns one result per input,
    /// in order. When this returns Ok, every stored record is durable.
    pub async fn ingest(
        &self,
        batch: Vec<Result<Reading, Vec<FieldError>>>,
    ) -> Result<Vec<RecordResult>, StoreError> {
        let store = self.readings.clone();
        let (results, ()) = self
            .ingest_with(batch, |valid| async move {
                if valid.is_empty() {
                    return Ok((Vec::new(), ()));
                }
                Ok((store.upsert_readings(valid).await?, ()))
            })
            .await?;
        Ok(results)
    }

    /// `ingest`, with the valid readings stored by `write` instead of
    /// `upsert_readings`: a caller storing something else in the same
    /// transaction (the Apple Health upload its journal entries) passes a
    /// write that stores both and returns the readings' results (one per
    /// reading, in order) and its own. `write` is called once, also when no
    /// reading is valid (with none); its error is this call's, and then no
    /// alert is evaluated.
    pub async fn ingest_with<T, W, F>(
        &self,
        batch: Vec<Result<Reading, Vec<FieldError>>>,
        write: W,
    ) -> Result<(Vec<RecordResult>, T), StoreError>
    where
        W: FnOnce(Vec<Reading>) -> F,
        F: Future<Output = Result<(Vec<Upserted>, T), StoreError>>,
    {
        let now = Utc::now();
        let mut results: Vec<Option<RecordResult>> = Vec::with_capacity(batch.len());
        let mut valid = Vec::new();
        let mut positions = Vec::new();
        for (i, record) in batch.into_iter().enumerate() {
            let checked = record.and_then(|r| match self.policy.check(r.timestamp, now) {
                Ok(_) => Ok(r),
                Err(e) => Err(vec![e]),
            });
            match checked {
                Ok(reading) => {
                    positions.push(i);
                    valid.push(reading);
                    results.push(None);
                }
                Err(errors) => {
                    // One count per rejected record, labelled by its first problem.
                    let reason = errors.first().map_or("record", FieldError::reason);
                    metrics::counter!("readings_rejected_total", "reason" => reason).increment(1);
                    results.push(Some(RecordResult::Rejected(errors)));
                }
            }
        }
        let (stored, also) = write(valid.clone()).await?;
        if stored.len() != valid.len() {
            // A backend bug; refuse rather than misattribute outcomes.
            return Err(StoreError::Internal(format!(
                "store returned {} results for {} readings",
                stored.len(),
                valid.len()
            )));
        }
        // Users whose readings changed, and whether any of those is fresh.
        let mut changed: HashMap<UserId, bool> = HashMap::new();
        for ((i, reading), upserted) in positions.into_iter().zip(valid).zip(stored) {
            if matches!(upserted.outcome, Outcome::Inserted | Outcome::Updated) {
                let fresh = now - reading.timestamp.as_datetime() <= alerts::FRESH;
                *changed.entry(reading.user_id.clone()).or_default() |= fresh;
            }
            metrics::counter!(
                "readings_ingested_total",
                "source" => reading.source.metrics_label(),
                "outcome" => upserted.outcome.as_str()
            )
            .increment(1);
            if upserted.outcome == Outcome::Inserted {
                record_data_lag(&reading, now);
            }
            if upserted.outcome == Outcome::Updated {
                tracing::info!(
                    user_id = %reading.user_id,
                    timestamp = %reading.timestamp.to_rfc3339(),
                    version = upserted.version,
                    source = %reading.source,
                    "reading replaced under the conflict rule"
                );
            }
            results[i] = Some(RecordResult::Stored(reading.timestamp, upserted));
        }
        if let Some(evaluator) = &self.alerts {
            for (user, fresh) in changed {
                // The readings are stored: a failed evaluation does not undo
                // that, and the user's next reading evaluates again.
                if let Err(e) = evaluator.evaluate(&user, fresh, Utc::now()).await {
                    metrics::counter!("alert_evaluations_failed_total").increment(1);
                    tracing::warn!(user_id = %user, error = %e, "alert evaluation failed");
                }
            }
        }
        Ok((results.into_iter().flatten().collect(), also))
    }
}

/// How late a new reading arrived. Only readings less than a day old count:
/// a backfill of last month is history, not lag.
fn record_data_lag(reading: &Reading, now: chrono::DateTime<Utc>) {
    let lag = (now - reading.timestamp.as_datetime()).num_milliseconds() as f64 / 1000.0;
    if (0.0..86_400.0).contains(&lag) {
        metrics::histogram!("reading_data_lag_seconds", "source" => reading.source.metrics_label())
            .record(lag);
    }
}

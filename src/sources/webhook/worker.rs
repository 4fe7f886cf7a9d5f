//! Processes inbox deliveries after their 202: a window to fetch becomes a sync
//! job, inline Dexcom v3 records go through the pipeline, unknown types are
//! recorded as ignored. Failures are retried with backoff, then marked failed and
//! logged with the delivery id and type (never the body).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio_util::task::TaskTracker;

use crate::domain::{FieldError, UserId};
use crate::pipeline::{Pipeline, RecordResult, Tally};
use crate::records::connections::Provider;
use crate::records::inbox::{Delivery, DeliveryEnd};
use crate::records::jobs::{Created, NewJob, TimeRange, Trigger};
use crate::sources::dexcom::translate::translate_for_pipeline;
use crate::sources::dexcom::wire::EgvsPage;
use crate::store::InboxStore;
use crate::sync::engine::SyncEngine;

/// Deliveries claimed per round.
const BATCH: usize = 32;
/// How long a claim lasts before another processor may take the delivery.
const CLAIM: Duration = Duration::from_secs(60);
/// How often an idle processor looks for deliveries stored by another instance.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often the backlog gauge is refreshed.
const BACKLOG_SAMPLE: Duration = Duration::from_secs(5);
/// Attempts before a delivery is marked failed.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest window an `egvs.available` delivery may ask for.
const MAX_WINDOW_DAYS: i64 = 90;

/// A delivery's body, parsed. Unknown types are kept as their name.
#[derive(Debug)]
pub enum Body {
    EgvsAvailable(TimeRange),
    Egvs(EgvsPage),
    Unknown(String),
}

impl Body {
    /// Parses a body: a JSON object with a string `type`. Known types must be
    /// well-formed (checked before the 202, so the sender hears of a mistake);
    /// unknown types are accepted as they are.
    pub fn parse(bytes: &[u8]) -> Result<Body, Vec<FieldError>> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| vec![FieldError::new("", format!("body is not JSON: {e}"))])?;
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| vec![FieldError::new("type", "a string `type` is required")])?;
        match kind {
            "egvs.available" => {
                let time = |field: &str| {
                    value
                        .get(field)
                        .and_then(Value::as_str)
                        .and_then(|raw| DateTime::parse_from_rfc3339(raw).ok())
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or_else(|| {
                            FieldError::new(
                                field,
                                "an RFC 3339 time (e.g. 2026-01-01T00:00:00Z) is required",
                            )
                        })
                };
                let (start, end) = match (time("startDate"), time("endDate")) {
                    (Ok(s), Ok(e)) => (s, e),
                    (s, e) => return Err(s.err().into_iter().chain(e.err()).collect()),
                };
                if start >= end {
                    return Err(vec![FieldError::new("endDate", "must be after startDate")]);
                }
                if end - start > chrono::Duration::days(MAX_WINDOW_DAYS) {
                    return Err(vec![FieldError::new(
                        "endDate",
                        format!("the window may span at most {MAX_WINDOW_DAYS} days"),
                    )]);
                }
                Ok(Body::EgvsAvailable(TimeRange { start, end }))
            }
            "egvs" => {
                if !value.get("records").is_some_and(Value::is_array) {
                    return Err(vec![FieldError::new(
                        "records",
                        "an array of Dexcom v3 EGV records is required",
                    )]);
                }
                serde_json::from_value(value)
                    .map(Body::Egvs)
                    .map_err(|e| vec![FieldError::new("records", e.to_string())])
            }
            other => Ok(Body::Unknown(other.to_owned())),
        }
    }

    /// The stored `kind`.
    pub fn kind(&self) -> &str {
        match self {
            Body::EgvsAvailable(_) => "egvs.available",
            Body::Egvs(_) => "egvs",
            Body::Unknown(kind) => kind,
        }
    }
}

/// The delay before attempt `attempt + 1`: 1 s, 2 s, 4 s, ... at most 5 min.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(8)).min(Duration::from_secs(300))
}

pub struct WebhookInbox {
    store: Arc<dyn InboxStore>,
    pipeline: Pipeline,
    /// Present when Dexcom is configured; `egvs.available` needs it.
    engine: Option<Arc<SyncEngine>>,
    owner: String,
    wake: Notify,
    tasks: TaskTracker,
}

impl WebhookInbox {
    /// `engine` runs the windows `egvs.available` asks for (None: Dexcom is
    /// not configured, and such deliveries fail).
    pub fn new(
        store: Arc<dyn InboxStore>,
        pipeline: Pipeline,
        engine: Option<Arc<SyncEngine>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            pipeline,
            engine,
            owner: format!("inbox-{}", uuid::Uuid::new_v4()),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// A delivery was stored: process it now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        self.tasks.spawn(self.clone().run(stop));
    }

    /// Waits up to `grace` for the round in flight; unprocessed deliveries stay
    /// in the inbox for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut sampled: Option<std::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let now = Utc::now();
            let claimed = self
                .store
                .claim_deliveries(&self.owner, now, now + CLAIM, BATCH)
                .await;
            let idle = match claimed {
                Ok(deliveries) if deliveries.is_empty() => true,
                Ok(deliveries) => {
                    self.process_batch(deliveries).await;
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim webhook deliveries; retrying");
                    true
                }
            };
            // A count of the inbox, not on every round: every few seconds.
            if sampled.is_none_or(|at| at.elapsed() >= BACKLOG_SAMPLE) {
                if let Ok(n) = self.store.inbox_backlog().await {
                    metrics::gauge!("webhook_inbox_backlog").set(n as f64);
                }
                sampled = Some(std::time::Instant::now());
            }
            if idle {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    changed = stop.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// Processes claimed deliveries together: the inline readings of all of
    /// them in one pipeline batch (one transaction, in order of receipt), and
    /// every end recorded in one store call, so a burst costs two commits, not
    /// two per delivery.
    async fn process_batch(&self, deliveries: Vec<Delivery>) {
        let mut ends: Vec<Option<Result<DeliveryEnd, String>>> = vec![None; deliveries.len()];
        // Inline readings: (position, records in the batch) per delivery.
        let mut inline: Vec<(usize, std::ops::Range<usize>, usize)> = Vec::new();
        let mut batch = Vec::new();
        for (i, delivery) in deliveries.iter().enumerate() {
            match parse_stored(delivery) {
                Err(end) => ends[i] = Some(Ok(end)),
                Ok(Body::Unknown(kind)) => {
                    ends[i] = Some(Ok(DeliveryEnd::Ignored {
                        reason: format!("unknown type {kind:?}"),
                    }))
                }
                Ok(Body::EgvsAvailable(range)) => {
                    ends[i] = Some(self.queue_window(&delivery.user_id, range).await)
                }
                Ok(Body::Egvs(page)) => {
                    let start = batch.len();
                    batch.extend(translate_for_pipeline(&delivery.user_id, &page));
                    inline.push((i, start..batch.len(), page.len()));
                }
            }
        }
        if !inline.is_empty() {
            match self.pipeline.ingest(batch).await {
                Ok(results) => {
                    for (i, records, sent) in inline {
                        ends[i] = Some(Ok(summarize(&results[records], sent)));
                    }
                }
                Err(e) => {
                    for (i, _, _) in inline {
                        ends[i] = Some(Err(e.to_string()));
                    }
                }
            }
        }
        let now = Utc::now();
        let ends: Vec<_> = deliveries
            .iter()
            .zip(ends)
            .map(|(d, end)| {
                let end = end.unwrap_or_else(|| Err("not processed".into()));
                (d.id, self.settle(d, end, now))
            })
            .collect();
        match self.store.finish_deliveries(&self.owner, ends, now).await {
            Ok(recorded) if recorded == deliveries.len() => {}
            Ok(recorded) => tracing::warn!(
                recorded,
                claimed = deliveries.len(),
                "some webhook claims lapsed before their ends were recorded"
            ),
            Err(e) => {
                // The claims lapse and the deliveries are processed again
                // (readings dedup; a window becomes a second job): nothing is lost.
                tracing::error!(error = %e, "cannot record webhook deliveries' ends");
            }
        }
    }

    /// The end to record for a processed delivery: a passing failure becomes a
    /// retry with backoff, or after `MAX_ATTEMPTS` a failure. Counted and logged
    /// (with the id and type, never the body).
    fn settle(
        &self,
        d: &Delivery,
        end: Result<DeliveryEnd, String>,
        now: DateTime<Utc>,
    ) -> DeliveryEnd {
        let (id, kind, attempts) = (d.id, d.kind.as_str(), d.attempts);
        let end = match end {
            Ok(end) => end,
            Err(error) if attempts >= MAX_ATTEMPTS => {
                tracing::error!(delivery_id = %id, kind, attempts, error, "webhook delivery failed for good; its body is kept for a replay");
                DeliveryEnd::Failed { error }
            }
            Err(error) => {
                tracing::warn!(delivery_id = %id, kind, attempts, error, "webhook delivery failed; will retry");
                DeliveryEnd::Retry {
                    not_before: now + retry_delay(attempts),
                    error,
                }
            }
        };
        let outcome = match &end {
            DeliveryEnd::Done { .. } => "done",
            DeliveryEnd::Ignored { .. } => "ignored",
            DeliveryEnd::Retry { .. } => "retry",
            DeliveryEnd::Failed { .. } => "failed",
        };
        metrics::counter!("webhook_deliveries_processed_total", "outcome" => outcome).increment(1);
        if let DeliveryEnd::Done { .. } = end {
            let lag = (now - d.received_at).to_std().unwrap_or_default();
            metrics::histogram!("webhook_receipt_to_processed_seconds", "type" => metric_kind(kind))
                .record(lag.as_secs_f64());
        }
        end
    }

    async fn queue_window(&self, user: &UserId, range: TimeRange) -> Result<DeliveryEnd, String> {
        let Some(engine) = &self.engine else {
            return Ok(DeliveryEnd::Failed {
                error: "Dexcom is not configured, so a window cannot be fetched".into(),
            });
        };
        let job = NewJob::new(
            user.clone(),
            Provider::Dexcom,
            Trigger::Webhook,
            Some(range),
            Utc::now(),
        );
        match engine
            .submit_requested(job)
            .await
            .map_err(|e| e.to_string())?
        {
            Created::New(job) => Ok(DeliveryEnd::Done {
                outcome: serde_json::json!({ "job_id": job.id }).to_string(),
            }),
            // The same window is already queued: that job fetches it.
            Created::Queued(job) => Ok(DeliveryEnd::Done {
                outcome: serde_json::json!({ "job_id": job.id, "coalesced": true }).to_string(),
            }),
            // Recorded, not retried: the user's next poll fetches everything
            // since the newest reading synced (minus SYNC_OVERLAP_SECONDS), and
            // the queued jobs fetch what they asked for.
            Created::QueueFull { max_queued } => Ok(DeliveryEnd::Ignored {
                reason: format!(
                    "skipped: {user} already has {max_queued} sync jobs queued \
                     (SYNC_MAX_QUEUED_JOBS_PER_USER); the next poll fetches new data"
                ),
            }),
            other => Err(format!(
                "unexpected outcome queuing a webhook window: {other:?}"
            )),
        }
    }
}

/// A stored delivery's body, parsed; or the end of one that cannot be.
fn parse_stored(delivery: &Delivery) -> Result<Body, DeliveryEnd> {
    let Some(body) = &delivery.body else {
        return Err(DeliveryEnd::Failed {
            error: "the stored body is missing".into(),
        });
    };
    // Checked before the 202; only a changed parser can fail here.
    Body::parse(body).map_err(|errors| {
        let why: Vec<_> = errors
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.message))
            .collect();
        DeliveryEnd::Failed {
            error: format!("unreadable body: {}", why.join("; ")),
        }
    })
}

/// What an inline delivery's records came to.
fn summarize(results: &[RecordResult], records: usize) -> DeliveryEnd {
    let tally = Tally::of(results);
    DeliveryEnd::Done {
        outcome: serde_json::json!({
            "records": records, "inserted": tally.inserted, "updated": tally.updated,
            "duplicates": tally.duplicates, "rejected": tally.rejected
        })
        .to_string(),
    }
}

/// Known types by name; anything else as `other` (a label per unknown string
/// would let senders grow the metric without bound).
pub fn metric_kind(kind: &str) -> &'static str {
    match kind {
        "egvs.available" => "egvs.available",
        "egvs" => "egvs",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(raw: &str) -> Vec<String> {
        Body::parse(raw.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn known_types_parse_and_unknown_ones_are_kept_by_name() {
        let window = Body::parse(
            br#"{"type":"egvs.available","startDate":"2026-11-01T00:00:00+01:00","endDate":"2026-11-01T06:00:00Z"}"#,
        )
        .unwrap();
        let Body::EgvsAvailable(range) = window else {
            panic!("a window")
        };
        assert_eq!(range.start.to_rfc3339(), "2026-10-31T23:00:00+00:00");
        assert_eq!(Body::EgvsAvailable(range).kind(), "egvs.available");
        let Body::Egvs(page) =
            Body::parse(br#"{"type":"egvs","records":[{"systemTime":"x"},7]}"#).unwrap()
        else {
            panic!("records")
        };
        // Unreadable records are kept for the pipeline to reject, not dropped.
        assert_eq!(page.len(), 2);
        let unknown = Body::parse(br#"{"type":"calibrations","a":1}"#).unwrap();
        assert_eq!(unknown.kind(), "calibrations");
        assert_eq!(metric_kind(unknown.kind()), "other");
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(pointers("nope"), [""]);
        assert_eq!(pointers(r#"{"type": 3}"#), ["/type"]);
        assert_eq!(pointers(r#"{"type":"egvs","records":{}}"#), ["/records"]);
        assert_eq!(
            pointers(r#"{"type":"egvs.available"}"#),
            ["/startDate", "/endDate"]
        );
        assert_eq!(
            pointers(
                r#"{"type":"egvs.available","startDate":"2026-01-01T00:00:00Z","endDate":"2026-06-01T00:00:00Z"}"#
            ),
            ["/endDate"],
            "at most 90 days"
        );
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let secs: Vec<u64> = (1..=MAX_ATTEMPTS + 2)
            .map(|a| retry_delay(a).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256]);
    }
}

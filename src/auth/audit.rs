//! The audit trail: who accessed or changed whose data, what, when, with which
//! outcome and request id. Entries carry no glucose values, tokens or secrets,
//! only identifiers and names. The store keeps them append-only.

use chrono::{DateTime, Utc};

use super::Roles;
use crate::domain::UserId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The principal's user id.
    pub actor: UserId,
    pub actor_roles: Roles,
    /// e.g. `read_readings`, `manage_shares` (see `policy::Action`).
    pub action: &'static str,
    /// Whose data.
    pub target_user: UserId,
    /// `allowed` or `denied` by policy.
    pub decision: &'static str,
    /// The HTTP status the request ended with.
    pub status: u16,
    pub request_id: String,
}

/// Entries written together: shared, so that a failed write can be retried and
/// the writer can then reuse the buffer.
pub type AuditBatch = std::sync::Arc<Vec<AuditEntry>>;

/// An entry as stored, with its position in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Which entries to read: optionally one user's, in `[from, until)`, after a
/// position, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub target_user: Option<UserId>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// Writes the trail in the background, in batches, so that recording an access
/// costs a request a channel send, not a database write. Entries reach the
/// store within about `GATHER` (plus one write); `shutdown` writes what is left.
/// A full channel makes requests wait (nothing is dropped). Entries in the
/// channel when the process is killed are lost: the trail is as durable as the
/// last 100 ms allow.
pub struct AuditLog {
    /// Never dropped while the log lives, so a request sends without taking a
    /// lock or cloning it; `shutdown` closes the channel from the writer's side.
    sender: tokio::sync::mpsc::Sender<AuditEntry>,
    close: std::sync::Arc<tokio::sync::Notify>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

const CHANNEL: usize = 65_536;
const BATCH: usize = 16_384;
/// How long a batch gathers before it is written (the trail's lag).
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

impl AuditLog {
    /// Starts the writer (needs a Tokio runtime).
    pub fn start(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL);
        let close = std::sync::Arc::new(tokio::sync::Notify::new());
        let closing = close.clone();
        let writer = tokio::spawn(async move {
            let mut batch: Vec<AuditEntry> = Vec::with_capacity(BATCH);
            loop {
                let received = tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    // Refuse new entries; what is queued still drains below.
                    () = closing.notified() => { rx.close(); continue }
                };
                if received == 0 {
                    break; // closed and drained
                }
                // Let a batch gather: one transaction per interval rather than
                // per request, and no wake-up of this task per entry meanwhile.
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = closing.notified() => rx.close(),
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
                    }
                }
                let entries: AuditBatch = std::sync::Arc::new(std::mem::take(&mut batch));
                let mut wait = std::time::Duration::from_millis(50);
                // A failing store is retried: the trail must not lose entries.
                while let Err(e) = store.append_audit(std::sync::Arc::clone(&entries)).await {
                    tracing::error!(error = %e, entries = entries.len(), "cannot write the audit trail; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                metrics::counter!("audit_entries_written_total").increment(entries.len() as u64);
                // Keep the buffer (megabytes under load) for the next batch.
                if let Ok(mut written) = std::sync::Arc::try_unwrap(entries) {
                    written.clear();
                    batch = written;
                }
            }
        });
        Self {
            sender: tx,
            close,
            writer: std::sync::Mutex::new(Some(writer)),
        }
    }

    pub async fn record(&self, entry: AuditEntry) {
        if self.sender.send(entry).await.is_err() {
            tracing::error!("audit entry after the trail was closed");
        }
    }

    /// Closes the trail and waits (at most `grace`) until every entry is written.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        // notify_one stores a permit if the writer is busy writing, so the close
        // is never missed.
        self.close.notify_one();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            match tokio::time::timeout(grace, writer).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the audit trail writer failed"),
                Err(_) => tracing::error!("the audit trail was not fully written before shutdown"),
            }
        }
    }
}

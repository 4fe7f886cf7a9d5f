//! The audit trail: who accessed or changed whose data, what, when, with which
//! outcome and request id. Entries carry no glucose values, tokens or secrets,
//! only identifiers and names. The store keeps them append-only.

use crate::records::audit::{AuditBatch, AuditEntry};

/// Writes the trail in the background, in batches, so that recording an access
/// costs a request one uncontended lock and a push, not a database write.
/// Entries reach the store within about `GATHER` (plus one write); `shutdown`
/// writes what is left. A full queue makes requests wait (nothing is dropped).
/// Entries still queued when the process is killed are lost: the trail is as
/// durable as the last 100 ms allow.
///
/// A mutex-guarded `Vec` that the writer swaps out whole, rather than a channel:
/// a push is a few dozen instructions and the writer takes a batch in one step,
/// where a bounded channel cost a semaphore permit, a slot and a receive per
/// entry (measured with callgrind on `GET latest`, docs/performance.md).
pub struct AuditLog {
    shared: std::sync::Arc<Shared>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    queue: std::sync::Mutex<Queue>,
    /// Told when the queue gets its first entry, and at shutdown.
    wake_writer: tokio::sync::Notify,
    /// Told at shutdown, to cut a gathering batch short.
    close: tokio::sync::Notify,
    /// Told after every swap, for requests waiting on a full queue.
    drained: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    entries: Vec<AuditEntry>,
    closed: bool,
}

/// Entries queued at most before requests wait for the writer.
const CAPACITY: usize = 65_536;
/// Entries written at most in one `append_audit`, which every store writes
/// atomically (DynamoDB's transactions hold up to 50,000).
const BATCH: usize = 16_384;
/// How long a batch gathers before it is written (the trail's lag).
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AuditLog {
    /// Starts the writer (needs a Tokio runtime).
    pub fn start(store: std::sync::Arc<dyn crate::store::AuditStore>) -> Self {
        let shared = std::sync::Arc::new(Shared {
            queue: Default::default(),
            wake_writer: tokio::sync::Notify::new(),
            close: tokio::sync::Notify::new(),
            drained: tokio::sync::Notify::new(),
        });
        let writer = tokio::spawn(write_batches(shared.clone(), store));
        Self {
            shared,
            writer: std::sync::Mutex::new(Some(writer)),
        }
    }

    pub async fn record(&self, entry: AuditEntry) {
        loop {
            let drained = {
                let mut queue = self.shared.queue();
                if queue.closed {
                    tracing::error!("audit entry after the trail was closed");
                    return;
                }
                if queue.entries.len() < CAPACITY {
                    queue.entries.push(entry);
                    let first = queue.entries.len() == 1;
                    drop(queue);
                    if first {
                        // Stores a permit if the writer is busy: never missed.
                        self.shared.wake_writer.notify_one();
                    }
                    return;
                }
                // Made under the lock, so the writer's next swap (which takes
                // it) comes after and wakes this request.
                self.shared.drained.notified()
            };
            drained.await;
        }
    }

    /// Closes the trail and waits (at most `grace`) until every entry is written.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.shared.queue().closed = true;
        // Each stores a permit if the writer is not waiting on it: never missed.
        self.shared.wake_writer.notify_one();
        self.shared.close.notify_one();
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

/// The writer: waits for a first entry, lets a batch gather, takes the queue
/// (at most `BATCH` of it) and writes it, retrying a failing store (the trail
/// must not lose entries), until the trail is closed and empty.
async fn write_batches(
    shared: std::sync::Arc<Shared>,
    store: std::sync::Arc<dyn crate::store::AuditStore>,
) {
    let mut spare: Vec<AuditEntry> = Vec::new();
    loop {
        let (queued, closed) = {
            let queue = shared.queue();
            (queue.entries.len(), queue.closed)
        };
        if queued == 0 && !closed {
            shared.wake_writer.notified().await;
        }
        if queued < BATCH && !closed {
            // Let a batch gather: one transaction per interval rather than per
            // request. Shutdown cuts the wait short.
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = shared.close.notified() => {}
            }
        }
        let (batch, closed) = {
            let mut queue = shared.queue();
            let batch = if queue.entries.len() <= BATCH {
                std::mem::replace(&mut queue.entries, std::mem::take(&mut spare))
            } else {
                queue.entries.drain(..BATCH).collect()
            };
            (batch, queue.closed)
        };
        shared.drained.notify_waiters();
        if batch.is_empty() {
            if closed {
                return;
            }
            spare = batch;
            continue;
        }
        let entries: AuditBatch = std::sync::Arc::new(batch);
        let mut wait = std::time::Duration::from_millis(50);
        while let Err(e) = store.append_audit(std::sync::Arc::clone(&entries)).await {
            tracing::error!(error = %e, entries = entries.len(), "cannot write the audit trail; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
        metrics::counter!("audit_entries_written_total").increment(entries.len() as u64);
        // Keep the buffer (megabytes under load) for the next swap.
        spare = std::sync::Arc::try_unwrap(entries).unwrap_or_default();
        spare.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;
    use crate::domain::UserId;
    use crate::records::audit::AuditQuery;
    use crate::records::roles::Roles;
    use crate::store::sqlite::SqliteStore;
    use crate::store::Store;

    fn entry(i: usize) -> AuditEntry {
        let user = UserId::parse("alice").expect("user id");
        AuditEntry {
            at: chrono::Utc::now(),
            actor: user.clone(),
            actor_roles: Roles::default(),
            action: "read_readings",
            target_user: user,
            decision: "allowed",
            status: 200,
            request_id: format!("r{i}"),
        }
    }

    /// Twice what the queue holds, from eight tasks at once: requests wait for
    /// the writer instead of losing entries, shutdown writes the rest, and an
    /// entry after shutdown is refused rather than half-written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_requests_wait_and_shutdown_writes_everything() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("audit.db"), Durability::Normal).expect("store"),
        );
        let log = Arc::new(AuditLog::start(store.clone()));
        let total = 2 * CAPACITY + 7;
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in (t..total).step_by(8) {
                        log.record(entry(i)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("recording task");
        }
        log.shutdown(Duration::from_secs(60)).await;
        log.record(entry(total)).await;

        let query = AuditQuery {
            target_user: None,
            from: None,
            until: None,
            after_seq: None,
            limit: total + 10,
        };
        let stored = store.query_audit(query).await.expect("query");
        assert_eq!(stored.len(), total, "every entry once, none after shutdown");
        let ids: HashSet<String> = stored.into_iter().map(|r| r.entry.request_id).collect();
        let expected: HashSet<String> = (0..total).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, expected);
    }
}

//! SQLite side of the audit trail: batched appends and filtered reads.
//!
//! A batch is stored as runs of consecutive, alike entries (see the migration
//! `0004_audit.sql`): one row per run, with each entry's time and request id in
//! JSON arrays. Inserting a row costs SQLite some 10,000 instructions, as much as
//! the rest of a `GET latest`, and an app polling one patient makes long runs.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::params;

use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::audit::Action;
use crate::records::audit::{AuditBatch, AuditEntry, AuditQuery, AuditRecord};
use crate::records::roles::Role;
use crate::store::AuditStore;
use crate::store::StoreError;
use async_trait::async_trait;

/// Entries one row may hold: an entry's position is `seq << RUN_BITS | index`.
const RUN_BITS: u32 = 16;
const MAX_RUN: usize = 1 << RUN_BITS;

/// Stored names back to the static strings entries use.
fn action_name(raw: &str) -> Result<&'static str, StoreError> {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .find(|a| *a == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {raw:?}")))
}

/// Alike entries differ only in time and request id.
fn alike(a: &AuditEntry, b: &AuditEntry) -> bool {
    a.actor == b.actor
        && a.actor_roles == b.actor_roles
        && a.action == b.action
        && a.target_user == b.target_user
        && a.decision == b.decision
        && a.status == b.status
}

/// Splits a batch into runs of consecutive alike entries, each at most `MAX_RUN`.
fn runs(entries: &[AuditEntry]) -> impl Iterator<Item = &[AuditEntry]> {
    entries.chunk_by(alike).flat_map(|run| run.chunks(MAX_RUN))
}

/// One stored row: what its entries share, and each one's time and request id.
struct Row {
    seq: i64,
    first_at_ms: i64,
    shared: AuditEntry,
    at_offsets_ms: String,
    request_ids: String,
}

impl Row {
    /// The row's entries, with their positions.
    fn expand(self) -> Result<impl Iterator<Item = AuditRecord>, StoreError> {
        let offsets: Vec<i64> = serde_json::from_str(&self.at_offsets_ms)
            .map_err(|e| StoreError::Corrupt(format!("audit times: {e}")))?;
        let ids: Vec<String> = serde_json::from_str(&self.request_ids)
            .map_err(|e| StoreError::Corrupt(format!("audit request ids: {e}")))?;
        if offsets.len() != ids.len() || offsets.len() > MAX_RUN {
            return Err(StoreError::Corrupt("audit run lengths differ".into()));
        }
        let at = |offset: i64| {
            Utc.timestamp_millis_opt(self.first_at_ms.saturating_add(offset))
                .single()
                .ok_or_else(|| StoreError::Corrupt("audit time".into()))
        };
        let times = offsets.into_iter().map(at).collect::<Result<Vec<_>, _>>()?;
        let (seq, shared) = (self.seq, self.shared);
        Ok(times
            .into_iter()
            .zip(ids)
            .enumerate()
            .map(move |(i, (at, request_id))| AuditRecord {
                seq: (seq << RUN_BITS) | i as i64,
                entry: AuditEntry {
                    at,
                    request_id,
                    ..shared.clone()
                },
            }))
    }
}

fn encoding(e: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("encoding an audit run: {e}"))
}

/// A run's request ids as a JSON array of strings. An id that needs no escaping
/// (no quote, backslash or control character: every id the request-id layer
/// makes) is copied as it is; serde_json's escaper, which goes byte by byte, was
/// the writer's largest cost per entry.
fn request_ids_json(run: &[AuditEntry]) -> Result<String, StoreError> {
    let mut out =
        String::with_capacity(2 + run.iter().map(|e| e.request_id.len() + 3).sum::<usize>());
    out.push('[');
    for (i, e) in run.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let id = e.request_id.as_str();
        // Without short-circuits, so that the check runs on vectors.
        let plain = id
            .bytes()
            .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
        if plain {
            out.push('"');
            out.push_str(id);
            out.push('"');
        } else {
            out.push_str(&serde_json::to_string(id).map_err(encoding)?);
        }
    }
    out.push(']');
    Ok(out)
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO audit_log (first_at_ms, last_at_ms, actor, actor_roles, \
                         action, target_user, decision, status, accesses, at_offsets_ms, \
                         request_ids) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )
                    .map_err(internal)?;
                for run in runs(&entries) {
                    let e = &run[0];
                    let mut offsets: Vec<i64> = run.iter().map(|e| millis(e.at)).collect();
                    let first = offsets.iter().copied().min().unwrap_or(0);
                    let last = offsets.iter().copied().max().unwrap_or(0);
                    offsets.iter_mut().for_each(|at| *at -= first);
                    let offsets = serde_json::to_string(&offsets).map_err(encoding)?;
                    let ids = request_ids_json(run)?;
                    let roles: Vec<&str> = e.actor_roles.iter().map(|r| r.as_str()).collect();
                    insert
                        .execute(params![
                            first,
                            last,
                            e.actor.as_str(),
                            roles.join(","),
                            e.action,
                            e.target_user.as_str(),
                            e.decision,
                            e.status,
                            run.len() as i64,
                            offsets,
                            ids,
                        ])
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn query_audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| {
            let from = q.from.map_or(i64::MIN, millis);
            let until = q.until.map_or(i64::MAX, millis);
            let after = q.after_seq.unwrap_or(-1);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, first_at_ms, actor, actor_roles, action, target_user, decision, \
                     status, at_offsets_ms, request_ids FROM audit_log \
                     WHERE (?1 IS NULL OR target_user = ?1) AND last_at_ms >= ?2 \
                     AND first_at_ms < ?3 AND seq >= ?4 ORDER BY seq",
                )
                .map_err(internal)?;
            let mut rows = stmt
                .query(params![
                    q.target_user.as_ref().map(|u| u.as_str()),
                    from,
                    until,
                    // The row holding the cursor's position, whose later entries count.
                    after.max(0) >> RUN_BITS,
                ])
                .map_err(internal)?;
            let mut out = Vec::new();
            while out.len() < q.limit {
                let Some(r) = rows.next().map_err(internal)? else {
                    break;
                };
                let text = |i: usize| r.get::<_, String>(i).map_err(internal);
                let row = Row {
                    seq: r.get(0).map_err(internal)?,
                    first_at_ms: r.get(1).map_err(internal)?,
                    shared: AuditEntry {
                        at: DateTime::UNIX_EPOCH,
                        actor: UserId::parse(&text(2)?)
                            .map_err(|e| StoreError::Corrupt(format!("audit actor: {e}")))?,
                        actor_roles: text(3)?.split(',').filter_map(Role::parse).collect(),
                        action: action_name(&text(4)?)?,
                        target_user: UserId::parse(&text(5)?)
                            .map_err(|e| StoreError::Corrupt(format!("audit user id: {e}")))?,
                        decision: if text(6)? == "allowed" {
                            "allowed"
                        } else {
                            "denied"
                        },
                        status: r.get(7).map_err(internal)?,
                        request_id: String::new(),
                    },
                    at_offsets_ms: text(8)?,
                    request_ids: text(9)?,
                };
                out.extend(
                    row.expand()?
                        .filter(|rec| rec.seq > after)
                        .filter(|rec| (from..until).contains(&millis(rec.entry.at)))
                        .take(q.limit - out.len()),
                );
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(target: &str, status: u16, id: usize) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            actor: UserId::parse("doc").unwrap(),
            actor_roles: [Role::Clinician].into(),
            action: "read_readings",
            target_user: UserId::parse(target).unwrap(),
            decision: "allowed",
            status,
            request_id: format!("r{id}"),
        }
    }

    #[test]
    fn runs_are_consecutive_alike_entries_and_never_overflow_a_position() {
        let mut batch: Vec<AuditEntry> = (0..MAX_RUN + 3).map(|i| entry("a", 200, i)).collect();
        batch.push(entry("b", 200, 0));
        batch.push(entry("a", 304, 0));
        batch.push(entry("a", 304, 1));
        let lengths: Vec<usize> = runs(&batch).map(<[AuditEntry]>::len).collect();
        assert_eq!(lengths, [MAX_RUN, 3, 1, 2]);
    }

    #[test]
    fn request_ids_are_a_json_array_whatever_they_hold() {
        let ids = [
            "0b9c5f0e-6a43-4d3c-9f5e-2f1d7c0a1b2c",
            "",
            "with \"quotes\" and \\ backslash",
            "tab\there, newline\n, nul\u{0}",
            "ünïcødé ✓",
        ];
        let run: Vec<AuditEntry> = ids
            .iter()
            .map(|id| AuditEntry {
                request_id: (*id).to_owned(),
                ..entry("a", 200, 0)
            })
            .collect();
        let json = request_ids_json(&run).expect("encode");
        let back: Vec<String> = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back, ids);
    }
}

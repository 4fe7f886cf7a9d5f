//! SQLite side of the audit trail: batched appends and filtered reads.

use chrono::{TimeZone, Utc};
use rusqlite::params;

use super::{internal, SqliteStore};
use crate::auth::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::auth::policy::Action;
use crate::auth::Role;
use crate::domain::UserId;
use crate::store::StoreError;

/// Stored names back to the static strings entries use.
fn action_name(raw: &str) -> Result<&'static str, StoreError> {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .find(|a| *a == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {raw:?}")))
}

impl SqliteStore {
    pub(super) async fn append_audit_impl(
        &self,
        entries: std::sync::Arc<[AuditEntry]>,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO audit_log (at_ms, actor, actor_roles, action, target_user, \
                         decision, status, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(internal)?;
                for e in entries.iter() {
                    let roles: Vec<&str> = e.actor_roles.iter().map(|r| r.as_str()).collect();
                    insert
                        .execute(params![
                            e.at.timestamp_millis(),
                            e.actor,
                            roles.join(","),
                            e.action,
                            e.target_user.as_str(),
                            e.decision,
                            e.status,
                            e.request_id,
                        ])
                        .map_err(internal)?;
                }
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    pub(super) async fn query_audit_impl(
        &self,
        q: AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at_ms, actor, actor_roles, action, target_user, decision, status, \
                     request_id FROM audit_log WHERE (?1 IS NULL OR target_user = ?1) \
                     AND at_ms >= ?2 AND at_ms < ?3 AND seq > ?4 ORDER BY seq LIMIT ?5",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    params![
                        q.target_user.as_ref().map(|u| u.as_str()),
                        q.from.map_or(i64::MIN, |t| t.timestamp_millis()),
                        q.until.map_or(i64::MAX, |t| t.timestamp_millis()),
                        q.after_seq.unwrap_or(0),
                        i64::try_from(q.limit).unwrap_or(i64::MAX),
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, u16>(7)?,
                            r.get::<_, String>(8)?,
                        ))
                    },
                )
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, at, actor, roles, action, target, decision, status, request_id) =
                    row.map_err(internal)?;
                out.push(AuditRecord {
                    seq,
                    entry: AuditEntry {
                        at: Utc
                            .timestamp_millis_opt(at)
                            .single()
                            .ok_or_else(|| StoreError::Corrupt("audit time".into()))?,
                        actor,
                        actor_roles: roles.split(',').filter_map(Role::parse).collect(),
                        action: action_name(&action)?,
                        target_user: UserId::parse(&target)
                            .map_err(|e| StoreError::Corrupt(format!("audit user id: {e}")))?,
                        decision: if decision == "allowed" {
                            "allowed"
                        } else {
                            "denied"
                        },
                        status,
                        request_id,
                    },
                });
            }
            Ok(out)
        })
        .await
    }
}

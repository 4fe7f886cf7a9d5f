//! PostgreSQL side of the audit trail: batched appends (one statement per
//! batch) and filtered reads. The table refuses changes (see its migration).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgBindIterExt, PgRow};

use super::{advisory_lock, col, db_error, int, ms, user_id, PostgresStore};
use crate::records::audit::Action;
use crate::records::audit::{AuditBatch, AuditEntry, AuditQuery, AuditRecord};
use crate::records::roles::Role;
use crate::store::AuditStore;
use crate::store::StoreError;
use async_trait::async_trait;

/// Stored names back to the static strings entries use.
fn action_name(raw: &str) -> Result<&'static str, StoreError> {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .find(|a| *a == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {raw:?}")))
}

fn decision_name(raw: &str) -> Result<&'static str, StoreError> {
    ["allowed", "denied"]
        .into_iter()
        .find(|d| *d == raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit decision {raw:?}")))
}

fn read_record(row: &PgRow) -> Result<AuditRecord, StoreError> {
    let roles: Vec<String> = col(row, 3)?;
    let status: i32 = col(row, 7)?;
    Ok(AuditRecord {
        seq: col(row, 0)?,
        entry: AuditEntry {
            at: col(row, 1)?,
            actor: user_id(col(row, 2)?, "audit actor")?,
            actor_roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
            action: action_name(col(row, 4)?)?,
            target_user: user_id(col(row, 5)?, "audit target")?,
            decision: decision_name(col(row, 6)?)?,
            status: u16::try_from(status)
                .map_err(|e| StoreError::Corrupt(format!("audit status: {e}")))?,
            request_id: col(row, 8)?,
        },
    })
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, entries: AuditBatch) -> Result<(), StoreError> {
        let entries: &[AuditEntry] = &entries;
        if entries.is_empty() {
            return Ok(());
        }
        let roles: Vec<String> = entries
            .iter()
            .map(|e| {
                e.actor_roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let mut tx = self.begin().await?;
        // One batch at a time: positions are handed out in commit order, so a
        // reader paging by position cannot pass an entry not yet committed.
        advisory_lock(&mut tx, "cgm-hub audit trail", "").await?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, actor_roles, action, target_user, decision, \
             status, request_id) \
             SELECT at, actor, string_to_array(roles, ','), action, target_user, decision, \
                    status, request_id \
             FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::int4[], $8::text[]) WITH ORDINALITY \
                  AS e(at, actor, roles, action, target_user, decision, status, request_id, \
                       position) \
             ORDER BY position",
        )
        .bind(entries.iter().map(|e| ms(e.at)).bind_iter())
        .bind(entries.iter().map(|e| e.actor.as_str()).bind_iter())
        .bind(&roles)
        .bind(entries.iter().map(|e| e.action).bind_iter())
        .bind(entries.iter().map(|e| e.target_user.as_str()).bind_iter())
        .bind(entries.iter().map(|e| e.decision).bind_iter())
        .bind(entries.iter().map(|e| i32::from(e.status)).bind_iter())
        .bind(entries.iter().map(|e| e.request_id.as_str()).bind_iter())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn query_audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let from: Option<DateTime<Utc>> = q.from.map(ms);
        let until: Option<DateTime<Utc>> = q.until.map(ms);
        sqlx::query(
            "SELECT seq, at, actor, actor_roles, action, target_user, decision, status, \
             request_id FROM audit_log \
             WHERE ($1::text IS NULL OR target_user = $1) \
             AND at >= COALESCE($2, '-infinity') AND at < COALESCE($3, 'infinity') \
             AND seq > $4 ORDER BY seq LIMIT $5",
        )
        .bind(q.target_user.as_ref().map(|u| u.as_str()))
        .bind(from)
        .bind(until)
        .bind(q.after_seq.unwrap_or(i64::MIN))
        .bind(int(q.limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_record)
        .collect()
    }
}

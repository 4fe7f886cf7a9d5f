//! SQLite side of the journal: one row per entry in `journal_entries`, the
//! kind's fields as JSON; the partial unique index `journal_by_external_id`
//! makes uploads idempotent, and every change writes its event to the outbox
//! in the same transaction (a deleted meal's stored response goes in it too).

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use uuid::Uuid;

use super::{internal, outbox, SqliteStore};
use crate::domain::UserId;
use crate::records::events::{Event, JournalChangeKind};
use crate::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use crate::store::{JournalStore, StoreError};

const COLUMNS: &str = "id, user_id, kind, source, external_id, created_at_ms, updated_at_ms, body";

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("journal time {ms} out of range")))
}

fn read_entry(row: &Row<'_>) -> rusqlite::Result<Result<JournalEntry, StoreError>> {
    let id: String = row.get(0)?;
    let user: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let source: String = row.get(3)?;
    let external_id: Option<String> = row.get(4)?;
    let created: i64 = row.get(5)?;
    let updated: i64 = row.get(6)?;
    let body: String = row.get(7)?;
    Ok((|| {
        let kind = JournalKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("journal kind {kind:?}")))?;
        Ok(JournalEntry {
            id: Uuid::parse_str(&id)
                .map_err(|e| StoreError::Corrupt(format!("journal id: {e}")))?,
            user_id: UserId::parse(&user)
                .map_err(|e| StoreError::Corrupt(format!("journal user: {e}")))?,
            source,
            external_id,
            created_at: time(created)?,
            updated_at: time(updated)?,
            body: JournalBody::from_json(kind, &body)
                .map_err(|e| StoreError::Corrupt(format!("journal body: {e}")))?,
        })
    })())
}

fn body_json(entry: &JournalEntry) -> Result<String, StoreError> {
    serde_json::to_string(&entry.body.to_json())
        .map_err(|e| StoreError::Internal(format!("journal body: {e}")))
}

/// The entry stored under `entry`'s external id, if it has one.
fn by_external_id(
    tx: &Transaction<'_>,
    entry: &JournalEntry,
) -> Result<Option<JournalEntry>, StoreError> {
    let Some(external_id) = &entry.external_id else {
        return Ok(None);
    };
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM journal_entries WHERE user_id = ?1 AND kind = ?2 \
         AND source = ?3 AND external_id = ?4"
    ))
    .map_err(internal)?
    .query_row(
        params![
            entry.user_id.as_str(),
            entry.kind().as_str(),
            entry.source,
            external_id
        ],
        read_entry,
    )
    .optional()
    .map_err(internal)?
    .transpose()
}

/// Inserts one entry with its event unless its external id is stored.
fn create(tx: &Transaction<'_>, entry: JournalEntry) -> Result<JournalCreated, StoreError> {
    if let Some(existing) = by_external_id(tx, &entry)? {
        return Ok(JournalCreated::Existing(existing));
    }
    tx.prepare_cached(
        "INSERT INTO journal_entries (id, user_id, kind, at_ms, source, external_id, \
         created_at_ms, updated_at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(internal)?
    .execute(params![
        entry.id.to_string(),
        entry.user_id.as_str(),
        entry.kind().as_str(),
        entry.at().timestamp_millis(),
        entry.source,
        entry.external_id,
        entry.created_at.timestamp_millis(),
        entry.updated_at.timestamp_millis(),
        body_json(&entry)?,
    ])
    .map_err(internal)?;
    outbox::append(
        tx,
        [Event::journal_changed(&entry, JournalChangeKind::Created)],
    )?;
    Ok(JournalCreated::Created(entry))
}

/// Stores a batch as `create_journal_entries` does, in the caller's
/// transaction (also the Apple Health upload's, `health_upload`).
pub(super) fn create_all(
    tx: &Transaction<'_>,
    entries: Vec<JournalEntry>,
) -> Result<Vec<JournalCreated>, StoreError> {
    entries.into_iter().map(|entry| create(tx, entry)).collect()
}

/// Whether a batch wrote anything (and so an outbox event).
pub(super) fn any_created(created: &[JournalCreated]) -> bool {
    created
        .iter()
        .any(|c| matches!(c, JournalCreated::Created(_)))
}

fn get(
    conn: &rusqlite::Connection,
    user: &UserId,
    kind: JournalKind,
    id: Uuid,
) -> Result<Option<JournalEntry>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM journal_entries WHERE id = ?1 AND user_id = ?2 AND kind = ?3"
    ))
    .map_err(internal)?
    .query_row(
        params![id.to_string(), user.as_str(), kind.as_str()],
        read_entry,
    )
    .optional()
    .map_err(internal)?
    .transpose()
}

#[async_trait]
impl JournalStore for SqliteStore {
    async fn create_journal_entry(
        &self,
        entry: JournalEntry,
    ) -> Result<JournalCreated, StoreError> {
        let mut created = self.create_journal_entries(vec![entry]).await?;
        created
            .pop()
            .ok_or_else(|| StoreError::Internal("journal create returned nothing".into()))
    }

    async fn create_journal_entries(
        &self,
        entries: Vec<JournalEntry>,
    ) -> Result<Vec<JournalCreated>, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let out = create_all(&tx, entries)?;
            tx.commit().map_err(internal)?;
            if any_created(&out) {
                inner.outbox_written.notify_one();
            }
            Ok(out)
        })
        .await
    }

    async fn get_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let user = user.clone();
        self.read(move |conn| get(conn, &user, kind, id)).await
    }

    async fn list_journal_entries(
        &self,
        query: JournalQuery,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        self.read(move |conn| {
            let (cmp, order) = if query.descending {
                ("<", "DESC")
            } else {
                (">", "ASC")
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM journal_entries WHERE user_id = ?1 AND kind = ?2 \
                     AND at_ms >= ?3 AND at_ms < ?4 \
                     AND (?5 IS NULL OR at_ms {cmp} ?5 OR (at_ms = ?5 AND id {cmp} ?6)) \
                     ORDER BY at_ms {order}, id {order} LIMIT ?7"
                ))
                .map_err(internal)?;
            let (after_ms, after_id) = match query.after {
                Some((at, id)) => (Some(at.timestamp_millis()), Some(id.to_string())),
                None => (None, None),
            };
            let rows = stmt
                .query_map(
                    params![
                        query.user_id.as_str(),
                        query.kind.as_str(),
                        query.from.map_or(i64::MIN, |t| t.timestamp_millis()),
                        query.until.map_or(i64::MAX, |t| t.timestamp_millis()),
                        after_ms,
                        after_id,
                        i64::try_from(query.limit).unwrap_or(i64::MAX),
                    ],
                    read_entry,
                )
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    async fn update_journal_entry(
        &self,
        next: JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let Some(stored) = get(&tx, &next.user_id, next.kind(), next.id)? else {
                return Ok(None);
            };
            let entry = stored.replaced(next.body, next.updated_at);
            tx.execute(
                "UPDATE journal_entries SET at_ms = ?2, updated_at_ms = ?3, body = ?4 \
                 WHERE id = ?1",
                params![
                    entry.id.to_string(),
                    entry.at().timestamp_millis(),
                    entry.updated_at.timestamp_millis(),
                    body_json(&entry)?,
                ],
            )
            .map_err(internal)?;
            outbox::append(
                &tx,
                [Event::journal_changed(&entry, JournalChangeKind::Updated)],
            )?;
            tx.commit().map_err(internal)?;
            inner.outbox_written.notify_one();
            Ok(Some(entry))
        })
        .await
    }

    async fn delete_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let inner = self.inner.clone();
        let user = user.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let Some(stored) = get(&tx, &user, kind, id)? else {
                return Ok(false);
            };
            tx.execute(
                "DELETE FROM journal_entries WHERE id = ?1",
                [id.to_string()],
            )
            .map_err(internal)?;
            // Its stored response goes with it (only a meal has one).
            super::meal_responses::delete_of_meal(&tx, id)?;
            outbox::append(
                &tx,
                [Event::journal_changed(&stored, JournalChangeKind::Deleted)],
            )?;
            tx.commit().map_err(internal)?;
            inner.outbox_written.notify_one();
            Ok(true)
        })
        .await
    }
}

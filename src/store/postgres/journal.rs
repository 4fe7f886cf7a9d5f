//! PostgreSQL side of the journal: one row per entry in `journal_entries`,
//! the kind's fields as JSON; the partial unique index
//! `journal_by_external_id` makes uploads idempotent across instances, and
//! every change writes its event to the outbox in the same transaction.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{col, db_error, int, opt_ms, outbox, user_id, PostgresStore};
use crate::domain::UserId;
use crate::records::events::{Event, JournalChangeKind};
use crate::records::journal::{
    JournalBody, JournalCreated, JournalEntry, JournalKind, JournalQuery,
};
use crate::store::{JournalStore, StoreError};

macro_rules! columns {
    () => {
        "id, user_id, kind, source, external_id, created_at, updated_at, body"
    };
}

fn read_entry(row: &PgRow) -> Result<JournalEntry, StoreError> {
    let kind: &str = col(row, 2)?;
    let kind = JournalKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("journal kind {kind:?}")))?;
    let body: &str = col(row, 7)?;
    Ok(JournalEntry {
        id: col(row, 0)?,
        user_id: user_id(col(row, 1)?, "journal entry")?,
        source: col(row, 3)?,
        external_id: col(row, 4)?,
        created_at: col(row, 5)?,
        updated_at: col(row, 6)?,
        body: JournalBody::from_json(kind, body)
            .map_err(|e| StoreError::Corrupt(format!("journal body: {e}")))?,
    })
}

fn body_json(entry: &JournalEntry) -> Result<String, StoreError> {
    serde_json::to_string(&entry.body.to_json())
        .map_err(|e| StoreError::Internal(format!("journal body: {e}")))
}

/// Inserts one entry with its event unless its external id is stored (the
/// unique index decides, also against a concurrent insert of another instance).
async fn create(
    tx: &mut PgConnection,
    entry: JournalEntry,
) -> Result<(JournalCreated, usize), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO journal_entries (id, user_id, kind, at, source, external_id, created_at, \
         updated_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (user_id, kind, source, external_id) WHERE external_id IS NOT NULL \
         DO NOTHING",
    )
    .bind(entry.id)
    .bind(entry.user_id.as_str())
    .bind(entry.kind().as_str())
    .bind(super::ms(entry.at()))
    .bind(&entry.source)
    .bind(&entry.external_id)
    .bind(super::ms(entry.created_at))
    .bind(super::ms(entry.updated_at))
    .bind(body_json(&entry)?)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if inserted == 0 {
        let existing = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM journal_entries WHERE user_id = $1 AND kind = $2 AND source = $3 \
             AND external_id = $4"
        ))
        .bind(entry.user_id.as_str())
        .bind(entry.kind().as_str())
        .bind(&entry.source)
        .bind(&entry.external_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        return Ok((JournalCreated::Existing(read_entry(&existing)?), 0));
    }
    let events = outbox::append(
        &mut *tx,
        [Event::journal_changed(&entry, JournalChangeKind::Created)],
    )
    .await?;
    Ok((JournalCreated::Created(entry), events))
}

/// Stores a batch as `create_journal_entries` does, in the caller's
/// transaction (also the Apple Health upload's, `health_upload`): one result
/// per entry, and the outbox events written.
pub(super) async fn create_all(
    tx: &mut PgConnection,
    entries: Vec<JournalEntry>,
) -> Result<(Vec<JournalCreated>, usize), StoreError> {
    let mut out = Vec::with_capacity(entries.len());
    let mut events = 0;
    for entry in entries {
        let (created, n) = create(&mut *tx, entry).await?;
        out.push(created);
        events += n;
    }
    Ok((out, events))
}

#[async_trait]
impl JournalStore for PostgresStore {
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
        let mut tx = self.begin().await?;
        let (out, events) = create_all(&mut tx, entries).await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(out)
    }

    async fn get_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<Option<JournalEntry>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM journal_entries WHERE id = $1 AND user_id = $2 AND kind = $3"
        ))
        .bind(id)
        .bind(user.as_str())
        .bind(kind.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_entry)
        .transpose()
    }

    async fn list_journal_entries(
        &self,
        query: JournalQuery,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let sql = if query.descending {
            concat!(
                "SELECT ",
                columns!(),
                " FROM journal_entries WHERE user_id = $1 AND kind = $2 \
                 AND ($3::timestamptz IS NULL OR at >= $3) \
                 AND ($4::timestamptz IS NULL OR at < $4) \
                 AND ($5::timestamptz IS NULL OR (at, id) < ($5, $6::uuid)) \
                 ORDER BY at DESC, id DESC LIMIT $7"
            )
        } else {
            concat!(
                "SELECT ",
                columns!(),
                " FROM journal_entries WHERE user_id = $1 AND kind = $2 \
                 AND ($3::timestamptz IS NULL OR at >= $3) \
                 AND ($4::timestamptz IS NULL OR at < $4) \
                 AND ($5::timestamptz IS NULL OR (at, id) > ($5, $6::uuid)) \
                 ORDER BY at ASC, id ASC LIMIT $7"
            )
        };
        sqlx::query(sql)
            .bind(query.user_id.as_str())
            .bind(query.kind.as_str())
            .bind(opt_ms(query.from))
            .bind(opt_ms(query.until))
            .bind(opt_ms(query.after.map(|(at, _)| at)))
            .bind(query.after.map(|(_, id)| id))
            .bind(int(query.limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_error)?
            .iter()
            .map(read_entry)
            .collect()
    }

    async fn update_journal_entry(
        &self,
        next: JournalEntry,
    ) -> Result<Option<JournalEntry>, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE journal_entries SET at = $4, updated_at = $5, body = $6 \
             WHERE id = $1 AND user_id = $2 AND kind = $3 RETURNING ",
            columns!()
        ))
        .bind(next.id)
        .bind(next.user_id.as_str())
        .bind(next.kind().as_str())
        .bind(super::ms(next.at()))
        .bind(super::ms(next.updated_at))
        .bind(body_json(&next)?)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let entry = read_entry(&row)?;
        let events = outbox::append(
            &mut tx,
            [Event::journal_changed(&entry, JournalChangeKind::Updated)],
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(Some(entry))
    }

    async fn delete_journal_entry(
        &self,
        user: &UserId,
        kind: JournalKind,
        id: Uuid,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "DELETE FROM journal_entries WHERE id = $1 AND user_id = $2 AND kind = $3 \
             RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(user.as_str())
        .bind(kind.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(false);
        };
        let stored = read_entry(&row)?;
        let events = outbox::append(
            &mut tx,
            [Event::journal_changed(&stored, JournalChangeKind::Deleted)],
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(true)
    }
}

//! SQLite side of sharing: rows of `shares`, keyed (patient, grantee). The
//! per-patient limit is checked and written in one immediate transaction.

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::{internal, SqliteStore};
use crate::domain::UserId;
use crate::records::shares::{Share, ShareRole};
use crate::records::shares::{SharePage, ShareWrite};
use crate::store::ShareStore;
use crate::store::StoreError;
use async_trait::async_trait;

const COLUMNS: &str = "patient_id, grantee_id, role, created_at_ms, expires_at_ms";

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn read_share(row: &Row<'_>) -> rusqlite::Result<Result<Share, StoreError>> {
    let patient: String = row.get(0)?;
    let grantee: String = row.get(1)?;
    let role: String = row.get(2)?;
    let created: i64 = row.get(3)?;
    let expires: Option<i64> = row.get(4)?;
    Ok((|| {
        let id = |raw: &str| {
            UserId::parse(raw).map_err(|e| StoreError::Corrupt(format!("share user id: {e}")))
        };
        Ok(Share {
            patient_id: id(&patient)?,
            grantee_id: id(&grantee)?,
            role: ShareRole::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown share role {role:?}")))?,
            created_at: time(created)?,
            expires_at: expires.map(time).transpose()?,
        })
    })())
}

#[async_trait]
impl ShareStore for SqliteStore {
    async fn put_share(
        &self,
        share: Share,
        max_per_patient: usize,
    ) -> Result<ShareWrite, StoreError> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let (held, exists): (i64, bool) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(grantee_id = ?2), 0) > 0 FROM shares \
                     WHERE patient_id = ?1",
                    (share.patient_id.as_str(), share.grantee_id.as_str()),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(internal)?;
            if !exists && usize::try_from(held).unwrap_or(usize::MAX) >= max_per_patient {
                return Ok(ShareWrite::LimitReached);
            }
            tx.execute(
                &format!(
                    "INSERT INTO shares ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (patient_id, grantee_id) DO UPDATE SET role = excluded.role, \
                     created_at_ms = excluded.created_at_ms, expires_at_ms = excluded.expires_at_ms"
                ),
                params![
                    share.patient_id.as_str(),
                    share.grantee_id.as_str(),
                    share.role.as_str(),
                    share.created_at.timestamp_millis(),
                    share.expires_at.map(|t| t.timestamp_millis()),
                ],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)?;
            Ok(ShareWrite::Stored)
        })
        .await
    }

    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError> {
        let patient = patient.clone();
        self.read(move |conn| {
            // The primary key (patient_id, grantee_id) serves this seek.
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM shares WHERE patient_id = ?1 AND grantee_id > ?2 \
                     ORDER BY grantee_id LIMIT ?3"
                ))
                .map_err(internal)?;
            let after = page.after.as_ref().map_or("", |g| g.as_str()).to_owned();
            let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![patient.as_str(), after, limit], read_share)
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        let patient = patient.clone();
        let grantee = grantee.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM shares WHERE patient_id = ?1 AND grantee_id = ?2"
            ))
            .map_err(internal)?
            .query_row((patient.as_str(), grantee.as_str()), read_share)
            .optional()
            .map_err(internal)?
            .transpose()
        })
        .await
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        let patient = patient.clone();
        let grantee = grantee.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM shares WHERE patient_id = ?1 AND grantee_id = ?2",
                    (patient.as_str(), grantee.as_str()),
                )
                .map_err(internal)?;
            Ok(n == 1)
        })
        .await
    }
}

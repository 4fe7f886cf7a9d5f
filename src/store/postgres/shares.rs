//! PostgreSQL side of sharing: rows of `shares`, keyed (patient, grantee). A
//! grant is counted and written under a per-patient advisory lock, so two
//! instances cannot pass the per-patient limit together.

use sqlx::postgres::PgRow;

use super::{advisory_lock, col, db_error, int, ms, opt_ms, user_id, PostgresStore};
use crate::domain::UserId;
use crate::records::shares::{Share, ShareRole};
use crate::records::shares::{SharePage, ShareWrite};
use crate::store::ShareStore;
use crate::store::StoreError;
use async_trait::async_trait;

macro_rules! columns {
    () => {
        "patient_id, grantee_id, role, created_at, expires_at"
    };
}

fn read_share(row: &PgRow) -> Result<Share, StoreError> {
    let role: &str = col(row, 2)?;
    Ok(Share {
        patient_id: user_id(col(row, 0)?, "share")?,
        grantee_id: user_id(col(row, 1)?, "share")?,
        role: ShareRole::parse(role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown share role {role:?}")))?,
        created_at: col(row, 3)?,
        expires_at: col(row, 4)?,
    })
}

#[async_trait]
impl ShareStore for PostgresStore {
    async fn put_share(
        &self,
        share: Share,
        max_per_patient: usize,
    ) -> Result<ShareWrite, StoreError> {
        let mut tx = self.begin().await?;
        advisory_lock(&mut tx, "cgm-hub shares", share.patient_id.as_str()).await?;
        let (held, exists): (i64, bool) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(bool_or(grantee_id = $2), false) FROM shares \
             WHERE patient_id = $1",
        )
        .bind(share.patient_id.as_str())
        .bind(share.grantee_id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if !exists && held >= int(max_per_patient) {
            return Ok(ShareWrite::LimitReached);
        }
        sqlx::query(concat!(
            "INSERT INTO shares (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (patient_id, grantee_id) DO UPDATE SET role = excluded.role, \
             created_at = excluded.created_at, expires_at = excluded.expires_at"
        ))
        .bind(share.patient_id.as_str())
        .bind(share.grantee_id.as_str())
        .bind(share.role.as_str())
        .bind(ms(share.created_at))
        .bind(opt_ms(share.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(ShareWrite::Stored)
    }

    async fn list_shares(
        &self,
        patient: &UserId,
        page: SharePage,
    ) -> Result<Vec<Share>, StoreError> {
        // The primary key (patient_id, grantee_id) serves this seek.
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM shares WHERE patient_id = $1 AND grantee_id > $2 ORDER BY grantee_id LIMIT $3"
        ))
        .bind(patient.as_str())
        .bind(page.after.as_ref().map_or("", |g| g.as_str()))
        .bind(int(page.limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_share)
        .collect()
    }

    async fn get_share(
        &self,
        patient: &UserId,
        grantee: &UserId,
    ) -> Result<Option<Share>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM shares WHERE patient_id = $1 AND grantee_id = $2"
        ))
        .bind(patient.as_str())
        .bind(grantee.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_share)
        .transpose()
    }

    async fn delete_share(&self, patient: &UserId, grantee: &UserId) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM shares WHERE patient_id = $1 AND grantee_id = $2")
            .bind(patient.as_str())
            .bind(grantee.as_str())
            .execute(self.pool())
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(deleted == 1)
    }
}

//! PostgreSQL side of notification endpoints: rows of `notification_endpoints`;
//! the per-user cap is counted and written under a per-user advisory lock, so
//! two instances cannot pass it together.

use async_trait::async_trait;
use sqlx::postgres::PgRow;

use super::{advisory_lock, col, db_error, int, ms, user_id, PostgresStore};
use crate::domain::UserId;
use crate::records::connections::SealedTokens;
use crate::records::notifications::{
    join_events, split_events, EndpointId, EndpointWrite, NotificationEndpoint,
};
use crate::store::{NotificationStore, StoreError};

macro_rules! columns {
    () => {
        "id, user_id, url, events, secret_key_id, secret_nonce, secret_ciphertext, created_at"
    };
}

fn read_endpoint(row: &PgRow) -> Result<NotificationEndpoint, StoreError> {
    let events: &str = col(row, 3)?;
    Ok(NotificationEndpoint {
        id: EndpointId(col(row, 0)?),
        user_id: user_id(col(row, 1)?, "notification endpoint")?,
        url: col(row, 2)?,
        events: split_events(events)
            .ok_or_else(|| StoreError::Corrupt(format!("endpoint events {events:?}")))?,
        secret: SealedTokens {
            key_id: col(row, 4)?,
            nonce: col(row, 5)?,
            ciphertext: col(row, 6)?,
        },
        created_at: col(row, 7)?,
    })
}

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn put_notification_endpoint(
        &self,
        e: NotificationEndpoint,
        max_per_user: usize,
    ) -> Result<EndpointWrite, StoreError> {
        let mut tx = self.begin().await?;
        advisory_lock(
            &mut tx,
            "cgm-hub notification endpoints",
            e.user_id.as_str(),
        )
        .await?;
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM notification_endpoints WHERE user_id = $1")
                .bind(e.user_id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        if held >= int(max_per_user) {
            return Ok(EndpointWrite::LimitReached);
        }
        sqlx::query(concat!(
            "INSERT INTO notification_endpoints (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(e.id.0)
        .bind(e.user_id.as_str())
        .bind(&e.url)
        .bind(join_events(&e.events))
        .bind(&e.secret.key_id)
        .bind(&e.secret.nonce)
        .bind(&e.secret.ciphertext)
        .bind(ms(e.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(EndpointWrite::Stored)
    }

    async fn list_notification_endpoints(
        &self,
        user: &UserId,
    ) -> Result<Vec<NotificationEndpoint>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM notification_endpoints WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_endpoint)
        .collect()
    }

    async fn get_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<Option<NotificationEndpoint>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM notification_endpoints WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.0)
        .bind(user.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_endpoint)
        .transpose()
    }

    async fn delete_notification_endpoint(
        &self,
        user: &UserId,
        id: EndpointId,
    ) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM notification_endpoints WHERE id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(user.as_str())
                .execute(self.pool())
                .await
                .map_err(db_error)?
                .rows_affected();
        Ok(deleted == 1)
    }
}

//! PostgreSQL side of alerting: settings as one jsonb row per user, alerts as
//! rows whose partial unique index (`alerts_one_open`) keeps one open alert per
//! (user, type) across instances; every alert change writes its event to the
//! outbox in the same transaction.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{col, db_error, int, opt_ms, outbox, PostgresStore};
use crate::domain::{AlertSettings, AlertSettingsInput, UserId};
use crate::records::alerts::{Alert, AlertQuery, AlertStatus, AlertType};
use crate::records::events::Event;
use crate::store::{AlertStore, StoreError};

macro_rules! columns {
    () => {
        "id, user_id, type, status, glucose_value, reading_ts, raised_at, acknowledged_at, \
         acknowledged_by, resolved_at, message"
    };
}

fn read_alert(row: &PgRow) -> Result<Alert, StoreError> {
    let kind: &str = col(row, 2)?;
    let status: &str = col(row, 3)?;
    let value: Option<i32> = col(row, 4)?;
    Ok(Alert {
        id: col(row, 0)?,
        user_id: col(row, 1)?,
        alert_type: AlertType::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("alert type {kind:?}")))?,
        status: AlertStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?,
        glucose_value: value
            .map(|v| u16::try_from(v).map_err(|e| StoreError::Corrupt(format!("alert value: {e}"))))
            .transpose()?,
        reading_timestamp: col(row, 5)?,
        raised_at: col(row, 6)?,
        acknowledged_at: col(row, 7)?,
        acknowledged_by: col(row, 8)?,
        resolved_at: col(row, 9)?,
        message: col(row, 10)?,
    })
}

#[async_trait]
impl AlertStore for PostgresStore {
    async fn get_alert_settings(&self, user: &UserId) -> Result<Option<AlertSettings>, StoreError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT settings::text FROM alert_settings WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(db_error)?;
        json.map(|j| {
            let input: AlertSettingsInput = serde_json::from_str(&j)
                .map_err(|e| StoreError::Corrupt(format!("alert settings: {e}")))?;
            AlertSettings::parse(&input).map_err(|e| {
                StoreError::Corrupt(format!(
                    "alert settings: {}",
                    e.first().map(ToString::to_string).unwrap_or_default()
                ))
            })
        })
        .transpose()
    }

    async fn put_alert_settings(
        &self,
        user: &UserId,
        settings: AlertSettings,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&settings.to_input())
            .map_err(|e| StoreError::Internal(format!("alert settings: {e}")))?;
        sqlx::query(
            "INSERT INTO alert_settings (user_id, settings, updated_at) VALUES ($1, $2::jsonb, now()) \
             ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings, \
             updated_at = excluded.updated_at",
        )
        .bind(user.as_str())
        .bind(json)
        .execute(self.pool())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn raise_alert(&self, alert: Alert) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // The partial unique index refuses a second open alert of the type,
        // also when another instance inserts at the same moment.
        let inserted = sqlx::query(concat!(
            "INSERT INTO alerts (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
        ))
        .bind(alert.id)
        .bind(&alert.user_id)
        .bind(alert.alert_type.as_str())
        .bind(alert.status.as_str())
        .bind(alert.glucose_value.map(i32::from))
        .bind(opt_ms(alert.reading_timestamp))
        .bind(super::ms(alert.raised_at))
        .bind(opt_ms(alert.acknowledged_at))
        .bind(&alert.acknowledged_by)
        .bind(opt_ms(alert.resolved_at))
        .bind(&alert.message)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let events = outbox::append(&mut tx, [Event::alert_changed(&alert)]).await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(true)
    }

    async fn transition_alert(&self, from: AlertStatus, next: Alert) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE alerts SET status = $4, glucose_value = $5, reading_ts = $6, \
             acknowledged_at = $7, acknowledged_by = $8, resolved_at = $9, message = $10 \
             WHERE id = $1 AND user_id = $2 AND status = $3",
        )
        .bind(next.id)
        .bind(&next.user_id)
        .bind(from.as_str())
        .bind(next.status.as_str())
        .bind(next.glucose_value.map(i32::from))
        .bind(opt_ms(next.reading_timestamp))
        .bind(opt_ms(next.acknowledged_at))
        .bind(&next.acknowledged_by)
        .bind(opt_ms(next.resolved_at))
        .bind(&next.message)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let events = outbox::append(&mut tx, [Event::alert_changed(&next)]).await?;
        tx.commit().await.map_err(db_error)?;
        self.written(events);
        Ok(true)
    }

    async fn get_alert(&self, user: &UserId, id: Uuid) -> Result<Option<Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM alerts WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(db_error)?
        .as_ref()
        .map(read_alert)
        .transpose()
    }

    async fn open_alerts(&self, user: &UserId) -> Result<Vec<Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM alerts WHERE user_id = $1 AND status IN ('active', 'acknowledged')"
        ))
        .bind(user.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_alert)
        .collect()
    }

    async fn list_alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM alerts WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::timestamptz IS NULL OR raised_at >= $3) \
             AND ($4::timestamptz IS NULL OR raised_at < $4) \
             AND ($5::uuid IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
        ))
        .bind(query.user_id.as_str())
        .bind(query.status.map(AlertStatus::as_str))
        .bind(opt_ms(query.from))
        .bind(opt_ms(query.until))
        .bind(query.before)
        .bind(int(query.limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_error)?
        .iter()
        .map(read_alert)
        .collect()
    }
}

//! SQLite side of alerting: settings as one JSON row per user, alerts as rows
//! whose partial unique index (`alerts_one_open`) keeps one open alert per
//! (user, type); every alert change writes its event to the outbox in the same
//! transaction.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::{internal, outbox, SqliteStore};
use crate::domain::{AlertSettings, AlertSettingsInput, UserId};
use crate::records::alerts::{Alert, AlertQuery, AlertStatus, AlertType};
use crate::records::events::Event;
use crate::store::{AlertStore, StoreError};

const COLUMNS: &str = "id, user_id, type, status, glucose_value, reading_ts_ms, raised_at_ms, \
                       acknowledged_at_ms, acknowledged_by, resolved_at_ms, message";

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("alert time {ms} out of range")))
}

fn read_alert(row: &Row<'_>) -> rusqlite::Result<Result<Alert, StoreError>> {
    let id: String = row.get(0)?;
    let user_id: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let status: String = row.get(3)?;
    let value: Option<i64> = row.get(4)?;
    let reading: Option<i64> = row.get(5)?;
    let raised: i64 = row.get(6)?;
    let acked: Option<i64> = row.get(7)?;
    let acked_by: Option<String> = row.get(8)?;
    let resolved: Option<i64> = row.get(9)?;
    let message: String = row.get(10)?;
    Ok((|| {
        Ok(Alert {
            id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(format!("alert id: {e}")))?,
            user_id,
            alert_type: AlertType::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("alert type {kind:?}")))?,
            status: AlertStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("alert status {status:?}")))?,
            glucose_value: value
                .map(|v| {
                    u16::try_from(v).map_err(|e| StoreError::Corrupt(format!("alert value: {e}")))
                })
                .transpose()?,
            reading_timestamp: reading.map(time).transpose()?,
            raised_at: time(raised)?,
            acknowledged_at: acked.map(time).transpose()?,
            acknowledged_by: acked_by,
            resolved_at: resolved.map(time).transpose()?,
            message,
        })
    })())
}

fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub(super) fn parse_settings(json: &str) -> Result<AlertSettings, StoreError> {
    let input: AlertSettingsInput = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("alert settings: {e}")))?;
    AlertSettings::parse(&input).map_err(|e| {
        StoreError::Corrupt(format!(
            "alert settings: {}",
            e.first().map(ToString::to_string).unwrap_or_default()
        ))
    })
}

pub(super) fn settings_json(settings: &AlertSettings) -> Result<String, StoreError> {
    serde_json::to_string(&settings.to_input())
        .map_err(|e| StoreError::Internal(format!("alert settings: {e}")))
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn get_alert_settings(&self, user: &UserId) -> Result<Option<AlertSettings>, StoreError> {
        let user = user.clone();
        let json: Option<String> = self
            .read(move |conn| {
                conn.prepare_cached("SELECT settings FROM alert_settings WHERE user_id = ?1")
                    .map_err(internal)?
                    .query_row([user.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(internal)
            })
            .await?;
        json.as_deref().map(parse_settings).transpose()
    }

    async fn put_alert_settings(
        &self,
        user: &UserId,
        settings: AlertSettings,
    ) -> Result<(), StoreError> {
        let user = user.clone();
        let json = settings_json(&settings)?;
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO alert_settings (user_id, settings, updated_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings, \
                 updated_at_ms = excluded.updated_at_ms",
                params![user.as_str(), json, Utc::now().timestamp_millis()],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn raise_alert(&self, alert: Alert) -> Result<bool, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            // The partial unique index refuses a second open alert of the type.
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO alerts ({COLUMNS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING"
                    ),
                    params![
                        alert.id.to_string(),
                        alert.user_id,
                        alert.alert_type.as_str(),
                        alert.status.as_str(),
                        alert.glucose_value,
                        ms(alert.reading_timestamp),
                        alert.raised_at.timestamp_millis(),
                        ms(alert.acknowledged_at),
                        alert.acknowledged_by,
                        ms(alert.resolved_at),
                        alert.message,
                    ],
                )
                .map_err(internal)?;
            if inserted == 0 {
                return Ok(false);
            }
            outbox::append(&tx, [Event::alert_changed(&alert)])?;
            tx.commit().map_err(internal)?;
            inner.outbox_written.notify_one();
            Ok(true)
        })
        .await
    }

    async fn transition_alert(&self, from: AlertStatus, next: Alert) -> Result<bool, StoreError> {
        let inner = self.inner.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let changed = tx
                .execute(
                    "UPDATE alerts SET status = ?4, glucose_value = ?5, reading_ts_ms = ?6, \
                     acknowledged_at_ms = ?7, acknowledged_by = ?8, resolved_at_ms = ?9, \
                     message = ?10 WHERE id = ?1 AND user_id = ?2 AND status = ?3",
                    params![
                        next.id.to_string(),
                        next.user_id,
                        from.as_str(),
                        next.status.as_str(),
                        next.glucose_value,
                        ms(next.reading_timestamp),
                        ms(next.acknowledged_at),
                        next.acknowledged_by,
                        ms(next.resolved_at),
                        next.message,
                    ],
                )
                .map_err(internal)?;
            if changed == 0 {
                return Ok(false);
            }
            outbox::append(&tx, [Event::alert_changed(&next)])?;
            tx.commit().map_err(internal)?;
            inner.outbox_written.notify_one();
            Ok(true)
        })
        .await
    }

    async fn get_alert(&self, user: &UserId, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE id = ?1 AND user_id = ?2"
            ))
            .map_err(internal)?
            .query_row((id.to_string(), user.as_str()), read_alert)
            .optional()
            .map_err(internal)?
            .transpose()
        })
        .await
    }

    async fn open_alerts(&self, user: &UserId) -> Result<Vec<Alert>, StoreError> {
        let user = user.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM alerts WHERE user_id = ?1 \
                     AND status IN ('active', 'acknowledged')"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map([user.as_str()], read_alert)
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(internal)??);
            }
            Ok(out)
        })
        .await
    }

    async fn list_alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM alerts WHERE user_id = ?1 \
                     AND (?2 IS NULL OR status = ?2) AND raised_at_ms >= ?3 AND raised_at_ms < ?4 \
                     AND (?5 IS NULL OR id < ?5) ORDER BY id DESC LIMIT ?6"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    params![
                        query.user_id.as_str(),
                        query.status.map(AlertStatus::as_str),
                        query.from.map_or(i64::MIN, |t| t.timestamp_millis()),
                        query.until.map_or(i64::MAX, |t| t.timestamp_millis()),
                        query.before.map(|id| id.to_string()),
                        i64::try_from(query.limit).unwrap_or(i64::MAX),
                    ],
                    read_alert,
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
}

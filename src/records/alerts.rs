//! Alerts as the store keeps them and the API, the event bus and the live stream
//! show them (contract: "Alerts and live streams").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::UserId;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    UrgentLow,
    Low,
    High,
    UrgentHigh,
    FallingFast,
    RisingFast,
    Stale,
    PredictedLow,
}

impl AlertType {
    pub const ALL: [AlertType; 8] = [
        AlertType::UrgentLow,
        AlertType::Low,
        AlertType::High,
        AlertType::UrgentHigh,
        AlertType::FallingFast,
        AlertType::RisingFast,
        AlertType::Stale,
        AlertType::PredictedLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::UrgentLow => "urgent_low",
            AlertType::Low => "low",
            AlertType::High => "high",
            AlertType::UrgentHigh => "urgent_high",
            AlertType::FallingFast => "falling_fast",
            AlertType::RisingFast => "rising_fast",
            AlertType::Stale => "stale",
            AlertType::PredictedLow => "predicted_low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where an alert is in its life: open (`Active`, `Acknowledged`) or `Resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Acknowledged, Self::Resolved]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, AlertStatus::Resolved)
    }
}

/// One alert, in the contract's shape (it is also the data of the `alert` stream
/// event and of the `alert.*` bus events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: Uuid,
    pub user_id: String,
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    pub status: AlertStatus,
    /// The reading that raised it (mg/dL); `None` for `stale`.
    pub glucose_value: Option<u16>,
    pub reading_timestamp: Option<DateTime<Utc>>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub message: String,
}

/// A time-ordered alert id (the UUIDv7 layout: the first 48 bits are the Unix
/// time in milliseconds of `at`, the rest random), so that ordering alerts by id
/// is ordering them by when they were raised, in every backend, and a key
/// range of ids is a time range (DynamoDB's sort key).
pub fn alert_id(at: DateTime<Utc>) -> Uuid {
    let random = Uuid::new_v4().into_bytes();
    id_with(at.timestamp_millis(), |i| random[i])
}

/// The smallest id of an alert raised at `ms` (Unix milliseconds) or later.
pub fn first_id_at(ms: i64) -> Uuid {
    id_with(ms, |_| 0)
}

fn id_with(ms: i64, fill: impl Fn(usize) -> u8) -> Uuid {
    let ms = ms.clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    for (i, b) in bytes.iter_mut().enumerate().skip(6) {
        *b = fill(i);
    }
    // Version 7 and the RFC 4122 variant: the minimum of both keeps
    // `first_id_at` below every id of its millisecond.
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// Which alerts of a user to list: newest first (by id, which is by raise
/// time), optionally of one status, raised in `[from, until)`, before the id a
/// cursor names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQuery {
    pub user_id: UserId,
    pub status: Option<AlertStatus>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
    pub limit: usize,
}

impl Alert {
    /// A new active alert, raised at `at` (milliseconds: what every backend keeps).
    pub fn raise(
        user: &UserId,
        alert_type: AlertType,
        glucose_value: Option<u16>,
        reading_timestamp: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        message: String,
    ) -> Self {
        let at = whole_ms(at);
        Self {
            id: alert_id(at),
            user_id: user.to_string(),
            alert_type,
            status: AlertStatus::Active,
            glucose_value,
            reading_timestamp: reading_timestamp.map(whole_ms),
            raised_at: at,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            message,
        }
    }

    /// This alert acknowledged by `by` at `at`.
    pub fn acknowledged(&self, by: &UserId, at: DateTime<Utc>) -> Self {
        Self {
            status: AlertStatus::Acknowledged,
            acknowledged_at: Some(whole_ms(at)),
            acknowledged_by: Some(by.to_string()),
            ..self.clone()
        }
    }

    /// This alert resolved at `at`.
    pub fn resolved(&self, at: DateTime<Utc>) -> Self {
        Self {
            status: AlertStatus::Resolved,
            resolved_at: Some(whole_ms(at)),
            ..self.clone()
        }
    }

    /// This acknowledged alert active again (its snooze ran out while it was
    /// still true), with the reading that showed it; the acknowledgement is
    /// cleared, the id and `raised_at` stay.
    pub fn reraised(
        &self,
        glucose_value: Option<u16>,
        reading_timestamp: Option<DateTime<Utc>>,
        message: String,
    ) -> Self {
        Self {
            status: AlertStatus::Active,
            glucose_value,
            reading_timestamp: reading_timestamp.map(whole_ms),
            acknowledged_at: None,
            acknowledged_by: None,
            message,
            ..self.clone()
        }
    }
}

/// Times as every backend keeps them: whole milliseconds.
fn whole_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_by_time_and_first_id_bounds_each_millisecond() {
        let t = DateTime::from_timestamp_millis(1_800_000_000_123).unwrap();
        let a = alert_id(t);
        let b = alert_id(t + chrono::Duration::milliseconds(1));
        assert!(a < b && a.to_string() < b.to_string());
        assert!(first_id_at(t.timestamp_millis()) <= a);
        assert!(first_id_at(t.timestamp_millis() + 1) > a);
        assert_eq!(a.get_version_num(), 7);
    }
}

//! Alerts as the store keeps them and the API, the event bus and the live stream
//! show them (contract: "Alerts and live streams").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

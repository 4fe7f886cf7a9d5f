//! Notification endpoints as stored: where a user wants alert events POSTed,
//! which events, and the signing secret sealed at rest (never kept or returned
//! in the clear). Delivery itself is `crate::notifications`.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;
use crate::records::connections::SealedTokens;

/// An endpoint's id: a UUID, shown and parsed hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub Uuid);

impl EndpointId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::parse_str(raw).ok().map(Self)
    }
}

impl Default for EndpointId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The event types an endpoint may subscribe to. Adding one is adding a
/// variant here (and the event's routing key is its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotificationEvent {
    AlertRaised,
    AlertAcknowledged,
    AlertResolved,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 3] = [
        NotificationEvent::AlertRaised,
        NotificationEvent::AlertAcknowledged,
        NotificationEvent::AlertResolved,
    ];

    /// The event's type on the bus (its routing key).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::AlertRaised => "alert.raised",
            NotificationEvent::AlertAcknowledged => "alert.acknowledged",
            NotificationEvent::AlertResolved => "alert.resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw)
    }
}

/// One endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationEndpoint {
    pub id: EndpointId,
    /// Whose endpoint it is (who receives; not necessarily the patient).
    pub user_id: UserId,
    /// Checked when created (scheme, no userinfo, length, address) and its
    /// address again at every delivery.
    pub url: String,
    /// Non-empty, without duplicates, in `NotificationEvent` order.
    pub events: Vec<NotificationEvent>,
    /// The signing secret, sealed by `TokenCipher::seal_secret` and bound to
    /// this user and endpoint id.
    pub secret: SealedTokens,
    pub created_at: DateTime<Utc>,
}

impl NotificationEndpoint {
    pub fn wants(&self, routing_key: &str) -> bool {
        self.events.iter().any(|e| e.as_str() == routing_key)
    }
}

/// Events as one stored string (`alert.raised,alert.resolved`).
pub fn join_events(events: &[NotificationEvent]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored string read back; None when a name is unknown (corrupt row).
pub fn split_events(raw: &str) -> Option<Vec<NotificationEvent>> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(NotificationEvent::parse)
        .collect()
}

/// What `put_notification_endpoint` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointWrite {
    Stored,
    /// Nothing written: the user holds the most endpoints allowed already.
    LimitReached,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let all = NotificationEvent::ALL.to_vec();
        assert_eq!(split_events(&join_events(&all)), Some(all));
        assert_eq!(split_events("alert.raised,alert.nope"), None);
    }
}

//! The webhook inbox's records: a delivery is stored before it is acknowledged
//! and processed afterwards, so a crash between the 202 and processing loses
//! nothing. These are the stored deliveries and their fates; the store keeps
//! them and `sources::webhook` processes them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::UserId;

/// A verified delivery to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: Uuid,
    pub user_id: UserId,
    /// SHA-256 (hex) of the signature header: the same signed delivery sent
    /// twice (a retry, or a replay inside the window) is one delivery.
    pub signature_hash: String,
    /// The body's `type` (`egvs.available`, `egvs`, or whatever the sender
    /// wrote), kept so operators can count kinds without reading bodies.
    pub kind: String,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Queued,
    Processing,
    Done,
    /// An unknown type: recorded, not processed.
    Ignored,
    /// Gave up after retries; the body is kept for a replay.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Processing => "processing",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Ignored => "ignored",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Processing,
            Self::Done,
            Self::Ignored,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: String,
    /// None once processed (it holds health data).
    pub body: Option<Vec<u8>>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// A JSON summary of what processing did (counts, or the job it queued).
    pub outcome: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// What `InboxStore::put_delivery` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New(Uuid),
    /// The same signed delivery was stored before: its id.
    Replay(Uuid),
}

impl Accepted {
    pub fn id(self) -> Uuid {
        match self {
            Accepted::New(id) | Accepted::Replay(id) => id,
        }
    }
}

/// How processing a delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryEnd {
    Done {
        outcome: String,
    },
    Ignored {
        reason: String,
    },
    Retry {
        not_before: DateTime<Utc>,
        error: String,
    },
    Failed {
        error: String,
    },
}

//! The audit trail's records: who accessed or changed whose data, what, when,
//! with which outcome and request id. Entries carry no glucose values, tokens or
//! secrets, only identifiers and names. The store keeps them append-only; the
//! writer that batches them is `auth::audit`.

use chrono::{DateTime, Utc};

use crate::domain::UserId;
use crate::records::roles::Roles;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The principal's user id.
    pub actor: UserId,
    pub actor_roles: Roles,
    /// e.g. `read_readings`, `manage_shares` (see `Action`).
    pub action: &'static str,
    /// Whose data.
    pub target_user: UserId,
    /// `allowed` or `denied` by policy.
    pub decision: &'static str,
    /// The HTTP status the request ended with.
    pub status: u16,
    pub request_id: String,
}

/// Entries written together: shared, so that a failed write can be retried and
/// the writer can then reuse the buffer.
pub type AuditBatch = std::sync::Arc<Vec<AuditEntry>>;

/// An entry as stored, with its position in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Which entries to read: optionally one user's, in `[from, until)`, after a
/// position, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub target_user: Option<UserId>,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// What a request does, on whose data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Readings and latest.
    ReadReadings,
    /// Posting readings.
    WriteReadings,
    /// Listing source connections.
    ReadConnections,
    /// Connecting, refreshing or disconnecting a source.
    ManageConnections,
    ReadShares,
    ManageShares,
    /// Reading the audit trail: admins only.
    ReadAudit,
    /// Asking for a sync of the user's source data.
    Sync,
    /// Reading the user's sync jobs.
    ReadJobs,
    /// Reading the status of one of the user's background tasks.
    ReadTasks,
    /// Reading the status of a background task of no user (system-wide work):
    /// services and admins only.
    ReadSystemTasks,
    /// A signed webhook delivery for the user (authenticated by its signature;
    /// on the audit trail, never decided here).
    DeliverWebhook,
    /// Derived figures of the user's readings (stats, AGP, daily aggregates,
    /// FHIR summary): whoever may read the readings.
    ReadAnalytics,
    /// The user's profile (time zone, target range): owner or admin.
    ReadProfile,
    WriteProfile,
    /// The user's alerts: whoever may read the readings.
    ReadAlerts,
    /// Acknowledging one of the user's alerts: the owner, an admin, or a
    /// caregiver or clinician the user shares with (not a service).
    AcknowledgeAlerts,
    /// The user's alert settings: owner or admin.
    ReadAlertSettings,
    WriteAlertSettings,
    /// The user's live stream (readings and alerts over SSE) and the
    /// short-lived token a browser opens it with: whoever may read the readings.
    ReadStream,
    /// The user's notification endpoints (outbound webhooks): the user
    /// themselves, whatever their role (a caregiver receives the alerts of the
    /// patients who share with them), or an admin.
    ReadNotificationEndpoints,
    ManageNotificationEndpoints,
    /// Accounts: creating one (self-service or by an admin).
    Register,
    /// Signing in, whether it succeeded or not (the status tells).
    Login,
    /// Exchanging a refresh token for a new pair.
    RefreshSession,
    Logout,
    /// `GET /api/v1/auth/me`.
    ReadAccount,
    /// Asking for or completing a password reset.
    ResetPassword,
    /// Confirming an email address.
    VerifyEmail,
    /// An admin inviting someone by email.
    InviteUser,
    /// The user's journal (meals, sleep, activities): whoever may read the
    /// readings.
    ReadJournal,
    /// Adding, changing or removing journal entries: owner or admin.
    WriteJournal,
}

impl Action {
    pub const ALL: [Action; 32] = [
        Action::ReadReadings,
        Action::WriteReadings,
        Action::ReadConnections,
        Action::ManageConnections,
        Action::ReadShares,
        Action::ManageShares,
        Action::ReadAudit,
        Action::Sync,
        Action::ReadJobs,
        Action::ReadTasks,
        Action::ReadSystemTasks,
        Action::DeliverWebhook,
        Action::ReadAnalytics,
        Action::ReadProfile,
        Action::WriteProfile,
        Action::ReadAlerts,
        Action::AcknowledgeAlerts,
        Action::ReadAlertSettings,
        Action::WriteAlertSettings,
        Action::ReadStream,
        Action::ReadNotificationEndpoints,
        Action::ManageNotificationEndpoints,
        Action::Register,
        Action::Login,
        Action::RefreshSession,
        Action::Logout,
        Action::ReadAccount,
        Action::ResetPassword,
        Action::VerifyEmail,
        Action::InviteUser,
        Action::ReadJournal,
        Action::WriteJournal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadReadings => "read_readings",
            Action::WriteReadings => "write_readings",
            Action::ReadConnections => "read_connections",
            Action::ManageConnections => "manage_connections",
            Action::ReadShares => "read_shares",
            Action::ManageShares => "manage_shares",
            Action::ReadAudit => "read_audit",
            Action::Sync => "sync",
            Action::ReadJobs => "read_jobs",
            Action::ReadTasks => "read_tasks",
            Action::ReadSystemTasks => "read_system_tasks",
            Action::DeliverWebhook => "deliver_webhook",
            Action::ReadAnalytics => "read_analytics",
            Action::ReadProfile => "read_profile",
            Action::WriteProfile => "write_profile",
            Action::ReadAlerts => "read_alerts",
            Action::AcknowledgeAlerts => "acknowledge_alerts",
            Action::ReadAlertSettings => "read_alert_settings",
            Action::WriteAlertSettings => "write_alert_settings",
            Action::ReadStream => "read_stream",
            Action::ReadNotificationEndpoints => "read_notification_endpoints",
            Action::ManageNotificationEndpoints => "manage_notification_endpoints",
            Action::Register => "register",
            Action::Login => "login",
            Action::RefreshSession => "refresh_session",
            Action::Logout => "logout",
            Action::ReadAccount => "read_account",
            Action::ResetPassword => "reset_password",
            Action::VerifyEmail => "verify_email",
            Action::InviteUser => "invite_user",
            Action::ReadJournal => "read_journal",
            Action::WriteJournal => "write_journal",
        }
    }
}

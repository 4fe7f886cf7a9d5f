//! Every authorization decision in one place: may this principal do this action
//! on this user's data? The HTTP layer asks here for every request and nowhere
//! else; the table-driven test in `tests/it/authz_matrix.rs` pins the answers.

use super::shares::Share;
use super::{Principal, Role};
use crate::domain::UserId;

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
}

impl Action {
    pub const ALL: [Action; 12] = [
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
        }
    }
}

/// Why a request was allowed (for logs and, later, the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Own,
    Shared,
    Service,
    Admin,
}

/// Whether a share could matter: only caregivers and clinicians reading a
/// patient's readings (so the store is asked only then).
pub fn needs_share(principal: &Principal, action: Action, owner: &UserId) -> bool {
    action == Action::ReadReadings
        && &principal.user_id != owner
        && (principal.has(Role::Caregiver) || principal.has(Role::Clinician))
}

/// The decision. `share` is the active grant of `owner` to the principal, if
/// any (see `needs_share`).
pub fn decide(
    principal: &Principal,
    action: Action,
    owner: &UserId,
    share: Option<&Share>,
) -> Option<Basis> {
    if principal.has(Role::Admin) {
        return Some(Basis::Admin);
    }
    if matches!(action, Action::ReadAudit | Action::DeliverWebhook) {
        return None;
    }
    // Before the owner rule: a system task's "owner" is the caller itself.
    if action == Action::ReadSystemTasks {
        return principal.has(Role::Service).then_some(Basis::Service);
    }
    if principal.has(Role::Patient) && &principal.user_id == owner {
        return Some(Basis::Own);
    }
    if action == Action::ReadReadings {
        if principal.has(Role::Service) {
            return Some(Basis::Service);
        }
        let shared = share.is_some_and(|s| {
            &s.patient_id == owner
                && s.grantee_id == principal.user_id
                && principal.has(s.role.role())
        });
        if shared {
            return Some(Basis::Shared);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::shares::ShareRole;

    fn p(id: &str, roles: &[Role]) -> Principal {
        Principal {
            user_id: UserId::parse(id).unwrap(),
            roles: roles.iter().copied().collect(),
        }
    }

    fn share(patient: &str, grantee: &str, role: ShareRole) -> Share {
        Share {
            patient_id: UserId::parse(patient).unwrap(),
            grantee_id: UserId::parse(grantee).unwrap(),
            role,
            created_at: chrono::Utc::now(),
            expires_at: None,
        }
    }

    #[test]
    fn a_share_counts_only_for_its_grantee_role_and_reads() {
        let owner = UserId::parse("pat").unwrap();
        let mom = p("mom", &[Role::Caregiver]);
        let s = share("pat", "mom", ShareRole::Caregiver);
        assert_eq!(
            decide(&mom, Action::ReadReadings, &owner, Some(&s)),
            Some(Basis::Shared)
        );
        assert_eq!(decide(&mom, Action::WriteReadings, &owner, Some(&s)), None);
        assert_eq!(decide(&mom, Action::ReadReadings, &owner, None), None);
        let doc = p("mom", &[Role::Clinician]);
        assert_eq!(
            decide(&doc, Action::ReadReadings, &owner, Some(&s)),
            None,
            "a caregiver grant is not a clinician's"
        );
        let other = share("someone-else", "mom", ShareRole::Caregiver);
        assert_eq!(
            decide(&mom, Action::ReadReadings, &owner, Some(&other)),
            None
        );
    }

    #[test]
    fn a_caregiver_with_its_own_data_is_not_a_patient() {
        let owner = UserId::parse("mom").unwrap();
        let mom = p("mom", &[Role::Caregiver]);
        assert_eq!(decide(&mom, Action::ReadReadings, &owner, None), None);
        let both = p("mom", &[Role::Caregiver, Role::Patient]);
        assert_eq!(
            decide(&both, Action::WriteReadings, &owner, None),
            Some(Basis::Own)
        );
    }
}

//! Every authorization decision in one place: may this principal do this action
//! on this user's data? The HTTP layer asks here for every request and nowhere
//! else; the table-driven test in `tests/it/authz_matrix.rs` pins the answers.

use super::Principal;
use crate::domain::UserId;
use crate::records::roles::Role;
use crate::records::shares::Share;

use crate::records::audit::Action;

/// Why a request was allowed (for logs and, later, the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Own,
    Shared,
    Service,
    Admin,
}

/// Whether a share could matter: only caregivers and clinicians reading a
/// patient's readings, their derived figures or alerts, or acknowledging an
/// alert (so the store is asked only then).
pub fn needs_share(principal: &Principal, action: Action, owner: &UserId) -> bool {
    matches!(
        action,
        Action::ReadReadings
            | Action::ReadAnalytics
            | Action::ReadAlerts
            | Action::ReadStream
            | Action::ReadJournal
            | Action::AcknowledgeAlerts
    ) && &principal.user_id != owner
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
    // Admins only (above); the "owner" of an invitation is the caller itself.
    if action == Action::InviteUser {
        return None;
    }
    // Before the owner rule: a system task's "owner" is the caller itself.
    if action == Action::ReadSystemTasks {
        return principal.has(Role::Service).then_some(Basis::Service);
    }
    if principal.has(Role::Patient) && &principal.user_id == owner {
        return Some(Basis::Own);
    }
    // An account is read by its owner, whatever their roles (a caregiver's
    // account is theirs too).
    if matches!(action, Action::ReadAccount | Action::VerifyEmail) && &principal.user_id == owner {
        return Some(Basis::Own);
    }
    // Notification endpoints belong to whoever receives them: a caregiver
    // keeps their own, for the alerts of the patients who share with them.
    if matches!(
        action,
        Action::ReadNotificationEndpoints | Action::ManageNotificationEndpoints
    ) && &principal.user_id == owner
        && !principal.has(Role::Service)
    {
        return Some(Basis::Own);
    }
    let reads = matches!(
        action,
        Action::ReadReadings
            | Action::ReadAnalytics
            | Action::ReadAlerts
            | Action::ReadStream
            | Action::ReadJournal
    );
    // Following a patient's alerts includes acknowledging them; a service
    // reads, it does not acknowledge.
    if reads || action == Action::AcknowledgeAlerts {
        if reads && principal.has(Role::Service) {
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
    use crate::records::shares::ShareRole;

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
        assert_eq!(
            decide(&mom, Action::ReadAnalytics, &owner, Some(&s)),
            Some(Basis::Shared),
            "who reads the readings reads their figures"
        );
        assert_eq!(decide(&mom, Action::ReadProfile, &owner, Some(&s)), None);
        assert_eq!(
            decide(&mom, Action::AcknowledgeAlerts, &owner, Some(&s)),
            Some(Basis::Shared),
            "a follower acknowledges the alerts they are shown"
        );
        assert_eq!(decide(&mom, Action::AcknowledgeAlerts, &owner, None), None);
        assert_eq!(
            decide(&mom, Action::WriteAlertSettings, &owner, Some(&s)),
            None
        );
        let service = p("ml", &[Role::Service]);
        assert_eq!(
            decide(&service, Action::ReadAlerts, &owner, None),
            Some(Basis::Service)
        );
        assert_eq!(
            decide(&service, Action::AcknowledgeAlerts, &owner, None),
            None
        );
        assert_eq!(decide(&mom, Action::WriteProfile, &owner, Some(&s)), None);
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

    #[test]
    fn an_account_is_read_by_its_owner_whatever_the_role() {
        let mom = UserId::parse("mom").unwrap();
        let caregiver = p("mom", &[Role::Caregiver]);
        assert_eq!(
            decide(&caregiver, Action::ReadAccount, &mom, None),
            Some(Basis::Own)
        );
        let service = p("svc", &[Role::Service]);
        assert_eq!(decide(&service, Action::ReadAccount, &mom, None), None);
        let other = p("dad", &[Role::Patient]);
        assert_eq!(decide(&other, Action::ReadAccount, &mom, None), None);
    }

    #[test]
    fn only_admins_invite() {
        let pat = UserId::parse("pat").unwrap();
        let patient = p("pat", &[Role::Patient]);
        assert_eq!(decide(&patient, Action::InviteUser, &pat, None), None);
        let admin = p("pat", &[Role::Admin]);
        assert_eq!(
            decide(&admin, Action::InviteUser, &pat, None),
            Some(Basis::Admin)
        );
    }
}

//! Sharing: a patient grants a caregiver or clinician read access to their data,
//! optionally until a date. Revocation deletes the grant, so it takes effect on
//! the grantee's next request.

use chrono::{DateTime, Utc};

use crate::domain::UserId;

/// The role a grant gives its grantee over the patient's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareRole {
    Caregiver,
    Clinician,
}

impl ShareRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareRole::Caregiver => "caregiver",
            ShareRole::Clinician => "clinician",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "caregiver" => Some(ShareRole::Caregiver),
            "clinician" => Some(ShareRole::Clinician),
            _ => None,
        }
    }

    /// The principal role a grantee must hold to use this grant.
    pub fn role(self) -> super::Role {
        match self {
            ShareRole::Caregiver => super::Role::Caregiver,
            ShareRole::Clinician => super::Role::Clinician,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub patient_id: UserId,
    pub grantee_id: UserId,
    pub role: ShareRole,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Share {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

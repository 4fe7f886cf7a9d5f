//! Sharing: a patient grants a caregiver or clinician read access to their data,
//! optionally until a date. Revocation deletes the grant, so it takes effect on
//! the grantee's next request. The grants as the store keeps them.

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

    /// The account role a grantee of this kind needs to read shared data.
    pub fn as_role(self) -> crate::records::roles::Role {
        match self {
            ShareRole::Caregiver => crate::records::roles::Role::Caregiver,
            ShareRole::Clinician => crate::records::roles::Role::Clinician,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "caregiver" => Some(ShareRole::Caregiver),
            "clinician" => Some(ShareRole::Clinician),
            _ => None,
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

/// What `put_share` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareWrite {
    /// Stored: a new grant, or the grantee's earlier grant replaced.
    Stored,
    /// Nothing written: a new grantee, and the patient already holds the most
    /// grants allowed.
    LimitReached,
}

/// One page of a patient's grants, in grantee order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePage {
    /// Start after this grantee (exclusive); None: from the first.
    pub after: Option<UserId>,
    pub limit: usize,
}

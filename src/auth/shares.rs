//! Sharing: a patient grants a caregiver or clinician read access to their data,
//! optionally until a date. Revocation deletes the grant, so it takes effect on
//! the grantee's next request. The grants are records (`records::shares`);
//! what a grant means to access control is here.

use crate::records::shares::ShareRole;

impl ShareRole {
    /// The principal role a grantee must hold to use this grant.
    pub fn role(self) -> super::Role {
        match self {
            ShareRole::Caregiver => super::Role::Caregiver,
            ShareRole::Clinician => super::Role::Clinician,
        }
    }
}

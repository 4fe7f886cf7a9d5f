//! The roles a principal can hold: plain values that audit records store and
//! that `auth` verifies and decides with, kept here so the store need not
//! import `auth`.

use std::fmt;

/// The contract's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Patient,
    Caregiver,
    Clinician,
    Admin,
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Patient,
        Role::Caregiver,
        Role::Clinician,
        Role::Admin,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Caregiver => "caregiver",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// Exact names only: an unknown role is an invalid token, not ignored.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Every role has a bit in `Roles`' u8.
const _: () = assert!(Role::ALL.len() <= 8);

/// A set of roles, as bits: `Copy`, so that a principal's roles go into every
/// audit entry without an allocation. Iterates in `Role::ALL` order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Roles(u8);

impl Roles {
    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        Roles(roles.into_iter().fold(0, |bits, r| bits | Self::bit(r)))
    }
}

impl<const N: usize> From<[Role; N]> for Roles {
    fn from(roles: [Role; N]) -> Self {
        roles.into_iter().collect()
    }
}

impl<const N: usize> PartialEq<[Role; N]> for Roles {
    fn eq(&self, other: &[Role; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

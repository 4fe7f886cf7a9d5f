//! Sync jobs: the stored records live in `records::jobs` (re-exported here);
//! what is left is the question the API and the CLI ask before queueing one.


pub use crate::records::jobs::*;

// Moved to `sync::provider` (which provider a requested sync fetches from).
pub use super::provider::not_syncable;

//! The webhook inbox: a delivery is stored before it is acknowledged and
//! processed afterwards, so a crash between the 202 and processing loses nothing.
//! The stored deliveries and their fates live in `records::inbox` (re-exported
//! here); `worker` processes them.

pub use crate::records::inbox::*;

//! Signed webhook deliveries: verified at the edge (`signature`), written to a
//! durable inbox before the 202, and processed afterwards (`inbox`).

pub mod signature;
pub mod worker;

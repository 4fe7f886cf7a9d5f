//! The records the store persists, below the store and every service that uses
//! them: plain data that imports only `domain`, `digest`, `Secret` and each
//! other, so that the store's traits need nothing from the layers above.

pub mod audit;
pub mod connections;
pub mod inbox;
pub mod jobs;
pub mod readings;
pub mod roles;
pub mod shares;

//! Records the store persists and returns, below the store so that it and every
//! layer above it share one definition: plain data, no I/O.

pub mod events;
pub mod tasks;

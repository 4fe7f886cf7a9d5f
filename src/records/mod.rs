//! Record types the store persists, below the store so that every layer above
//! can name them without importing the layer that produces them.

pub mod tasks;

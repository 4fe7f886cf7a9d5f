//! Records the store persists, below the store so that it and the layers above share them.

pub mod events;

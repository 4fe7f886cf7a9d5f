//! The sync engine: every connected user's readings fetched on time, whatever
//! fails around them. `scheduler` decides when each user is due and queues a
//! job; `engine` runs queued jobs under a per-user lease, window by window with
//! checkpoints, so a crash resumes where it stopped; `jobs` is what is stored.

pub mod engine;
pub mod jobs;
pub mod scheduler;

//! The sync engine: every connected user's readings fetched on time, whatever
//! fails around them. `source` is the port each source implements; `scheduler`
//! decides when each user is due and queues a job; `engine` runs queued jobs
//! under a per-user lease, window by window with checkpoints, so a crash
//! resumes where it stopped (the jobs themselves are `records::jobs`);
//! `provider` picks the source a requested sync fetches from.

pub mod engine;
pub mod provider;
pub mod scheduler;
pub mod source;

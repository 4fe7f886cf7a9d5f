//! cgm-hub: collects continuous glucose monitor readings, validates and stores
//! them, and serves them.
//!
//! Data flows sources → pipeline → store → events, and `api` serves it. The
//! modules are layered so that each can be read, tested and replaced without the
//! ones above it. Lowest first; a module names (`crate::x`) only modules listed
//! before it, which `tests/it/layering.rs` checks on every run (test code is
//! exempt). docs/architecture.md says where new work goes.
//!
//! 1. `domain`: the values every layer shares (readings, glucose, user ids);
//!    no web, database or cloud crate.
//! 2. `analytics`: glycemic metrics, the AGP and daily figures, computed from
//!    samples alone (no store, no HTTP).
//! 3. `digest`: SHA-256 fingerprints of values the store must not keep in the clear.
//! 4. `secret`: `Secret<T>`, a value that never prints.
//! 5. `records`: what the store persists and returns (jobs, tasks, connections,
//!    shares, audit entries, inbox deliveries, upsert outcomes, the event schema).
//! 6. `config`: typed settings for every section, parsed once at start.
//! 7. `telemetry`: logging and the metric catalogue.
//! 8. `store`: one trait per storage concern, and the SQLite, PostgreSQL and
//!    DynamoDB backends that implement them.
//! 9. `pipeline`: parse, validate and normalize readings, then store them.
//! 10. `connections`: sealing source tokens at rest, and pruning stale OAuth state.
//! 11. `auth`: bearer tokens, the access policy and the audit writer.
//! 12. `accounts`: built-in sign-up, login and refresh-token sessions that issue
//!     the bearer tokens `auth` verifies; Argon2id hashing in a bounded pool.
//! 13. `events`: the bus, the outbox relay and subscriptions.
//! 14. `tasks`: the durable task runner (leases, retries, resume after a crash).
//! 15. `sync`: the source port, the sync engine and the scheduler.
//! 16. `simulator`: a Dexcom API and synthetic patients, for the demo and tests.
//! 17. `sources`: the adapters (Dexcom, signed webhooks) behind the source port.
//! 18. `notifications`: signed outbound webhooks for alert events, delivered
//!     durably through the task runner.
//! 19. `serving`: the listener's connection limits and timeouts.
//! 20. `api`: the HTTP routes, their views and the one error envelope.
//! 21. `app`: building the parts from settings, and running them under a supervisor.
//! 22. `operator`: the command line.

pub mod accounts;
pub mod analytics;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod digest;
pub mod domain;
pub mod events;
pub mod notifications;
pub mod operator;
pub mod pipeline;
pub mod records;
pub mod secret;
pub mod serving;
pub mod simulator;
pub mod sources;
pub mod store;
pub mod sync;
pub mod tasks;
pub mod telemetry;

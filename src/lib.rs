//! cgm-hub: collects continuous glucose monitor readings, validates and stores
//! them, and serves them.
//!
//! Data flows `sources` → `pipeline` → `store` → `events`, and `api` serves it.
//! `domain` holds the types every layer shares; it depends on no web, database
//! or cloud crate.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod connections;
pub mod digest;
pub mod domain;
pub mod events;
pub mod operator;
pub mod pipeline;
pub mod records;
pub mod serving;
pub mod simulator;
pub mod sources;
pub mod store;
pub mod sync;
pub mod telemetry;

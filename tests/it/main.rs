//! The one integration-test binary (one link step instead of one per file).

mod authz_matrix;
mod demo;
mod dexcom_client;
mod dexcom_oauth;
mod events_rabbitmq;
mod hardening_core;
mod hardening_edge;
mod hardening_store;
mod hardening_work;
mod helpers;
mod http_errors;
mod http_readings;
mod operator_kit;
mod pipeline;
mod postgres_store;
mod process;
mod scale_out;
mod sqlite_store;
mod store_conformance;
mod sync_engine;
mod tasks;
mod transport;
mod webhooks;

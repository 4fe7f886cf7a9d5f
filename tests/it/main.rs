//! The one integration-test binary (one link step instead of one per file).

mod demo;
mod helpers;
mod http_errors;
mod http_readings;
mod pipeline;
mod process;
mod sqlite_store;
mod store_conformance;

//! Shared test fixtures, one file per concern; everything is re-exported here so
//! tests say `use crate::helpers::*`.

mod app;
mod backends;
mod builders;
mod dexcom;
mod events;
mod http;
mod process;
mod rabbit;
mod receiver;
mod smtp;
mod sse;
mod stores;
mod wait;

pub use app::*;
pub use backends::*;
pub use builders::*;
pub use dexcom::*;
pub use events::*;
pub use http::*;
pub use process::*;
pub use rabbit::*;
pub use receiver::*;
pub use smtp::*;
pub use sse::*;
pub use stores::*;
pub use wait::*;

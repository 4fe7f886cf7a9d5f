//! Sources of readings. Each turns its own format into domain readings and feeds
//! the pipeline: Dexcom (and the demo patients through a Dexcom simulator) now;
//! Nightscout and imports later.

pub mod demo;
pub mod demo_dexcom;
pub mod demo_feed;
pub mod dexcom;
pub mod webhook;

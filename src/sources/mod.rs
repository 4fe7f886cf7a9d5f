//! Sources of readings. Each turns its own format into domain readings and feeds
//! the pipeline: the demo patients now; Dexcom, Nightscout and imports later.

pub mod demo;
pub mod demo_feed;

//! Sources of readings. Each turns its own format into domain readings and
//! implements the sync engine's port (`sync::source::SourceAdapter`): Dexcom
//! now (the demo patients reach it through the Dexcom simulator); Nightscout,
//! LibreLinkUp and imports later, each one module here plus its registration
//! in `app`. File imports (`apple_health`) are read by the operator CLI
//! rather than synced.

pub mod apple_health;
pub mod connect;
pub mod dexcom;
pub mod webhook;

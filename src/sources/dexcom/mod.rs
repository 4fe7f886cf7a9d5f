//! Dexcom: the official API (OAuth2, v3 data endpoints). Raw wire types and their
//! translation into domain readings live here, at the edge, and nowhere else.

pub mod adapter;
pub mod client;
pub mod oauth;
pub mod outbound;
pub mod service;
pub mod sync;
pub mod time;
pub mod tokens;
pub mod translate;
pub mod windows;
pub mod wire;

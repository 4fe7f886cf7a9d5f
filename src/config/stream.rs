//! The live stream section (STREAM_*): how many per-user Server-Sent Event
//! streams an instance holds, how often they send keep-alives, how far a slow
//! client may fall behind, and how long a browser's stream token lives.

use std::time::Duration;

use super::{ConfigError, Vars};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// STREAM_KEEPALIVE_SECONDS: a `: keep-alive` comment at least this often.
    pub keepalive: Duration,
    /// STREAM_MAX_PER_USER: open streams of one user on this instance.
    pub max_per_user: usize,
    /// STREAM_MAX_TOTAL: open streams on this instance.
    pub max_total: usize,
    /// STREAM_BUFFER_EVENTS: events queued for one stream before it is closed
    /// as too slow.
    pub buffer: usize,
    /// STREAM_TOKEN_TTL_SECONDS: how long a stream token is accepted.
    pub token_ttl: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(15),
            max_per_user: 20,
            max_total: 20_000,
            buffer: 256,
            token_ttl: Duration::from_secs(300),
        }
    }
}

pub(super) fn parse(v: &Vars<'_>) -> Result<StreamSettings, ConfigError> {
    Ok(StreamSettings {
        keepalive: Duration::from_secs(v.number("STREAM_KEEPALIVE_SECONDS", 1, 15)?),
        max_per_user: v.number("STREAM_MAX_PER_USER", 1, 100_000)?,
        max_total: v.number("STREAM_MAX_TOTAL", 1, 1_000_000)?,
        buffer: v.number("STREAM_BUFFER_EVENTS", 1, 100_000)?,
        token_ttl: Duration::from_secs(v.number("STREAM_TOKEN_TTL_SECONDS", 10, 3600)?),
    })
}

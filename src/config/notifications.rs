//! The notification section (NOTIFICATION_*): how outbound signed webhooks for
//! alert events are capped, timed and retried.

use std::time::Duration;

use super::{invalid, ConfigError, ServiceEnv, Vars};

#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// NOTIFICATION_ENDPOINTS_MAX_PER_USER.
    pub max_endpoints_per_user: usize,
    /// NOTIFICATION_TIMEOUT_SECONDS: one delivery, connect to last byte.
    pub timeout: Duration,
    /// NOTIFICATION_WORKERS: deliveries in flight at once on this instance.
    pub workers: usize,
    /// NOTIFICATION_RETRY_DELAYS: the delay after failed attempt 1, 2, ...;
    /// the last repeats.
    pub retry_delays: Vec<Duration>,
    /// NOTIFICATION_GIVE_UP_HOURS: no attempt starts later than this after
    /// the delivery was queued.
    pub give_up_after: Duration,
    /// Development only: `http://` URLs and loopback/private addresses allowed.
    pub allow_insecure: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            max_endpoints_per_user: 10,
            timeout: Duration::from_secs(10),
            workers: 8,
            retry_delays: parse_delays(DEFAULT_DELAYS).unwrap_or_default(),
            give_up_after: Duration::from_secs(24 * 3600),
            allow_insecure: false,
        }
    }
}

const DEFAULT_DELAYS: &str = "10s,30s,1m,5m,15m,30m,1h,2h,4h,8h";

pub(super) fn parse(v: &Vars<'_>, env: ServiceEnv) -> Result<NotificationSettings, ConfigError> {
    let raw = v.get("NOTIFICATION_RETRY_DELAYS");
    let retry_delays = parse_delays(raw).ok_or_else(|| {
        invalid(
            "NOTIFICATION_RETRY_DELAYS",
            format!(
                "{raw:?} is not a comma-separated list of durations such as 10s,1m,2h \
                 (units ms, s, m, h; each at most 24h)"
            ),
        )
    })?;
    let give_up_hours: u64 = v.number("NOTIFICATION_GIVE_UP_HOURS", 1, 168)?;
    Ok(NotificationSettings {
        max_endpoints_per_user: v.number("NOTIFICATION_ENDPOINTS_MAX_PER_USER", 1, 1000)?,
        timeout: Duration::from_secs(v.number("NOTIFICATION_TIMEOUT_SECONDS", 1, 300)?),
        workers: v.number("NOTIFICATION_WORKERS", 1, 256)?,
        retry_delays,
        give_up_after: Duration::from_secs(3600 * give_up_hours),
        allow_insecure: env == ServiceEnv::Development,
    })
}

/// `10s,1m,2h` (ms, s, m, h); None when empty or malformed.
fn parse_delays(raw: &str) -> Option<Vec<Duration>> {
    let delays = raw
        .split(',')
        .map(|item| {
            let item = item.trim();
            let digits = item.bytes().take_while(u8::is_ascii_digit).count();
            let n: u64 = item[..digits].parse().ok()?;
            let unit = match &item[digits..] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return None,
            };
            let d = Duration::from_millis(n.checked_mul(unit)?);
            (d <= Duration::from_secs(24 * 3600)).then_some(d)
        })
        .collect::<Option<Vec<_>>>()?;
    (!delays.is_empty()).then_some(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_take_units_and_refuse_the_rest() {
        assert_eq!(
            parse_delays("250ms, 10s,1m,2h"),
            Some(vec![
                Duration::from_millis(250),
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(7200),
            ])
        );
        for bad in ["", "10", "1d", "s", "10s,,1m", "25h"] {
            assert_eq!(parse_delays(bad), None, "{bad}");
        }
        assert_eq!(NotificationSettings::default().retry_delays.len(), 10);
    }
}

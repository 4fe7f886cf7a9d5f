//! Waiting on a condition with a deadline, so a test that never sees it fails
//! saying what it waited for (never a bare sleep).

use std::time::Duration;

use serde_json::Value;

use super::get_json;

/// Waits until `condition` holds, polling every 25 ms; panics naming `what`
/// after `within`. For effects that follow an observable one (a relay deletes
/// what the bus already delivered; an inbox row is finished after its readings
/// are visible).
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `GET path` (JSON) until `done` accepts the body, or panics after `within`.
pub async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let body = get_json(client, url).await;
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} did not reach the expected state within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `eventually` for a condition that yields a value once it holds: `check`
/// answers `Ok(value)`, or `Err(what it saw instead)`, which the panic after
/// `within` quotes, so a failure says how far things got.
pub async fn eventually_ok<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "not within {within:?}: {what} (last seen: {seen})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! `App::serve` under its supervisor: a component that cannot start stops the
//! ones started before it and makes `serve` fail, instead of serving half an app.

use std::collections::HashMap;
use std::time::Duration;

use cgm_hub::app::App;
use cgm_hub::config::Settings;
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_the_error_of_a_listener_that_cannot_start_without_waiting_for_shutdown() {
    let dir = TempDir::new().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let vars: HashMap<String, String> = HashMap::from([
        (
            "SQLITE_PATH".into(),
            dir.path().join("app.db").display().to_string(),
        ),
        ("AUTH_DISABLED".into(), "true".into()),
        // The listener, last to start, cannot read its certificate.
        ("TLS_CERT_PATH".into(), missing.clone()),
        ("TLS_KEY_PATH".into(), missing),
    ]);
    let settings = Settings::from_vars(&vars).expect("valid settings");
    let app = App::build(settings).await.expect("app builds");
    // Never resolves: serve must end on its own, after stopping what it started.
    let served = tokio::time::timeout(
        Duration::from_secs(30),
        app.serve(listener, std::future::pending()),
    )
    .await
    .expect("serve returns without a shutdown request");
    let error = served.expect_err("the listener's failure is serve's");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("http listener failed to start: "),
        "{error}"
    );
}

//! Transport and hygiene: HTTPS with rustls, security headers, CORS.

use crate::helpers::*;

/// A self-signed certificate for 127.0.0.1, made with the openssl CLI.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test]
async fn https_with_hsts_and_no_plain_http() {
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key) = self_signed(dir.path());
    let app = TestApp::spawn_with(&[("TLS_CERT_PATH", &cert), ("TLS_KEY_PATH", &key)]).await;
    let https = app.base.replace("http://", "https://");
    let client = reqwest::Client::builder()
        // A test certificate: the handshake and TLS version are what is checked.
        .danger_accept_invalid_certs(true)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let r = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let plain = app.client.get(app.url("/health")).send().await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP is not served on the TLS port"
    );
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = TestApp::spawn().await;
    for path in [
        "/health",
        "/api/bg/nobody/latest",
        "/no-such-route",
        "/openapi.json",
    ] {
        let r = app.get(path).await;
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "no HSTS over plain HTTP"
        );
    }
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example.org")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/bg/pat/latest"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://app.example.org").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let allowed = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let plain = TestApp::spawn().await;
    let r = plain
        .client
        .get(plain.url("/health"))
        .header("origin", "https://app.example.org")
        .send()
        .await
        .unwrap();
    assert!(
        !r.headers().contains_key("access-control-allow-origin"),
        "no CORS unless configured"
    );
}

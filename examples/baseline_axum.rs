//! The HTTP benchmark's yardstick: the most trivial axum handler, on the same
//! runtime settings as cgm-hub, so every figure is compared with what this
//! machine can do at all in the same run (`scripts/bench-http.sh`).

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5099".into());
    let app = Router::new().route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}

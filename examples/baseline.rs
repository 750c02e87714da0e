//! The baseline of scripts/load.sh: the least an HTTP webhook receiver can do. An axum server
//! that reads the body, parses it with serde_json into a `serde_json::Value` (refusing what is
//! not JSON with 400) and answers 202 with a short JSON body. No authentication, no rules, no
//! outbox, no fsync: dingrelay's intake rate is reported as a fraction of this one's, measured
//! in the same run on the same machine.
//!
//! `cargo run --release --example baseline -- 127.0.0.1:0` prints `listening on ADDR` on stdout,
//! then serves `POST /hooks/<anything>` and `GET /-/ready` until killed. Same runtime as
//! dingrelay (tokio multi-thread, one worker per core) and the same default body limit (26 MiB).

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

async fn hook(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => {
            let fields = value.as_object().map_or(0, serde_json::Map::len);
            (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{{\"status\":\"accepted\",\"fields\":{fields}}}"),
            )
                .into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "{\"status\":\"malformed\"}").into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let app = Router::new()
        .route("/hooks/{name}", post(hook))
        .route("/-/ready", get(|| async { "ready" }))
        .layer(DefaultBodyLimit::max(26 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

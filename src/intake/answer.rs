//! How intake answers: a status and a JSON body (with `Retry-After` on 503), and the log target
//! every intake line is written under.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The target of intake's log lines, wherever in intake they are written (log filters name it).
pub(super) const LOG_TARGET: &str = "dingrelay::intake";

/// An answer: status and a JSON body.
pub(super) fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    }
    response
}

pub(super) fn refused(status: StatusCode, error: impl std::fmt::Display) -> Response {
    answer(
        status,
        json!({ "status": "rejected", "error": error.to_string() }),
    )
}

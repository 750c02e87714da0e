//! Why a webhook was not accepted, as one value: each [`Refusal`] knows its HTTP answer, its log
//! line and its metric, so the handler only says *which* refusal it is.
//!
//! Invariants:
//! - every refusal answers a JSON object with a `status` (`rejected`, or `unavailable` when the
//!   outbox could not take the messages) and an `error` saying why; a 503 also carries
//!   `Retry-After: 30`, a 405 `Allow: POST`;
//! - a refusal is about the request itself (its path, method, size, authentication, body or
//!   content type) or about the relay (an event log that cannot take it, 503): never about the
//!   rules, which run later, on the stored event;
//! - no reason holds a secret: they come from [`Rejection`]s and outbox errors, neither of which
//!   quotes a credential;
//! - refusals the sender causes (a bad body, authentication, a malformed request, the timeout)
//!   go through [`RefusalLog`], so a flood is a WARN line a minute per source and status; an
//!   unknown path or a wrong method is not logged at all; what needs an operator (an event log
//!   that cannot take events) is an ERROR line each time;
//! - `dingrelay_requests_total` counts every answer, refusal or not (the caller does that, from
//!   the answer's status); [`Refusal::record`] adds what is particular to a refusal
//!   (`dingrelay_auth_failures_total`).
//!
//! [`RefusalLog`]: super::refusals::RefusalLog

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::answer::{LOG_TARGET, answer, refused};
use super::refusals::RefusalLog;
use crate::metrics::Metrics;
use crate::outbox::OutboxError;
use crate::source::Rejection;

/// A webhook that was not accepted. Its `Display` is the `error` the sender is told.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No source is served at the path: 404.
    #[error("no source is served at {path}")]
    UnknownPath { path: String },
    /// A source's path asked with another method than POST: 405.
    #[error("webhooks are POSTed")]
    NotPost,
    /// The body is larger than `body_limit` (declared or read): 413.
    #[error("the body is larger than the limit of {limit} bytes (body_limit)")]
    TooLarge {
        /// `body_limit`, in bytes.
        limit: usize,
    },
    /// The body could not be read (the connection failed mid-body, say): 400.
    #[error("the body could not be read: {reason}")]
    Unreadable { reason: String },
    /// Reading and handling the request took longer than `request_timeout`: 408.
    #[error("the request took longer than {} s (request_timeout)", .after.as_secs())]
    TimedOut {
        /// `request_timeout`.
        after: Duration,
    },
    /// The source's authentication failed: 401.
    #[error("{0}")]
    Unauthenticated(Rejection),
    /// The source could not read the request: 401, 415 or 400 by the kind of rejection.
    #[error("{0}")]
    Rejected(Rejection),
    /// Too many large bodies are being read at once (their bytes would pass the daemon's budget):
    /// 503, so the sender retries in a moment.
    #[error("the relay is reading too many large bodies at once; retry shortly")]
    Busy,
    /// The event log could not take the event: 503, so the sender retries.
    #[error("{error}")]
    Unavailable {
        /// The event's name, for the log line.
        event: String,
        error: OutboxError,
    },
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownPath { .. } => StatusCode::NOT_FOUND,
            Refusal::NotPost => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unreadable { .. } => StatusCode::BAD_REQUEST,
            Refusal::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Rejected(rejection) => match rejection {
                Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            },
            Refusal::Unavailable { .. } | Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Counts what is particular to this refusal (every answer is counted by the caller).
    pub fn record(&self, metrics: &Metrics, source: &str) {
        if let Refusal::Unauthenticated(_) = self {
            metrics.auth_failure(source);
        }
    }

    /// Logs it for `source`: through `log` for what a sender causes, an ERROR line for what an
    /// operator must fix, nothing for an unknown path or a wrong method.
    pub fn log(&self, log: &RefusalLog, now_ms: i64, source: &str) {
        let status = self.status();
        match self {
            Refusal::UnknownPath { .. } | Refusal::NotPost => {}
            Refusal::TooLarge { .. } | Refusal::Unreadable { .. } => log.refused(
                now_ms,
                source,
                status,
                "Refused a webhook whose body could not be read.",
                &status,
            ),
            Refusal::TimedOut { after } => log.refused(
                now_ms,
                source,
                status,
                "A webhook request took longer than request_timeout; answered 408.",
                &format_args!("{} s", after.as_secs()),
            ),
            Refusal::Unauthenticated(rejection) => log.refused(
                now_ms,
                source,
                status,
                "Refused an unauthenticated webhook.",
                rejection,
            ),
            Refusal::Rejected(rejection) => {
                log.refused(now_ms, source, status, "Refused a webhook.", rejection);
            }
            Refusal::Busy => log.refused(
                now_ms,
                source,
                status,
                "Refused a webhook: too many large bodies were being read at once.",
                &status,
            ),
            Refusal::Unavailable { event, error } => tracing::error!(
                target: LOG_TARGET,
                source,
                event = %event,
                "Could not store a webhook; answered 503 so the sender retries: {error}. Check the disk and the state directory."
            ),
        }
    }

    /// The answer: status and JSON body (and `Allow` for a 405, `Retry-After` for a 503).
    pub fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Refusal::NotPost => {
                let mut response = refused(status, &self);
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
                response
            }
            Refusal::Unavailable { .. } | Refusal::Busy => answer(
                status,
                json!({ "status": "unavailable", "error": self.to_string() }),
            ),
            _ => refused(status, &self),
        }
    }
}

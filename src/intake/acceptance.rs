//! A webhook answered `202`, as one value: each [`Acceptance`] knows its HTTP answer, its log line
//! and its metrics, like a [`Refusal`](super::refusal::Refusal) does for the other answers.
//!
//! Invariants:
//! - every acceptance is answered `202` with a `status`; the answer never depends on the rules,
//!   which run later on the stored event (an event that matches no rule is no error to the
//!   sender either: a 4xx would make GitLab disable the hook);
//! - [`Acceptance::Stored`] is built only after the event log committed the event: the event id
//!   it answers is durable;
//! - accepting is a DEBUG line, not an INFO line: a busy relay accepts thousands of webhooks a
//!   minute, and what became of each is in the event log (`dingrelay outbox events`) and the
//!   metrics.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::answer::{LOG_TARGET, answer};
use crate::metrics::Metrics;

/// A webhook answered `202`.
#[derive(Debug)]
pub enum Acceptance {
    /// The source ignores this kind of event (GitHub `ping`): not stored.
    Ignored {
        /// The event's name.
        event: String,
        /// Why it is ignored, as the source says.
        reason: String,
    },
    /// The event is committed to the event log, waiting to be routed.
    Stored {
        /// The event's name.
        event: String,
        /// Its id in the event log.
        id: i64,
    },
    /// The same event (the sender's dedup key) was stored within `dedup_window`: not again.
    Duplicate {
        /// The event's name.
        event: String,
        /// The id of the event stored before.
        id: i64,
    },
}

impl Acceptance {
    /// Counts duplicates, per source.
    pub fn record(&self, metrics: &Metrics, source: &str) {
        if let Acceptance::Duplicate { .. } = self {
            metrics.duplicate_event(source);
        }
    }

    /// Its DEBUG line, for `source`.
    pub fn log(&self, source: &str) {
        match self {
            Acceptance::Ignored { event, reason } => tracing::debug!(
                target: LOG_TARGET,
                source,
                event = %event,
                "Ignored a webhook: {reason}."
            ),
            Acceptance::Stored { event, id } => tracing::debug!(
                target: LOG_TARGET,
                source,
                event = %event,
                id,
                "Stored a webhook."
            ),
            Acceptance::Duplicate { event, id } => tracing::debug!(
                target: LOG_TARGET,
                source,
                event = %event,
                id,
                "A webhook repeated an event stored within dedup_window; not stored again."
            ),
        }
    }

    /// The `202` answer.
    pub fn into_response(self) -> Response {
        let body = match self {
            Acceptance::Ignored { reason, .. } => {
                json!({ "status": "ignored", "reason": reason })
            }
            Acceptance::Stored { id, .. } => json!({ "status": "accepted", "event": id }),
            Acceptance::Duplicate { id, .. } => json!({ "status": "duplicate", "event": id }),
        };
        answer(StatusCode::ACCEPTED, body)
    }
}

//! A webhook answered `202`, as one value: each [`Acceptance`] knows its HTTP answer, its log line
//! and its metrics, like a [`Refusal`](super::refusal::Refusal) does for the other answers.
//!
//! Invariants:
//! - every acceptance is answered `202` with `status`, `matched` and `queued`: an event that is
//!   ignored or matches no rule is no error to the sender (a 4xx would make GitLab disable the
//!   hook);
//! - [`Acceptance::Queued`] is built only after the outbox committed its messages: what it lists
//!   as queued is durable;
//! - one INFO line per webhook, whatever it produced.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::answer::{LOG_TARGET, answer};
use crate::metrics::Metrics;

/// A webhook answered `202`.
#[derive(Debug)]
pub enum Acceptance {
    /// The source ignores this kind of event (GitHub `ping`).
    Ignored {
        /// The event's name.
        event: String,
        /// Why it is ignored, as the source says.
        reason: String,
    },
    /// No rule matched the event.
    NoMatch {
        /// The event's name.
        event: String,
        /// Why each rule of the source did not match, one line each.
        skipped: Vec<String>,
    },
    /// The event's messages are committed to the outbox (or were already, as duplicates).
    Queued {
        /// The event's name.
        event: String,
        /// How many rules matched.
        matched: usize,
        /// The messages stored, in routing order.
        messages: Vec<QueuedMessage>,
        /// The robot of each message not stored again because it was accepted within
        /// `dedup_window`.
        duplicates: Vec<String>,
    },
}

/// A message committed to the outbox, as the answer lists it.
#[derive(Debug)]
pub struct QueuedMessage {
    /// The outbox row.
    pub id: i64,
    pub rule: String,
    pub robot: String,
}

impl Acceptance {
    /// Counts the messages it queued and the duplicates it dropped, per robot.
    pub fn record(&self, metrics: &Metrics) {
        if let Acceptance::Queued {
            messages,
            duplicates,
            ..
        } = self
        {
            for message in messages {
                metrics.queued(&message.robot, 1);
            }
            for robot in duplicates {
                metrics.duplicates(robot, 1);
            }
        }
    }

    /// Its INFO line, for `source`.
    pub fn log(&self, source: &str) {
        match self {
            Acceptance::Ignored { event, reason } => tracing::info!(
                target: LOG_TARGET,
                source,
                event = %event,
                "Ignored a webhook: {reason}."
            ),
            Acceptance::NoMatch { event, .. } => tracing::info!(
                target: LOG_TARGET,
                source,
                event = %event,
                "No rule matched a webhook."
            ),
            Acceptance::Queued {
                event,
                matched,
                messages,
                duplicates,
            } => tracing::info!(
                target: LOG_TARGET,
                source,
                event = %event,
                matched,
                queued = messages.len(),
                duplicates = duplicates.len(),
                "Accepted a webhook."
            ),
        }
    }

    /// The `202` answer.
    pub fn into_response(self) -> Response {
        let body = match self {
            Acceptance::Ignored { reason, .. } => {
                json!({ "status": "ignored", "matched": 0, "queued": 0, "reason": reason })
            }
            Acceptance::NoMatch { skipped, .. } => {
                json!({ "status": "ignored", "matched": 0, "queued": 0, "reason": "no rule matched", "rules": skipped })
            }
            Acceptance::Queued {
                matched,
                messages,
                duplicates,
                ..
            } => {
                let listed: Vec<_> = messages
                    .iter()
                    .map(|m| json!({ "id": m.id, "rule": m.rule, "robot": m.robot }))
                    .collect();
                json!({
                    "status": "accepted",
                    "matched": matched,
                    "queued": listed.len(),
                    "duplicates": duplicates.len(),
                    "messages": listed,
                })
            }
        };
        answer(StatusCode::ACCEPTED, body)
    }
}

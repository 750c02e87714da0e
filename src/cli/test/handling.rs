//! What the daemon would do with a test's payload: the intake's path (body limit, source parsing)
//! then routing's (rules, dedup key), without authentication, storing or sending.

use super::suite::{Case, Suite};
use crate::rules::{Rendered, Skipped};
use crate::source::{Inbound, Rejection};

/// What the daemon would do with a test's payload.
pub(super) enum Handling {
    /// Answered with a 4xx and this reason; nothing queued.
    Refused { status: u16, error: String },
    /// Answered 202, but a rule fails on it: the daemon sends that rule's robots a fallback
    /// message in its place. Test files write it `refused: 422`, the status it once had.
    RuleFailed { error: String },
    /// Answered 202 without evaluating any rule (GitHub's `ping`).
    Ignored { reason: String },
    /// The rules ran: these messages would be queued (none when no rule matched).
    Routed {
        messages: Vec<Rendered>,
        skipped: Vec<Skipped>,
    },
}

impl Handling {
    /// What the daemon would answer, and send, for the test's request.
    pub(super) fn of(suite: &Suite, case: &Case) -> Handling {
        let Some(source) = suite.config.sources.get(&case.source) else {
            // Checked when the file was loaded.
            return Handling::Refused {
                status: 404,
                error: format!("no source `{}`", case.source),
            };
        };
        let limit = suite.config.intake.body_limit;
        if case.body.len() > limit {
            return Handling::Refused {
                status: 413,
                error: format!("the body is larger than the limit of {limit} bytes (body_limit)"),
            };
        }
        let inbound = Inbound {
            headers: &case.headers,
            query: &case.query,
            body: &case.body,
        };
        let event = match source.parse(&inbound) {
            Ok(event) => event,
            Err(rejection) => {
                let status = match rejection {
                    Rejection::Unauthorized(_) => 401,
                    Rejection::UnsupportedMediaType(_) => 415,
                    Rejection::Malformed(_) => 400,
                };
                return Handling::Refused {
                    status,
                    error: rejection.to_string(),
                };
            }
        };
        if let Some(reason) = event.ignored {
            return Handling::Ignored { reason };
        }
        let routing = suite.config.rules.route(&event, case.now);
        if !routing.errors.is_empty() {
            let errors: Vec<String> = routing.errors.iter().map(ToString::to_string).collect();
            return Handling::RuleFailed {
                error: errors.join("; "),
            };
        }
        if let Err(error) = suite.config.rules.dedup_key(&event, case.now) {
            return Handling::RuleFailed {
                error: error.to_string(),
            };
        }
        Handling::Routed {
            messages: routing.messages,
            skipped: routing.skipped,
        }
    }
}

//! What one send comes to, as one value: [`classify`](super::classify::classify)'s verdict on DingTalk's answer, made
//! concrete for the rows the request carried. A [`DeliveryOutcome`] knows which rows are delivered,
//! retried (and when) or dead-lettered, whether the robot pauses, and the log line and metrics
//! that report it; the worker only writes to the outbox what it says.
//!
//! Invariants:
//! - deciding is pure: an outcome is built before anything is written, from the answer, the
//!   robot's settings, the rows, the time and (for a backoff) the worker's random jitter;
//! - every row of a send ends delivered, retried or dead-lettered, never dropped;
//! - a transient failure pauses the robot (order is kept); a message older than `max_age` is
//!   dead-lettered instead of retried, with the last failure in its reason;
//! - one line per outcome: INFO when delivered (or printed by a dry run), WARN when throttled or
//!   retried (nothing is lost), and one ERROR line per [`DeadLetter`], since an operator must
//!   act;
//! - the reasons and errmsgs come from [`classify`](super::classify::classify), which masks anything like a secret; no line
//!   holds a URL.
//!
//! The lines keep the worker's target, `dingrelay::delivery::worker`, so log filters naming it
//! keep working.

use std::time::Duration;

use super::app_classify::AppVerdict;
use super::backoff::{DEFAULT_BASE, DEFAULT_CAP, retry_delay};
use super::classify::Verdict;
use crate::config::RobotDelivery;
use crate::metrics::{FailureClass, Metrics};
use crate::outbox::StoredMessage;

/// The target of the lines written here: the worker's, as when the worker wrote them itself (log
/// filters name it).
const LOG_TARGET: &str = "dingrelay::delivery::worker";

/// What one send comes to (see the [module documentation](self)); `'r` is the lifetime of the rows
/// the request carried.
#[derive(Debug)]
pub enum DeliveryOutcome<'r> {
    /// DingTalk has the rows (HTTP 2xx, errcode 0), or a dry run printed them.
    Delivered {
        /// Printed by a dry-run robot rather than sent.
        dry_run: bool,
        /// When the answer came (Unix ms): the rows are delivered then.
        at: i64,
    },
    /// DingTalk answered "too fast": the robot and the rows wait for `throttle_penalty`.
    Throttled {
        code: Code,
        errmsg: String,
        /// `throttle_penalty`.
        pause: Duration,
        /// When the robot sends again (Unix ms).
        until: i64,
    },
    /// No answer, or one worth retrying: the robot pauses for a backoff, the rows younger than
    /// `max_age` are retried after it, the others dead-lettered.
    Failed {
        /// What went wrong, for the log and the rows' `last_error`.
        reason: String,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The backoff.
        delay: Duration,
        /// When the robot sends again (Unix ms).
        until: i64,
        /// The rows past `max_age`, given up on.
        expired: Option<DeadLetter<'r>>,
        /// The rows to retry at `until`.
        alive: Vec<&'r StoredMessage>,
    },
    /// DingTalk will never take them (a permanent errcode): every row is dead-lettered.
    Refused(DeadLetter<'r>),
    /// The message could not be encoded (which validation rules out): every row is
    /// dead-lettered rather than lost silently.
    Unencodable(DeadLetter<'r>),
}

/// DingTalk's code for an answer: a custom robot's numeric errcode, or an app API's code (a
/// string such as `send.too.fast`, or an OAPI errcode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Errcode(i64),
    App(String),
}

impl Code {
    /// The bare code, for the `errcode` field of log lines.
    pub fn value(&self) -> String {
        match self {
            Code::Errcode(code) => code.to_string(),
            Code::App(code) => code.clone(),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Errcode(code) => write!(f, "errcode {code}"),
            Code::App(code) => write!(f, "code {code}"),
        }
    }
}

/// Rows given up on, and why: the worker moves them to the dead letters; an operator must act.
#[derive(Debug)]
pub struct DeadLetter<'r> {
    pub rows: Vec<&'r StoredMessage>,
    /// DingTalk's code, when it refused them.
    pub code: Option<Code>,
    /// Why, for the log and the rows' `last_error`.
    pub reason: String,
    /// When they were given up on (Unix ms).
    pub at: i64,
}

/// Rows to send again later.
#[derive(Debug, PartialEq, Eq)]
pub struct Retry {
    pub ids: Vec<i64>,
    /// When they are due again (Unix ms).
    pub at: i64,
    /// Why, for the rows' `last_error`.
    pub reason: String,
}

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on with the next message.
    Continue,
    /// Pause the robot until this wall-clock time (Unix ms).
    PauseUntil(i64),
}

impl<'r> DeliveryOutcome<'r> {
    /// What DingTalk's `answer` (classified by [`classify`](super::classify::classify)) means for `rows`, at `now`; a
    /// backoff draws its jitter from `rng`.
    pub fn of(
        answer: Verdict,
        rows: &'r [StoredMessage],
        settings: &RobotDelivery,
        dry_run: bool,
        now: i64,
        rng: &mut impl rand::Rng,
    ) -> DeliveryOutcome<'r> {
        match answer {
            Verdict::Delivered => DeliveryOutcome::Delivered { dry_run, at: now },
            Verdict::Throttled { errcode, errmsg } => DeliveryOutcome::Throttled {
                code: Code::Errcode(errcode),
                errmsg,
                pause: settings.throttle_penalty,
                until: now + settings.throttle_penalty.as_millis() as i64,
            },
            Verdict::Transient { reason } => failed(reason, rows, settings, now, rng),
            Verdict::Permanent {
                errcode,
                errmsg,
                advice,
            } => refused(Code::Errcode(errcode), &errmsg, advice, rows, now),
        }
    }

    /// What an app API's answer (classified by [`classify_app`](super::app_classify::classify_app)
    /// or [`classify_work_notice`](super::app_classify::classify_work_notice)) means for `rows`,
    /// all of which go to the same people. When DingTalk names one of them invalid, the rows are
    /// dead-lettered with that reason; flow-controlled, they are retried after a backoff.
    pub fn of_app(
        answer: AppVerdict,
        rows: &'r [StoredMessage],
        settings: &RobotDelivery,
        now: i64,
        rng: &mut impl rand::Rng,
    ) -> DeliveryOutcome<'r> {
        match answer {
            AppVerdict::Sent {
                invalid,
                flow_controlled,
            } => {
                if !invalid.is_empty() {
                    return DeliveryOutcome::Refused(DeadLetter {
                        rows: rows.iter().collect(),
                        code: Some(Code::App("invalidStaffIdList".to_owned())),
                        reason: format!(
                            "DingTalk reports user id {} invalid (invalidStaffIdList): check the user ids the robot sends to",
                            invalid.join(", ")
                        ),
                        at: now,
                    });
                }
                if !flow_controlled.is_empty() {
                    let reason = format!(
                        "DingTalk flow-controlled user {} (flowControlledStaffIdList); retried later",
                        flow_controlled.join(", ")
                    );
                    return failed(reason, rows, settings, now, rng);
                }
                DeliveryOutcome::Delivered {
                    dry_run: false,
                    at: now,
                }
            }
            AppVerdict::TokenRefused => failed(
                "DingTalk refused the app's access token, and a freshly fetched one too".to_owned(),
                rows,
                settings,
                now,
                rng,
            ),
            AppVerdict::Throttled { code, message } => DeliveryOutcome::Throttled {
                code: Code::App(code),
                errmsg: message,
                pause: settings.throttle_penalty,
                until: now + settings.throttle_penalty.as_millis() as i64,
            },
            AppVerdict::Transient { reason } => failed(reason, rows, settings, now, rng),
            AppVerdict::Permanent {
                code,
                message,
                advice,
            } => refused(Code::App(code), &message, advice, rows, now),
        }
    }

    /// Rows that cannot be sent for a reason of dingrelay's own (a message to people that names
    /// none), at `now`: every row is dead-lettered with `reason`.
    pub fn undeliverable(
        reason: String,
        rows: &'r [StoredMessage],
        now: i64,
    ) -> DeliveryOutcome<'r> {
        DeliveryOutcome::Refused(DeadLetter {
            rows: rows.iter().collect(),
            code: None,
            reason,
            at: now,
        })
    }

    /// The message of `rows` could not be encoded, at `now`.
    pub fn unencodable(
        error: &serde_json::Error,
        rows: &'r [StoredMessage],
        now: i64,
    ) -> DeliveryOutcome<'r> {
        DeliveryOutcome::Unencodable(DeadLetter {
            rows: rows.iter().collect(),
            code: None,
            reason: format!("the message could not be encoded: {error}"),
            at: now,
        })
    }

    /// The rows to dead-letter, if any.
    pub fn dead_letter(&self) -> Option<&DeadLetter<'r>> {
        match self {
            DeliveryOutcome::Failed { expired, .. } => expired.as_ref(),
            DeliveryOutcome::Refused(dead) | DeliveryOutcome::Unencodable(dead) => Some(dead),
            DeliveryOutcome::Delivered { .. } | DeliveryOutcome::Throttled { .. } => None,
        }
    }

    /// The rows (of `rows`, the request's) to send again later, if any.
    pub fn retry(&self, rows: &[StoredMessage]) -> Option<Retry> {
        match self {
            DeliveryOutcome::Throttled {
                code,
                errmsg,
                until,
                ..
            } => Some(Retry {
                ids: ids(rows.iter()),
                at: *until,
                reason: format!("DingTalk throttled the robot ({code}: {errmsg})"),
            }),
            DeliveryOutcome::Failed {
                reason,
                until,
                alive,
                ..
            } if !alive.is_empty() => Some(Retry {
                ids: ids(alive.iter().copied()),
                at: *until,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    /// What the worker does next: a throttle or a backoff pauses the whole robot, so no younger
    /// message overtakes the ones waiting.
    pub fn next(&self) -> Next {
        match self {
            DeliveryOutcome::Throttled { until, .. } | DeliveryOutcome::Failed { until, .. } => {
                Next::PauseUntil(*until)
            }
            DeliveryOutcome::Delivered { .. }
            | DeliveryOutcome::Refused(_)
            | DeliveryOutcome::Unencodable(_) => Next::Continue,
        }
    }

    /// Counts it for `robot` (the dead letters count themselves: [`DeadLetter::record`]).
    pub fn record(&self, metrics: &Metrics, robot: &str, rows: &[StoredMessage]) {
        match self {
            DeliveryOutcome::Delivered { at, .. } => {
                metrics.sent(robot, rows.len() as u64);
                for row in rows {
                    let latency = (at - row.accepted_at).max(0) as f64 / 1000.0;
                    metrics.delivery_latency(robot, latency);
                }
            }
            DeliveryOutcome::Throttled { .. } => {
                metrics.failed(robot, FailureClass::Throttled);
                metrics.throttle_pause(robot);
            }
            DeliveryOutcome::Failed { alive, .. } => {
                metrics.failed(robot, FailureClass::Transient);
                if !alive.is_empty() {
                    metrics.retry(robot, alive.len() as u64);
                }
            }
            DeliveryOutcome::Refused(_) => metrics.failed(robot, FailureClass::Permanent),
            DeliveryOutcome::Unencodable(_) => {}
        }
    }

    /// Its line for `robot` (the dead letters have their own: [`DeadLetter::log`]).
    pub fn log(&self, robot: &str, rows: &[StoredMessage]) {
        match self {
            DeliveryOutcome::Delivered { dry_run, .. } => {
                let (messages, first) = (rows.len(), rows[0].id);
                if *dry_run {
                    tracing::info!(target: LOG_TARGET, robot = %robot, rules = %rules(rows.iter()), messages, first, "Dry run: printed the request instead of sending it.");
                } else {
                    tracing::info!(target: LOG_TARGET, robot = %robot, rules = %rules(rows.iter()), messages, first, "Delivered to DingTalk.");
                }
            }
            DeliveryOutcome::Throttled {
                code,
                errmsg,
                pause,
                ..
            } => tracing::warn!(
                target: LOG_TARGET,
                robot = %robot,
                rules = %rules(rows.iter()),
                errcode = %code.value(),
                errmsg = %errmsg,
                action = "pause the robot for the penalty, then resume; nothing is lost",
                pause_secs = pause.as_secs(),
                "DingTalk throttled the robot."
            ),
            DeliveryOutcome::Failed {
                reason,
                attempt,
                delay,
                alive,
                ..
            } if !alive.is_empty() => tracing::warn!(
                target: LOG_TARGET,
                robot = %robot,
                rules = %rules(rows.iter()),
                errcode = "none",
                errmsg = %reason,
                attempt,
                action = "retry after a backoff",
                retry_in_ms = delay.as_millis() as u64,
                "Sending to DingTalk failed."
            ),
            DeliveryOutcome::Failed { .. }
            | DeliveryOutcome::Refused(_)
            | DeliveryOutcome::Unencodable(_) => {}
        }
    }
}

impl DeadLetter<'_> {
    /// The ids of its rows.
    pub fn ids(&self) -> Vec<i64> {
        ids(self.rows.iter().copied())
    }

    /// Counts its rows for `robot`.
    pub fn record(&self, metrics: &Metrics, robot: &str) {
        metrics.dead_letter(robot, self.rows.len() as u64);
    }

    /// Its ERROR line for `robot`: an operator must act.
    pub fn log(&self, robot: &str) {
        tracing::error!(
            target: LOG_TARGET,
            robot = %robot,
            rules = %rules(self.rows.iter().copied()),
            errcode = self.code.as_ref().map_or_else(|| "none".to_owned(), Code::value),
            errmsg = %self.reason,
            messages = ?self.ids().as_slice(),
            action = "dead-lettered: see `dingrelay outbox list`, fix the cause, then `dingrelay outbox retry`",
            "DingTalk will not take these messages."
        );
    }
}

/// A failure worth retrying: the robot pauses for a backoff; the rows younger than `max_age` are
/// retried after it, the others dead-lettered with `reason`.
fn failed<'r>(
    reason: String,
    rows: &'r [StoredMessage],
    settings: &RobotDelivery,
    now: i64,
    rng: &mut impl rand::Rng,
) -> DeliveryOutcome<'r> {
    let max_age = settings.max_age.as_millis() as i64;
    let (expired, alive): (Vec<&StoredMessage>, Vec<&StoredMessage>) =
        rows.iter().partition(|r| now - r.age_from >= max_age);
    let expired = (!expired.is_empty()).then(|| DeadLetter {
        rows: expired,
        code: None,
        reason: format!(
            "still failing after the maximum age of {}s: {reason}",
            settings.max_age.as_secs()
        ),
        at: now,
    });
    let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
    let delay = retry_delay(attempts, DEFAULT_BASE, DEFAULT_CAP, rng);
    DeliveryOutcome::Failed {
        reason,
        attempt: attempts + 1,
        delay,
        until: now + delay.as_millis() as i64,
        expired,
        alive,
    }
}

/// A permanent refusal: every row is dead-lettered with DingTalk's code and the advice.
fn refused<'r>(
    code: Code,
    message: &str,
    advice: &str,
    rows: &'r [StoredMessage],
    now: i64,
) -> DeliveryOutcome<'r> {
    let reason = format!("DingTalk refused the message ({code}: {message}); {advice}");
    DeliveryOutcome::Refused(DeadLetter {
        rows: rows.iter().collect(),
        code: Some(code),
        reason,
        at: now,
    })
}

fn ids<'a>(rows: impl Iterator<Item = &'a StoredMessage>) -> Vec<i64> {
    rows.map(|r| r.id).collect()
}

/// The rules of the rows, for log lines: `alerts` or `alerts, deploys`.
fn rules<'a>(rows: impl Iterator<Item = &'a StoredMessage>) -> String {
    let mut rules: Vec<&str> = rows.map(|r| r.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    rules.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::message::Text;
    use crate::dingtalk::{Message, MessageBody};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const NOW: i64 = 10_000_000;

    fn row(id: i64, rule: &str, age_from: i64, attempts: u32) -> StoredMessage {
        StoredMessage {
            id,
            robot: "ops".to_owned(),
            rule: rule.to_owned(),
            source: "am".to_owned(),
            message: Message {
                body: MessageBody::Text {
                    text: Text {
                        content: "x".to_owned(),
                    },
                },
                at: None,
                msg_uuid: None,
            },
            attempts,
            accepted_at: age_from,
            age_from,
            next_attempt_at: age_from,
            last_error: None,
            recipients: Vec::new(),
        }
    }

    fn settings() -> RobotDelivery {
        RobotDelivery {
            throttle_penalty: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
            ..RobotDelivery::default()
        }
    }

    fn of<'r>(answer: Verdict, rows: &'r [StoredMessage]) -> DeliveryOutcome<'r> {
        let mut rng = StdRng::seed_from_u64(7);
        DeliveryOutcome::of(answer, rows, &settings(), false, NOW, &mut rng)
    }

    #[test]
    fn delivered_rows_are_done() {
        let rows = [row(1, "alerts", NOW - 5, 0)];
        let outcome = of(Verdict::Delivered, &rows);
        assert_eq!(outcome.next(), Next::Continue);
        assert!(outcome.dead_letter().is_none());
        assert_eq!(outcome.retry(&rows), None);
    }

    #[test]
    fn a_throttle_pauses_the_robot_and_retries_every_row_after_the_penalty() {
        let rows = [row(1, "alerts", NOW, 0), row(2, "deploys", NOW, 3)];
        let outcome = of(
            Verdict::Throttled {
                errcode: 130101,
                errmsg: "send too fast".to_owned(),
            },
            &rows,
        );
        let until = NOW + 600_000;
        assert_eq!(outcome.next(), Next::PauseUntil(until));
        assert!(outcome.dead_letter().is_none());
        assert_eq!(
            outcome.retry(&rows),
            Some(Retry {
                ids: vec![1, 2],
                at: until,
                reason: "DingTalk throttled the robot (errcode 130101: send too fast)".to_owned(),
            })
        );
    }

    #[test]
    fn a_transient_failure_retries_the_young_rows_and_dead_letters_the_old() {
        let rows = [
            row(1, "alerts", NOW - 3_600_000, 9),
            row(2, "alerts", NOW - 10, 2),
        ];
        let outcome = of(
            Verdict::Transient {
                reason: "timed out".to_owned(),
            },
            &rows,
        );
        let DeliveryOutcome::Failed { attempt, until, .. } = &outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(*attempt, 10, "the most attempts of the rows, plus this one");
        assert!(
            (NOW..=NOW + 60_000).contains(until),
            "a backoff of at most a minute"
        );
        assert_eq!(outcome.next(), Next::PauseUntil(*until));
        let dead = outcome.dead_letter().expect("the old row is given up on");
        assert_eq!(dead.ids(), [1]);
        assert_eq!(dead.code, None);
        assert_eq!(
            dead.reason,
            "still failing after the maximum age of 3600s: timed out"
        );
        let retry = outcome.retry(&rows).expect("the young row is retried");
        assert_eq!((retry.ids, retry.at), (vec![2], *until));
        assert_eq!(retry.reason, "timed out");
    }

    #[test]
    fn when_every_row_is_too_old_nothing_is_retried_but_the_robot_still_backs_off() {
        let rows = [row(1, "alerts", NOW - 3_600_000, 4)];
        let outcome = of(
            Verdict::Transient {
                reason: "HTTP 502".to_owned(),
            },
            &rows,
        );
        assert!(matches!(outcome.next(), Next::PauseUntil(_)));
        assert_eq!(outcome.dead_letter().map(DeadLetter::ids), Some(vec![1]));
        assert_eq!(outcome.retry(&rows), None);
    }

    #[test]
    fn a_permanent_refusal_dead_letters_every_row_with_the_advice() {
        let rows = [row(1, "alerts", NOW, 0), row(2, "deploys", NOW, 0)];
        let outcome = of(
            Verdict::Permanent {
                errcode: 300001,
                errmsg: "token is not exist".to_owned(),
                advice: "copy the webhook URL again",
            },
            &rows,
        );
        assert_eq!(outcome.next(), Next::Continue);
        assert_eq!(outcome.retry(&rows), None);
        let dead = outcome.dead_letter().expect("dead-lettered");
        assert_eq!(dead.ids(), [1, 2]);
        assert_eq!(dead.code, Some(Code::Errcode(300001)));
        assert_eq!(
            dead.reason,
            "DingTalk refused the message (errcode 300001: token is not exist); copy the webhook URL again"
        );
        assert_eq!(dead.at, NOW);
    }
}

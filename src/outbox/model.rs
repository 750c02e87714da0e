//! What goes into the outbox and what comes out: a message to queue, the answer to queuing it,
//! a stored message with its state, and per-robot counts.

use std::fmt;
use std::str::FromStr;

use crate::dingtalk::Message;

/// A message to queue for one robot.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The robot's name; must not be empty (the schema refuses it).
    pub robot: String,
    pub rule: String,
    pub source: String,
    /// The event's dedup key made particular to the rule (and alert): kept for the operator
    /// (`outbox show`); deduplication happens on events, before routing.
    pub dedup_key: Option<String>,
    /// The validated message, without `msgUuid` (the outbox sets it from the row).
    pub message: Message,
    /// Whom it goes to, for robots that address people (an app robot's one-to-one chats, work
    /// notifications): user ids. Empty for a group.
    pub recipients: Vec<String>,
}

/// What happened to one message of an enqueued batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored as row `id`.
    Accepted { id: i64 },
}

/// A queued message, as a worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub robot: String,
    pub rule: String,
    pub source: String,
    /// The message with `msgUuid` set from the row, so a resend after a crash carries the same key.
    pub message: Message,
    /// Whom it goes to (see [`NewMessage::recipients`]); empty for a group.
    pub recipients: Vec<String>,
    /// Attempts so far that got an answer or may have reached DingTalk.
    pub attempts: u32,
    /// When it was accepted (Unix ms).
    pub accepted_at: i64,
    /// Where its maximum age counts from: `accepted_at`, or the time of a manual retry.
    pub age_from: i64,
    /// When it is due (Unix ms).
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// What a robot's worker may send now, in acceptance order ([`Outbox::due_in_order`]).
///
/// [`Outbox::due_in_order`]: super::Outbox::due_in_order
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// The pending messages that are due, oldest first, up to the first one that is not due yet
    /// (never empty): nothing younger overtakes a message waiting for its retry.
    Messages(Vec<StoredMessage>),
    /// Nothing may be sent yet: the oldest pending message is due at this time (Unix ms), or
    /// nothing is pending (`None`).
    NextAt(Option<i64>),
}

/// One robot's share of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotStats {
    pub robot: String,
    pub pending: usize,
    pub dead: usize,
    /// When the oldest pending message was accepted (Unix ms), if any is pending.
    pub oldest_pending_at: Option<i64>,
}

/// The outbox cannot take or give messages: the daemon answers 503 so senders retry.
///
/// The reason names what failed (never a message body or a secret); the intake may show it to
/// the sender.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is unavailable: {0}")]
    Unavailable(String),
}

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Waiting to be sent (again) at `next_attempt_at`.
    Pending,
    /// DingTalk answered `errcode 0`.
    Delivered,
    /// Given up on: kept for the operator, who may retry or purge it.
    Dead,
}

impl State {
    /// The value stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Dead => "dead",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<State, String> {
        match s {
            "pending" => Ok(State::Pending),
            "delivered" => Ok(State::Delivered),
            "dead" => Ok(State::Dead),
            other => Err(format!(
                "unknown state `{other}` (expected pending, delivered or dead)"
            )),
        }
    }
}

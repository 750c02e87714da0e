//! The outbox: every accepted message, durably, until DingTalk has it.
//!
//! One SQLite file, `<state_dir>/outbox.sqlite3` (WAL journal, `synchronous=FULL`, busy timeout
//! 5 s, schema versioned with `PRAGMA user_version`), holds one row per message and robot. The
//! daemon reaches it through [`Outbox`], a handle to one dedicated thread that owns the
//! connection; `dingrelay outbox ...` reaches the same file through [`Admin`], its own connection
//! in another process.
//!
//! # Durability contract
//!
//! - **Accepted** means committed: a message counts as accepted only once the transaction that
//!   inserted it has committed with `synchronous=FULL` (the WAL is fsynced). [`Outbox::enqueue`]
//!   answers only after that commit, and the HTTP intake answers `202` only after `enqueue`
//!   answered. Any failure before (a full disk, a lock held beyond the busy timeout, a dead
//!   thread) is an [`OutboxError::Unavailable`], answered `503`, so the sender retries: nothing it
//!   was told is accepted can be lost with the machine.
//! - A batch (the messages one webhook produced) is all or none: it is stored whole or not at all.
//!   Concurrent batches share one transaction and one fsync (group commit), each inside its own
//!   savepoint, so a batch that fails to insert fails alone.
//! - **Delivered** means DingTalk answered `errcode 0` *and* [`Outbox::mark_delivered`] committed.
//!   Until then the row stays `pending` and is sent again after a restart.
//! - So a crash can duplicate only a send that was in flight at the crash (sent, but
//!   `mark_delivered` not committed). Every row has a random 128-bit `uuid`, sent as DingTalk's
//!   `msgUuid`; the resend carries the same one, so DingTalk can drop the repeat.
//! - A message that can never be delivered (refused by DingTalk, too old, or a stored body that
//!   cannot be read) moves to the dead letters (`state = dead`) and stays there until an operator
//!   retries it (`dingrelay outbox retry`) or purges it (`dingrelay outbox purge`).
//!
//! # Deduplication
//!
//! A message with a `dedup_key` is not stored when a row of the same robot with the same key was
//! accepted less than `dedup_window_ms` before (`accepted_at > now_ms - dedup_window_ms`), whatever
//! that row's state, or earlier in the same batch: it is reported as
//! [`Enqueued::Duplicate`] with the id of that row. A window of 0 or less disables deduplication.
//! Dedup only sees rows that still exist: [`Outbox::prune`] must keep delivered rows at least as
//! long as the dedup window.
//!
//! # Pruning
//!
//! [`Outbox::prune`] deletes delivered rows delivered before a given time and attempt records
//! older than a given time. It never touches pending rows, and dead rows are kept until an
//! operator purges them. Row ids come from `AUTOINCREMENT`, so a pruned id is never reused.
//!
//! # Attempts
//!
//! Every request sent to DingTalk for a robot, delivered or not, is recorded
//! ([`Outbox::record_attempt`]): DingTalk's rate limit counts them all, and after a restart the
//! limiter starts from what went out in the last minute ([`Outbox::attempts_since`]).

mod admin;
mod handle;
mod schema;
mod store;

use std::fmt;
use std::str::FromStr;

use crate::dingtalk::Message;

pub use admin::{Admin, AdminError, Detail, Listing, Purgeable, RobotCounts};
pub use handle::Outbox;
pub use schema::{FILE_NAME, SCHEMA_VERSION};

/// A message to queue for one robot.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The robot's name; must not be empty (the schema refuses it).
    pub robot: String,
    pub rule: String,
    pub source: String,
    /// Identifies the event, rule and robot across redeliveries: a second message with the same
    /// key for the same robot within the dedup window is not queued again.
    pub dedup_key: Option<String>,
    /// The validated message, without `msgUuid` (the outbox sets it from the row).
    pub message: Message,
}

/// What happened to one message of an enqueued batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored as row `id`.
    Accepted { id: i64 },
    /// Already queued within the dedup window, as row `id`: not stored again.
    Duplicate { id: i64 },
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

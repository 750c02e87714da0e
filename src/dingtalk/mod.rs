//! DingTalk group robots: the typed message model, its validation, and request signing.
//!
//! A [`Message`] can only reach the outbox after [`validate::prepare`] accepted it for a robot:
//! DingTalk answers HTTP 200 even when it refuses a message, and renders some malformed messages
//! silently wrong, so every rule DingTalk enforces (or silently breaks on) is checked here first.

pub mod app_message;
pub mod message;
pub mod robot;
pub mod sign;
pub mod validate;

pub use message::{At, Message, MessageBody};
pub use robot::{Endpoint, Robot};
pub use validate::{InvalidMessage, MAX_BODY_BYTES, prepare};

//! DingTalk robots: the typed message model, its validation (for group custom robots, app robots
//! and work notifications alike), the app APIs' message shapes, and request signing.
//!
//! A [`Message`] can only reach the outbox after [`validate::prepare`] accepted it for a robot:
//! DingTalk answers HTTP 200 even when it refuses a message, and renders some malformed messages
//! silently wrong, so every rule DingTalk enforces (or silently breaks on) is checked here first.

pub mod app_message;
pub mod message;
pub mod robot;
pub mod sign;
pub mod validate;
pub mod work_notice;

pub use message::{At, Message, MessageBody};
pub use robot::{App, AppRobot, AppRobotKind, Endpoint, Robot};
pub use validate::{InvalidMessage, MAX_BODY_BYTES, prepare};

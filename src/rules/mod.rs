//! Rules: match events and render them into DingTalk messages.
pub mod filters;

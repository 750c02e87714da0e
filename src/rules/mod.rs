//! Rules: which events become which DingTalk messages, for which robots.
//!
//! A rule belongs to one source. Its `when` is a minijinja expression over the event's template
//! context; its message fields are minijinja templates. Everything is compiled once, when the
//! config is loaded ([`compile`]) into the model of [`model`]; routing an event (`route.rs`) only evaluates
//! (`render.rs`).
//!
//! Matching: rules are evaluated in file order and **every** rule whose `when` holds fires (one
//! event can notify several groups in several forms). A matching rule with `stop: true` ends the
//! evaluation: later rules are not considered. A rule sends to each of its robots.
//!
//! Rendering never sends a message that DingTalk would refuse or render wrong: each message goes
//! through [`crate::dingtalk::prepare`] for each robot, and a failure is a [`RuleError`] naming the
//! rule, the robot and the field.

pub mod compile;
mod filters;
pub mod model;
pub mod raw;
mod render;
mod route;
pub mod templates;

pub use compile::{DeclaredSource, environment};
pub use model::{
    FieldTemplate, Rendered, Routing, Rule, RuleError, RuleSet, SkipReason, Skipped, template_error,
};

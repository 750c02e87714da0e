//! Rules: which events become which DingTalk messages, for which robots.
//!
//! A rule belongs to one source. Its `when` is a minijinja expression over the event's template
//! context; its message fields are minijinja templates. Everything is compiled once, when the
//! config is loaded ([`compile`]); routing an event only evaluates ([`render`]).
//!
//! Matching: rules are evaluated in file order and **every** rule whose `when` holds fires (one
//! event can notify several groups in several forms). A matching rule with `stop: true` ends the
//! evaluation: later rules are not considered. A rule sends to each of its robots.
//!
//! Rendering never sends a message that DingTalk would refuse or render wrong: each message goes
//! through [`crate::dingtalk::prepare`] for each robot, and a failure is a [`RuleError`] naming the
//! rule, the robot and the field.

mod alert_labels;
pub mod raw;
pub mod compile;
pub mod filters;
mod render;
pub mod templates;

use std::sync::Arc;

use minijinja::Environment;

use crate::yaml::locate::Location;
use crate::dingtalk::{Message, Robot};

pub use compile::Rule;

/// All rules, with the template environment that holds their compiled templates.
pub struct RuleSet {
    env: Environment<'static>,
    rules: Vec<Rule>,
    /// json sources' `dedup` templates, by source name.
    dedup: std::collections::HashMap<String, compile::Field>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// One message to queue: a rule's rendering for one of its robots, validated.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub rule: String,
    pub robot: Arc<Robot>,
    pub message: Message,
    /// Bytes cut from the main text to fit DingTalk's 20,000-byte limit (0 when none).
    pub cut_bytes: usize,
    /// Alerts left out of the message (with an "...and N more alerts" marker) to fit the limit.
    pub omitted_alerts: usize,
    /// Which part of the event the message is about, when a rule sends one message per alert
    /// (`per_alert`): the alert's fingerprint. Part of the message's dedup key.
    pub part: Option<String>,
}

/// A rule of the event's source that did not fire, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub rule: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Its `when` was false for this event.
    ConditionFalse { when: String },
    /// An earlier matching rule had `stop: true`.
    StoppedBy { rule: String },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            SkipReason::ConditionFalse { when } => {
                write!(
                    f,
                    "rule `{}`: condition is false: {}",
                    self.rule,
                    when.trim()
                )
            }
            SkipReason::StoppedBy { rule } => write!(
                f,
                "rule `{}`: not evaluated, rule `{rule}` matched first and has `stop: true`",
                self.rule
            ),
        }
    }
}

/// A rule that cannot produce a valid message for this event: nothing of the event is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`{}: {field}: {reason}", robot.as_ref().map(|r| format!(", robot `{r}`")).unwrap_or_default())]
pub struct RuleError {
    pub rule: String,
    /// The robot, when the message is invalid for that robot only (its keywords, ...).
    pub robot: Option<String>,
    /// The rule's field (`when`, `markdown.text`, ...) or the DingTalk field (`markdown.title`).
    pub field: String,
    pub reason: String,
    /// Where the field is in the config file.
    pub location: Option<Location>,
}

/// What an event produced.
#[derive(Debug, Default)]
pub struct Routing {
    pub deliveries: Vec<Delivery>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<RuleError>,
}

impl RuleSet {
    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The template environment (for `check`'s static inspection of templates).
    pub fn environment(&self) -> &Environment<'static> {
        &self.env
    }

    /// Matches `event` against the rules of its source and renders every message it produces.
    /// `now` is what templates see as `now` (for "firing for 3h 12m").
    pub fn route(&self, event: &crate::source::Event, now: jiff::Timestamp) -> Routing {
        let mut routing = Routing::default();
        let mut stopped_by: Option<&str> = None;
        // Built once: every rule's `when` and message read the same context.
        let ctx = render::context(event, None, now).0;
        for rule in self.rules.iter().filter(|r| r.source == event.source) {
            if let Some(stopper) = stopped_by {
                routing.skipped.push(Skipped {
                    rule: rule.name.clone(),
                    reason: SkipReason::StoppedBy {
                        rule: stopper.to_owned(),
                    },
                });
                continue;
            }
            match self.route_with(rule, event, now, &ctx) {
                Ok(None) => {
                    routing.skipped.push(Skipped {
                        rule: rule.name.clone(),
                        reason: SkipReason::ConditionFalse {
                            when: rule
                                .when
                                .as_ref()
                                .map(|w| w.text.clone())
                                .unwrap_or_default(),
                        },
                    });
                    continue;
                }
                Ok(Some(deliveries)) => routing.deliveries.extend(deliveries),
                Err(errors) => routing.errors.extend(errors),
            }
            if rule.stop {
                stopped_by = Some(&rule.name);
            }
        }
        routing
    }

    /// The event's dedup key: the sender's own (delivery id, alert group state), or for json
    /// sources what their `dedup` template renders (none when it renders empty).
    pub fn dedup_key(
        &self,
        event: &crate::source::Event,
        now: jiff::Timestamp,
    ) -> Result<Option<String>, RuleError> {
        let Some(field) = self.dedup.get(&event.source) else {
            return Ok(event.dedup_key.clone());
        };
        let key = self.render_source_field(&event.source, field, event, now)?;
        let key = key.trim();
        Ok((!key.is_empty()).then(|| format!("{}:{key}", event.source)))
    }

    /// Evaluates one rule: `None` when its `when` is false, else its deliveries.
    pub fn route_one(
        &self,
        rule: &Rule,
        event: &crate::source::Event,
        now: jiff::Timestamp,
    ) -> Result<Option<Vec<Delivery>>, Vec<RuleError>> {
        self.route_with(rule, event, now, &render::context(event, None, now).0)
    }

    fn route_with(
        &self,
        rule: &Rule,
        event: &crate::source::Event,
        now: jiff::Timestamp,
        ctx: &minijinja::Value,
    ) -> Result<Option<Vec<Delivery>>, Vec<RuleError>> {
        match self.matches(rule, ctx) {
            Ok(false) => Ok(None),
            Ok(true) => self.render_with(rule, event, now, Some(ctx)).map(Some),
            Err(error) => Err(vec![error]),
        }
    }
}

//! Routing an event: which rules of its source fire (in file order, until a `stop: true`), and
//! the messages they render; and the event's dedup key.

use minijinja::Environment;

use super::model::{Rendered, Routing, Rule, RuleError, RuleSet, SkipReason, Skipped};
use super::render;
use crate::source::Event;

/// What one matching rule produced: the valid messages, and what failed (per robot, or the
/// whole rule).
type RuleOutput = (Vec<Rendered>, Vec<RuleError>);

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
    pub fn route(&self, event: &Event, now: jiff::Timestamp) -> Routing {
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
                Ok(Some((deliveries, errors))) => {
                    routing.messages.extend(deliveries);
                    routing.errors.extend(errors);
                }
                Err(error) => routing.errors.push(error),
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
        event: &Event,
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
        event: &Event,
        now: jiff::Timestamp,
    ) -> Result<Option<Vec<Rendered>>, Vec<RuleError>> {
        match self.route_with(rule, event, now, &render::context(event, None, now).0) {
            Ok(None) => Ok(None),
            Ok(Some((deliveries, errors))) if errors.is_empty() => Ok(Some(deliveries)),
            Ok(Some((_, errors))) => Err(errors),
            Err(error) => Err(vec![error]),
        }
    }

    fn route_with(
        &self,
        rule: &Rule,
        event: &Event,
        now: jiff::Timestamp,
        ctx: &minijinja::Value,
    ) -> Result<Option<RuleOutput>, RuleError> {
        match self.matches(rule, ctx)? {
            false => Ok(None),
            true => Ok(Some(self.render_with(rule, event, now, Some(ctx)))),
        }
    }
}

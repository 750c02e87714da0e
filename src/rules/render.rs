//! Evaluating a compiled rule against an event: its condition, its message, its mentions, and
//! fitting the result into DingTalk's 20,000 bytes.
//!
//! Fitting: when an alert event renders too long, the rule is rendered again with fewer alerts
//! (the largest number that fits, found by bisection) and the main text gets a visible
//! "...and N more alerts" marker. Whatever is still too long is cut by bytes in
//! [`crate::dingtalk::prepare`], with a byte-count marker. A message is never refused for length.

use minijinja::Value;

use super::model::{
    AllTemplate, CardActionTemplate, FeedLinkTemplate, FieldTemplate, MessageTemplate, Rendered,
    Rule, RuleError, RuleSet, template_error,
};
use crate::dingtalk::message::{
    ActionCard, Button, CardAction, FeedCard, FeedLink, Link, Markdown, Text,
};
use crate::dingtalk::validate::{MSG_UUID_RESERVE, encoded_len};
use crate::dingtalk::{At, MAX_BODY_BYTES, Message, MessageBody, prepare};
use crate::source::Event;

impl RuleSet {
    /// Whether the rule's `when` holds for the event (always, without a `when`).
    /// `ctx` is the event's full template context ([`context`]), built once per event.
    pub(super) fn matches(&self, rule: &Rule, ctx: &Value) -> Result<bool, RuleError> {
        let Some(when) = &rule.when else {
            return Ok(true);
        };
        Ok(self.render_field(rule, &when.template, ctx)? == "true")
    }

    /// Renders the rule's message for the event and prepares it for each of the rule's robots,
    /// whether or not its `when` holds.
    pub fn render(
        &self,
        rule: &Rule,
        event: &Event,
        now: jiff::Timestamp,
    ) -> Result<Vec<Rendered>, Vec<RuleError>> {
        let (deliveries, errors) = self.render_with(rule, event, now, None);
        if errors.is_empty() {
            Ok(deliveries)
        } else {
            Err(errors)
        }
    }

    /// [`RuleSet::render`], reusing the event's full context when the caller built it already,
    /// and keeping what did render: the messages of the robots whose message is valid, and an
    /// error for each robot whose is not. A template that fails renders nothing of the rule (one
    /// error, without a robot).
    pub(super) fn render_with(
        &self,
        rule: &Rule,
        event: &Event,
        now: jiff::Timestamp,
        full_ctx: Option<&Value>,
    ) -> (Vec<Rendered>, Vec<RuleError>) {
        let mut deliveries = Vec::new();
        let mut errors = Vec::new();
        for (part, event) in parts(rule, event) {
            // A per-alert part has its own context; the whole event can reuse the caller's.
            let built;
            let ctx = match full_ctx.filter(|_| part.is_none()) {
                Some(ctx) => ctx,
                None => {
                    built = context(&event, None, now).0;
                    &built
                }
            };
            let (message, omitted_alerts) = match self.render_fitting(rule, &event, now, Some(ctx))
            {
                Ok(rendered) => rendered,
                Err(error) => return (Vec::new(), vec![error]),
            };
            for robot in &rule.robots {
                let recipients = match self.recipients(rule, &robot.name, ctx) {
                    Ok(recipients) => recipients,
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                };
                match prepare(message.clone(), robot) {
                    Ok(prepared) => deliveries.push(Rendered {
                        recipients,
                        rule: rule.name.clone(),
                        robot: robot.clone(),
                        message: prepared.message,
                        cut_bytes: prepared.cut_bytes,
                        keyword_tag: prepared.keyword_tag,
                        omitted_alerts,
                        part: part.clone(),
                    }),
                    Err(invalid) => errors.push(RuleError {
                        rule: rule.name.clone(),
                        robot: Some(robot.name.clone()),
                        location: field_location(rule, &invalid.field).or(rule.location),
                        field: invalid.field,
                        reason: invalid.reason,
                    }),
                }
            }
        }
        (deliveries, errors)
    }

    /// The user ids a robot that addresses people sends this message to: its `users` rendered
    /// with the event's context, split at commas and spaces (a label may name several people),
    /// each once, in order. Empty for a group robot, and when every template renders empty (the
    /// worker then dead-letters the message, saying so).
    fn recipients(&self, rule: &Rule, robot: &str, ctx: &Value) -> Result<Vec<String>, RuleError> {
        let Some(fields) = self.recipients.get(robot) else {
            return Ok(Vec::new());
        };
        let mut users: Vec<String> = Vec::new();
        for field in fields {
            let rendered = self.render_field(rule, field, ctx).map_err(|mut error| {
                error.robot = Some(robot.to_owned());
                error.field = format!("robots.{robot}.{}", field.name);
                error
            })?;
            for user in rendered.split(|c: char| c == ',' || c.is_whitespace()) {
                if !user.is_empty() && !users.iter().any(|u| u == user) {
                    users.push(user.to_owned());
                }
            }
        }
        Ok(users)
    }

    /// Renders the message, with fewer alerts if all of them would not fit.
    fn render_fitting(
        &self,
        rule: &Rule,
        event: &Event,
        now: jiff::Timestamp,
        full_ctx: Option<&Value>,
    ) -> Result<(Message, usize), RuleError> {
        let built;
        let ctx = match full_ctx {
            Some(ctx) => ctx,
            None => {
                built = context(event, None, now).0;
                &built
            }
        };
        let full = self.render_message(rule, ctx)?;
        let total = event.alert_count().unwrap_or(0);
        if fits(&full) || total <= 1 {
            return Ok((full, 0));
        }
        // The largest number of alerts that fits, by bisection over 0..total.
        let (mut lo, mut hi) = (0usize, total - 1);
        let mut best: Option<(Message, usize)> = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let (ctx, omitted) = context(event, Some(mid), now);
            let mut message = self.render_message(rule, &ctx)?;
            append_to_main_text(&mut message, &more_alerts_marker(omitted));
            if fits(&message) {
                best = Some((message, omitted));
                lo = mid + 1;
            } else if mid == 0 {
                break;
            } else {
                hi = mid - 1;
            }
        }
        match best {
            Some(best) => Ok(best),
            None => {
                // Even without alerts it does not fit: keep the marker, prepare cuts by bytes.
                let (ctx, omitted) = context(event, Some(0), now);
                let mut message = self.render_message(rule, &ctx)?;
                append_to_main_text(&mut message, &more_alerts_marker(omitted));
                Ok((message, omitted))
            }
        }
    }

    /// Renders a source-level template (a json source's `dedup`).
    pub(super) fn render_source_field(
        &self,
        source: &str,
        field: &FieldTemplate,
        event: &Event,
        now: jiff::Timestamp,
    ) -> Result<String, RuleError> {
        let ctx = context(event, None, now).0;
        let fail = |e: &minijinja::Error| RuleError {
            rule: format!("(source {source})"),
            robot: None,
            field: field.name.clone(),
            reason: template_error(&field.name, e),
            location: field.location_of_line(e.line()),
        };
        let template = self.env.get_template(&field.id).map_err(|e| fail(&e))?;
        template.render(&ctx).map_err(|e| fail(&e))
    }

    fn render_field(
        &self,
        rule: &Rule,
        field: &FieldTemplate,
        ctx: &Value,
    ) -> Result<String, RuleError> {
        let template = self
            .env
            .get_template(&field.id)
            .map_err(|e| error(rule, field, &e))?;
        template.render(ctx).map_err(|e| error(rule, field, &e))
    }

    fn render_message(&self, rule: &Rule, ctx: &Value) -> Result<Message, RuleError> {
        let r = |field: &FieldTemplate| self.render_field(rule, field, ctx);
        let body = match &rule.message {
            MessageTemplate::Text { content } => MessageBody::Text {
                text: Text {
                    content: r(content)?,
                },
            },
            MessageTemplate::Link {
                title,
                text,
                message_url,
                pic_url,
            } => MessageBody::Link {
                link: Link {
                    title: r(title)?,
                    text: r(text)?,
                    message_url: r(message_url)?.trim().to_owned(),
                    pic_url: match pic_url {
                        Some(p) => Some(r(p)?.trim().to_owned()).filter(|p| !p.is_empty()),
                        None => None,
                    },
                },
            },
            MessageTemplate::Markdown { title, text } => MessageBody::Markdown {
                markdown: Markdown {
                    title: r(title)?,
                    text: r(text)?,
                },
            },
            MessageTemplate::ActionCard {
                title,
                text,
                action,
                orientation,
                hide_avatar,
            } => MessageBody::ActionCard {
                action_card: ActionCard {
                    title: r(title)?,
                    text: r(text)?,
                    action: match action {
                        CardActionTemplate::Single { title, url } => CardAction::Single {
                            single_title: r(title)?,
                            single_url: r(url)?.trim().to_owned(),
                        },
                        CardActionTemplate::Buttons(buttons) => CardAction::Buttons {
                            btns: buttons
                                .iter()
                                .map(|(t, u)| {
                                    Ok(Button {
                                        title: r(t)?,
                                        action_url: r(u)?.trim().to_owned(),
                                    })
                                })
                                .collect::<Result<_, RuleError>>()?,
                        },
                    },
                    btn_orientation: *orientation,
                    hide_avatar: *hide_avatar,
                },
            },
            MessageTemplate::FeedCard { links, each } => {
                let mut rendered = links
                    .iter()
                    .map(|link| self.render_feed_link(rule, link, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(each) = each {
                    let json = r(&each.list)?;
                    let items: serde_json::Value =
                        serde_json::from_str(&json).map_err(|e| RuleError {
                            rule: rule.name.clone(),
                            robot: None,
                            field: each.list.name.clone(),
                            reason: format!("did not give a list ({e})"),
                            location: each.list.location,
                        })?;
                    let items = match items {
                        serde_json::Value::Array(items) => items,
                        serde_json::Value::Null => Vec::new(),
                        other => {
                            return Err(RuleError {
                                rule: rule.name.clone(),
                                robot: None,
                                field: each.list.name.clone(),
                                reason: format!("must give a list, gave {}", kind_of(&other)),
                                location: each.list.location,
                            });
                        }
                    };
                    for item in items.iter().take(each.max_links) {
                        let item_ctx = minijinja::context! {
                            item => Value::from(minijinja::value::Serde(item)),
                            ..ctx.clone()
                        };
                        rendered.push(self.render_feed_link(rule, &each.link, &item_ctx)?);
                    }
                }
                MessageBody::FeedCard {
                    feed_card: FeedCard { links: rendered },
                }
            }
        };
        let at = self.render_at(rule, ctx)?;
        Ok(Message {
            body,
            at: (!at.is_empty()).then_some(at),
            msg_uuid: None,
        })
    }

    fn render_feed_link(
        &self,
        rule: &Rule,
        link: &FeedLinkTemplate,
        ctx: &Value,
    ) -> Result<FeedLink, RuleError> {
        Ok(FeedLink {
            title: self.render_field(rule, &link.title, ctx)?,
            message_url: self
                .render_field(rule, &link.message_url, ctx)?
                .trim()
                .to_owned(),
            pic_url: self
                .render_field(rule, &link.pic_url, ctx)?
                .trim()
                .to_owned(),
        })
    }

    /// Mentions: each template gives one id or a list separated by commas, semicolons or
    /// spaces; empty results (a label that is not set) are dropped.
    fn render_at(&self, rule: &Rule, ctx: &Value) -> Result<At, RuleError> {
        let mut at = At::default();
        for (fields, out) in [
            (&rule.at.mobiles, &mut at.at_mobiles),
            (&rule.at.user_ids, &mut at.at_user_ids),
        ] {
            for field in fields {
                let rendered = self.render_field(rule, field, ctx)?;
                for id in rendered.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
                    if !id.is_empty() && !out.iter().any(|seen| seen == id) {
                        out.push(id.to_owned());
                    }
                }
            }
        }
        at.is_at_all = match &rule.at.all {
            AllTemplate::No => false,
            AllTemplate::Yes => true,
            AllTemplate::Template(field) => {
                match self
                    .render_field(rule, field, ctx)?
                    .trim()
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" | "" => false,
                    other => {
                        return Err(RuleError {
                            rule: rule.name.clone(),
                            robot: None,
                            field: field.name.clone(),
                            reason: format!("must render `true` or `false`, rendered `{other}`"),
                            location: field.location,
                        });
                    }
                }
            }
        };
        Ok(at)
    }
}

/// The events a rule renders: the event itself, or with `per_alert`, one event per alert (its
/// payload holding that alert alone, `status` and `event` the alert's; `when` was decided on
/// the group), each named by the alert's
/// fingerprint (or position) so their messages are told apart when deduplicated.
fn parts<'e>(rule: &Rule, event: &'e Event) -> Vec<(Option<String>, std::borrow::Cow<'e, Event>)> {
    use std::borrow::Cow;
    let alerts = match (rule.per_alert, event.payload.get("alerts")) {
        (true, Some(serde_json::Value::Array(alerts))) if event.kind.has_alerts() => alerts,
        _ => return vec![(None, Cow::Borrowed(event))],
    };
    let mut seen = std::collections::HashSet::new();
    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            let mut one = event.clone();
            if let serde_json::Value::Object(payload) = &mut one.payload {
                payload.insert(
                    "alerts".to_owned(),
                    serde_json::Value::Array(vec![alert.clone()]),
                );
                if let Some(status) = alert.get("status").and_then(|s| s.as_str()) {
                    payload.insert("status".to_owned(), status.into());
                    // The message is about this alert: firing or resolved is its own.
                    one.name = status.to_owned();
                }
            }
            let fingerprint = alert
                .get("fingerprint")
                .and_then(|f| f.as_str())
                .filter(|f| !f.is_empty());
            // Two alerts of one group with the same fingerprint still get a message each.
            let name = match fingerprint {
                Some(f) if seen.insert(f.to_owned()) => f.to_owned(),
                Some(f) => format!("{f}-{i}"),
                None => format!("alert-{i}"),
            };
            (Some(name), Cow::Owned(one))
        })
        .collect()
}

/// The template context of an event, with `now`, keeping at most `alert_limit` alerts.
pub(super) fn context(
    event: &Event,
    alert_limit: Option<usize>,
    now: jiff::Timestamp,
) -> (Value, usize) {
    event.template_context(alert_limit, Some(now))
}

/// Where the rule's template for a DingTalk field is (`markdown.title`, `link.messageUrl` is the
/// rule's `link.message_url`); for `keywords`, its first text a keyword can go in.
fn field_location(rule: &Rule, dingtalk_field: &str) -> Option<crate::yaml::Location> {
    let fields = rule.fields();
    if dingtalk_field == "keywords" {
        return fields
            .iter()
            .find(|f| f.name.ends_with(".text") || f.name.ends_with(".content"))
            .and_then(|f| f.location);
    }
    let snake: String = dingtalk_field
        .chars()
        .flat_map(|c| {
            let lower = c.to_ascii_lowercase();
            (c.is_ascii_uppercase())
                .then_some('_')
                .into_iter()
                .chain(std::iter::once(lower))
        })
        .collect();
    let snake = snake
        .replace("action_u_r_l", "url")
        .replace("_u_r_l", "_url");
    fields
        .iter()
        .find(|f| f.name == dingtalk_field || f.name == snake)
        .and_then(|f| f.location)
}

fn error(rule: &Rule, field: &FieldTemplate, error: &minijinja::Error) -> RuleError {
    RuleError {
        rule: rule.name.clone(),
        robot: None,
        field: field.name.clone(),
        reason: template_error(&field.name, error)
            .trim_start_matches(&format!("{}: ", field.name))
            .to_owned(),
        location: field.location_of_line(error.line()),
    }
}

/// Whether a rendered message fits with room for the outbox's `msgUuid` and the mentions that
/// `prepare` may append.
fn fits(message: &Message) -> bool {
    let mentions = match &message.at {
        Some(_) => message.mentions().map(|id| id.len() + 2).sum::<usize>() + 4,
        None => 0,
    };
    encoded_len(message) + MSG_UUID_RESERVE + mentions <= MAX_BODY_BYTES
}

fn more_alerts_marker(omitted: usize) -> String {
    let noun = if omitted == 1 { "alert" } else { "alerts" };
    format!("\n\n...and {omitted} more {noun}")
}

/// Appends to the text that carries the message (`text.content`, `markdown.text`, `link.text`,
/// `actionCard.text`); a feedCard has none and is left as it is.
fn append_to_main_text(message: &mut Message, suffix: &str) {
    if let Some((_, text)) = message.body.main_text_mut() {
        text.push_str(suffix);
    }
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

//! The compiled model of the rules: what a [`RuleSet`] holds once `rules.yaml` is loaded, and
//! what routing an event produces. Built by [`super::compile`], evaluated by `route.rs` and
//! `render.rs`; nothing here changes after load.

use std::sync::Arc;

use minijinja::Environment;

use crate::dingtalk::message::BtnOrientation;
use crate::dingtalk::{Message, Robot};
use crate::yaml::Location;

/// All rules, with the template environment that holds their compiled templates.
pub struct RuleSet {
    pub(super) env: Environment<'static>,
    pub(super) rules: Vec<Rule>,
    /// json sources' `dedup` templates, by source name.
    pub(super) dedup: std::collections::HashMap<String, FieldTemplate>,
    /// The `users` templates of robots that address people (an app robot's one-to-one chats,
    /// work notifications), by robot name: rendered for each message.
    pub(super) recipients: std::collections::HashMap<String, Vec<FieldTemplate>>,
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
pub struct Rendered {
    pub rule: String,
    pub robot: Arc<Robot>,
    pub message: Message,
    /// Bytes cut from the main text to fit DingTalk's 20,000-byte limit (0 when none).
    pub cut_bytes: usize,
    /// The robot's keyword, as put in front of the title (or `text` content) of a message that
    /// had none of them ([`crate::dingtalk::validate::Prepared::keyword_tag`]).
    pub keyword_tag: Option<String>,
    /// Alerts left out of the message (with an "...and N more alerts" marker) to fit the limit.
    pub omitted_alerts: usize,
    /// Whom the message goes to, for a robot that addresses people: the user ids its `users`
    /// rendered for the event, each once, in order. Empty for a group.
    pub recipients: Vec<String>,
    /// Which part of the event the message is about, when a rule sends one message per alert
    /// (`per_alert`): the alert's fingerprint. Part of the message's dedup key.
    pub part: Option<String>,
}

impl Rendered {
    /// The message's dedup key: the event's ([`RuleSet::dedup_key`]), made particular to the rule
    /// and, when a rule sends one message per alert, to the alert. `None` when the event has none.
    ///
    /// [`RuleSet::dedup_key`]: super::RuleSet::dedup_key
    pub fn dedup_key(&self, event_key: Option<&str>) -> Option<String> {
        let key = event_key?;
        Some(match &self.part {
            Some(part) => format!("{key}/{}/{part}", self.rule),
            None => format!("{key}/{}", self.rule),
        })
    }
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

/// A rule that cannot produce a valid message for this event (for one of its robots, or for all
/// of them when `robot` is `None`). Routing sends a fallback message in its place.
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
    /// The valid messages, in rule order.
    pub messages: Vec<Rendered>,
    pub skipped: Vec<Skipped>,
    /// What failed: a rule whose `when` or template failed has no message here, a rule whose
    /// message is invalid for one robot has the messages of its other robots.
    pub errors: Vec<RuleError>,
}

/// A compiled template: its name in the environment and where it came from.
#[derive(Debug, Clone)]
pub struct FieldTemplate {
    /// The template's name in the environment, e.g. `rules[0].markdown.text`.
    pub id: String,
    /// The rule-relative field, e.g. `markdown.text`, used in error messages.
    pub name: String,
    /// Where the value is in the config file.
    pub location: Option<Location>,
    /// The value is a block scalar (`text: |`): template line N is N-1 lines below `location`.
    pub block: bool,
}

impl FieldTemplate {
    /// Where a line of the template is in the config file, as near as is known.
    pub fn location_of_line(&self, template_line: Option<usize>) -> Option<Location> {
        let location = self.location?;
        match template_line {
            Some(line) if self.block && line > 1 => Some(Location {
                line: location.line + line - 1,
                column: location.column,
            }),
            _ => Some(location),
        }
    }
}

/// A `when` condition.
#[derive(Debug, Clone)]
pub struct When {
    /// The expression as written, shown when it is false.
    pub text: String,
    /// A template wrapping the expression, rendering `true` or `false`.
    pub template: FieldTemplate,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub source: String,
    pub when: Option<When>,
    pub robots: Vec<Arc<Robot>>,
    pub stop: bool,
    /// One message per alert instead of one per group (alert sources only).
    pub per_alert: bool,
    pub message: MessageTemplate,
    pub at: AtTemplate,
    /// Where the rule starts in the config file.
    pub location: Option<Location>,
}

impl Rule {
    /// Every template of the rule, for inspection by `check`.
    pub fn fields(&self) -> Vec<&FieldTemplate> {
        let mut fields: Vec<&FieldTemplate> = self.when.iter().map(|w| &w.template).collect();
        match &self.message {
            MessageTemplate::Text { content } => fields.push(content),
            MessageTemplate::Link {
                title,
                text,
                message_url,
                pic_url,
            } => fields.extend([title, text, message_url].into_iter().chain(pic_url)),
            MessageTemplate::Markdown { title, text } => fields.extend([title, text]),
            MessageTemplate::ActionCard {
                title,
                text,
                action,
                ..
            } => {
                fields.extend([title, text]);
                match action {
                    CardActionTemplate::Single { title, url } => fields.extend([title, url]),
                    CardActionTemplate::Buttons(buttons) => {
                        fields.extend(buttons.iter().flat_map(|(t, u)| [t, u]))
                    }
                }
            }
            MessageTemplate::FeedCard { links, each } => {
                for link in links.iter().chain(each.as_ref().map(|e| &e.link)) {
                    fields.extend([&link.title, &link.message_url, &link.pic_url]);
                }
                if let Some(each) = each {
                    fields.push(&each.list);
                }
            }
        }
        fields.extend(self.at.mobiles.iter().chain(&self.at.user_ids));
        if let AllTemplate::Template(all) = &self.at.all {
            fields.push(all);
        }
        fields
    }
}

/// The message a rule renders, by type.
#[derive(Debug)]
pub enum MessageTemplate {
    Text {
        content: FieldTemplate,
    },
    Link {
        title: FieldTemplate,
        text: FieldTemplate,
        message_url: FieldTemplate,
        pic_url: Option<FieldTemplate>,
    },
    Markdown {
        title: FieldTemplate,
        text: FieldTemplate,
    },
    ActionCard {
        title: FieldTemplate,
        text: FieldTemplate,
        action: CardActionTemplate,
        orientation: Option<BtnOrientation>,
        hide_avatar: Option<bool>,
    },
    FeedCard {
        links: Vec<FeedLinkTemplate>,
        each: Option<EachTemplate>,
    },
}

#[derive(Debug)]
pub enum CardActionTemplate {
    Single {
        title: FieldTemplate,
        url: FieldTemplate,
    },
    Buttons(Vec<(FieldTemplate, FieldTemplate)>),
}

#[derive(Debug)]
pub struct FeedLinkTemplate {
    pub title: FieldTemplate,
    pub message_url: FieldTemplate,
    pub pic_url: FieldTemplate,
}

/// feedCard links generated from a list.
#[derive(Debug)]
pub struct EachTemplate {
    /// Renders the list as JSON (`{{ (expr) | tojson }}`).
    pub list: FieldTemplate,
    /// Rendered once per item, with the item as `item`.
    pub link: FeedLinkTemplate,
    pub max_links: usize,
}

#[derive(Debug, Default)]
pub struct AtTemplate {
    pub mobiles: Vec<FieldTemplate>,
    pub user_ids: Vec<FieldTemplate>,
    pub all: AllTemplate,
}

#[derive(Debug, Default)]
pub enum AllTemplate {
    #[default]
    No,
    Yes,
    Template(FieldTemplate),
}

/// A minijinja error as text for the user: what went wrong and on which line of the template,
/// without the environment's internal template name.
pub fn template_error(field: &str, error: &minijinja::Error) -> String {
    let detail = error
        .detail()
        .map(|d| format!("{}: {d}", error.kind()))
        .unwrap_or_else(|| error.kind().to_string());
    match error.line() {
        Some(line) if line > 1 => format!("{field}: template line {line}: {detail}"),
        _ => format!("{field}: {detail}"),
    }
}

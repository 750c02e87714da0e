//! The raw shape of a rule and of a message template file, exactly as written: strings are not
//! yet expanded, robots not yet resolved, templates not yet compiled. Unknown keys are errors.
//!
//! Keys use snake_case throughout; DingTalk's own casing (`messageUrl` vs `messageURL`, ...) is
//! applied when messages are built, so users never have to remember it.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub source: String,
    /// A minijinja expression; the rule fires when it is true. Absent: always.
    #[serde(default)]
    pub when: Option<String>,
    pub to: OneOrMany,
    /// When this rule matches, later rules are not evaluated.
    #[serde(default)]
    pub stop: bool,
    /// Alert sources: one message per alert instead of one per alert group.
    #[serde(default)]
    pub per_alert: bool,
    /// A built-in or team template giving the message; the rule's own message fields override
    /// it field by field.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub text: Option<RawText>,
    #[serde(default)]
    pub link: Option<RawLink>,
    #[serde(default)]
    pub markdown: Option<RawMarkdown>,
    #[serde(default)]
    pub action_card: Option<RawActionCard>,
    #[serde(default)]
    pub feed_card: Option<RawFeedCard>,
    #[serde(default)]
    pub at: Option<RawAt>,
}

/// `to: ops` or `to: [ops, dev]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

// Message fields are optional here: a rule that uses a `template` sets only the fields it
// overrides. Whether every required field ends up set is checked when the rule is compiled.

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawText {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub message_url: Option<String>,
    #[serde(default)]
    pub pic_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMarkdown {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActionCard {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// One button for the whole card: `single_title` and `single_url` together...
    #[serde(default)]
    pub single_title: Option<String>,
    #[serde(default)]
    pub single_url: Option<String>,
    /// ...or independent buttons.
    #[serde(default)]
    pub buttons: Vec<RawButton>,
    #[serde(default)]
    pub button_orientation: Option<Orientation>,
    #[serde(default)]
    pub hide_avatar: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    Vertical,
    Horizontal,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawButton {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedCard {
    /// Fixed links, rendered as they are.
    #[serde(default)]
    pub links: Vec<RawFeedLink>,
    /// An expression giving a list (`commits`, `alerts`): one link per item, rendered from `link`
    /// with the item as `item`.
    #[serde(default)]
    pub each: Option<String>,
    #[serde(default)]
    pub link: Option<RawFeedLink>,
    /// At most this many links from `each` (default 10).
    #[serde(default)]
    pub max_links: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedLink {
    pub title: String,
    pub message_url: String,
    pub pic_url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAt {
    /// Templates; each renders to one mobile or a comma-separated list; empty results are dropped.
    #[serde(default)]
    pub mobiles: Vec<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// `true`, `false`, or a template rendering to `true`/`false`.
    #[serde(default)]
    pub all: Option<BoolOrTemplate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BoolOrTemplate {
    Bool(bool),
    Template(String),
}

/// A message template file: one message, optional mentions, and a line saying what it is for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub text: Option<RawText>,
    #[serde(default)]
    pub link: Option<RawLink>,
    #[serde(default)]
    pub markdown: Option<RawMarkdown>,
    #[serde(default)]
    pub action_card: Option<RawActionCard>,
    #[serde(default)]
    pub feed_card: Option<RawFeedCard>,
    #[serde(default)]
    pub at: Option<RawAt>,
}

//! The five robot message types, with DingTalk's exact field names.
//!
//! DingTalk's casing is inconsistent and the traps are encoded here once, so nothing else has to
//! remember them: `link.messageUrl`/`picUrl`, but `feedCard.links[].messageURL`/`picURL`,
//! `actionCard.singleURL` and `btns[].actionURL`; `btnOrientation` and `hideAvatar` are the strings
//! `"0"`/`"1"`, not numbers or booleans.

use serde::{Deserialize, Serialize};

/// One robot message: the `msgtype`-tagged body, the optional mentions, and the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(flatten)]
    pub body: MessageBody,
    /// Mentions. DingTalk honours them on `text` and `markdown` only, and only highlights a
    /// mention whose `@id` also appears in the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<At>,
    /// DingTalk's idempotency key: a retry with the same key is not posted twice. Set from the
    /// outbox row, so a send repeated after a crash can be dropped by DingTalk.
    #[serde(rename = "msgUuid", default, skip_serializing_if = "Option::is_none")]
    pub msg_uuid: Option<String>,
}

impl Message {
    /// A `text` message with this content, mentioning no one.
    pub fn text(content: impl Into<String>) -> Message {
        Message {
            body: MessageBody::Text {
                text: Text {
                    content: content.into(),
                },
            },
            at: None,
            msg_uuid: None,
        }
    }

    /// Whom the message mentions: `atMobiles`, then `atUserIds` (not `isAtAll`).
    pub fn mentions(&self) -> impl Iterator<Item = &str> {
        self.at
            .iter()
            .flat_map(|at| at.at_mobiles.iter().chain(&at.at_user_ids))
            .map(String::as_str)
    }

    /// One line saying what the message is: its title, or the first non-empty line of its text.
    /// Used to list messages (`outbox list`) and to merge them into a storm digest.
    pub fn summary(&self) -> String {
        let first_line = |text: &str| {
            text.lines()
                .map(|l| l.trim().trim_start_matches('#').trim())
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned()
        };
        match &self.body {
            MessageBody::Text { text } => first_line(&text.content),
            MessageBody::Link { link } => first_line(&link.title),
            MessageBody::Markdown { markdown } => first_line(&markdown.title),
            MessageBody::ActionCard { action_card } => first_line(&action_card.title),
            MessageBody::FeedCard { feed_card } => feed_card
                .links
                .first()
                .map(|l| first_line(&l.title))
                .unwrap_or_default(),
        }
    }

    /// The message's main link, when it has one.
    pub fn link(&self) -> Option<&str> {
        match &self.body {
            MessageBody::Text { .. } | MessageBody::Markdown { .. } => None,
            MessageBody::Link { link } => Some(&link.message_url),
            MessageBody::ActionCard { action_card } => match &action_card.action {
                CardAction::Single { single_url, .. } => Some(single_url),
                CardAction::Buttons { btns } => btns.first().map(|b| b.action_url.as_str()),
            },
            MessageBody::FeedCard { feed_card } => {
                feed_card.links.first().map(|l| l.message_url.as_str())
            }
        }
    }
}

/// The message body, serialized as `{"msgtype": "<type>", "<type>": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype")]
pub enum MessageBody {
    #[serde(rename = "text")]
    Text { text: Text },
    #[serde(rename = "link")]
    Link { link: Link },
    #[serde(rename = "markdown")]
    Markdown { markdown: Markdown },
    #[serde(rename = "actionCard")]
    ActionCard {
        #[serde(rename = "actionCard")]
        action_card: ActionCard,
    },
    #[serde(rename = "feedCard")]
    FeedCard {
        #[serde(rename = "feedCard")]
        feed_card: FeedCard,
    },
}

impl MessageBody {
    /// DingTalk's `msgtype` value.
    pub fn msgtype(&self) -> &'static str {
        match self {
            MessageBody::Text { .. } => "text",
            MessageBody::Link { .. } => "link",
            MessageBody::Markdown { .. } => "markdown",
            MessageBody::ActionCard { .. } => "actionCard",
            MessageBody::FeedCard { .. } => "feedCard",
        }
    }

    /// The title of a link, markdown or actionCard message; text and feedCard have none.
    pub fn title(&self) -> Option<&str> {
        match self {
            MessageBody::Link { link } => Some(&link.title),
            MessageBody::Markdown { markdown } => Some(&markdown.title),
            MessageBody::ActionCard { action_card } => Some(&action_card.title),
            MessageBody::Text { .. } | MessageBody::FeedCard { .. } => None,
        }
    }

    /// The text that carries the message: `text.content`, or the `text` of a link, markdown or
    /// actionCard. A feedCard has none.
    pub fn main_text(&self) -> Option<&str> {
        match self {
            MessageBody::Text { text } => Some(&text.content),
            MessageBody::Link { link } => Some(&link.text),
            MessageBody::Markdown { markdown } => Some(&markdown.text),
            MessageBody::ActionCard { action_card } => Some(&action_card.text),
            MessageBody::FeedCard { .. } => None,
        }
    }

    /// [`MessageBody::main_text`], to change it, with its field name as DingTalk spells it
    /// (`text.content`, `markdown.text`).
    pub fn main_text_mut(&mut self) -> Option<(&'static str, &mut String)> {
        match self {
            MessageBody::Text { text } => Some(("text.content", &mut text.content)),
            MessageBody::Link { link } => Some(("link.text", &mut link.text)),
            MessageBody::Markdown { markdown } => Some(("markdown.text", &mut markdown.text)),
            MessageBody::ActionCard { action_card } => {
                Some(("actionCard.text", &mut action_card.text))
            }
            MessageBody::FeedCard { .. } => None,
        }
    }

    /// An actionCard's button titles: its one `singleTitle`, or each of `btns`. Other types have
    /// no buttons.
    pub fn buttons(&self) -> Option<Vec<&str>> {
        match self {
            MessageBody::ActionCard { action_card } => Some(match &action_card.action {
                CardAction::Single { single_title, .. } => vec![single_title.as_str()],
                CardAction::Buttons { btns } => btns.iter().map(|b| b.title.as_str()).collect(),
            }),
            _ => None,
        }
    }

    /// The texts a reader sees (and DingTalk's keyword check is assumed to scan), no URLs:
    /// title, main text and button titles; a feedCard's link titles.
    pub fn visible_texts(&self) -> Vec<&str> {
        match self {
            MessageBody::FeedCard { feed_card } => feed_card
                .links
                .iter()
                .map(|link| link.title.as_str())
                .collect(),
            _ => self
                .title()
                .into_iter()
                .chain(self.main_text())
                .chain(self.buttons().into_iter().flatten())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub text: String,
    #[serde(rename = "messageUrl")]
    pub message_url: String,
    #[serde(rename = "picUrl", default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Markdown {
    /// Shown only in the conversation list and notifications, never in the bubble.
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionCard {
    pub title: String,
    /// Markdown.
    pub text: String,
    #[serde(flatten)]
    pub action: CardAction,
    #[serde(
        rename = "btnOrientation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub btn_orientation: Option<BtnOrientation>,
    /// `"1"` hides the sender's avatar. Absent from DingTalk's newer docs, so it may be ignored.
    #[serde(
        rename = "hideAvatar",
        default,
        skip_serializing_if = "Option::is_none",
        with = "flag"
    )]
    pub hide_avatar: Option<bool>,
}

/// An actionCard has either one button for the whole card, or independent buttons. DingTalk
/// ignores `btns` when `singleTitle` and `singleURL` are set, so the two forms are exclusive here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CardAction {
    Single {
        #[serde(rename = "singleTitle")]
        single_title: String,
        #[serde(rename = "singleURL")]
        single_url: String,
    },
    Buttons {
        btns: Vec<Button>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    pub title: String,
    #[serde(rename = "actionURL")]
    pub action_url: String,
}

/// Button layout, sent as the string `"0"` (vertical) or `"1"` (horizontal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BtnOrientation {
    #[serde(rename = "0")]
    Vertical,
    #[serde(rename = "1")]
    Horizontal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedCard {
    pub links: Vec<FeedLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedLink {
    pub title: String,
    #[serde(rename = "messageURL")]
    pub message_url: String,
    #[serde(rename = "picURL")]
    pub pic_url: String,
}

/// Who a `text` or `markdown` message mentions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct At {
    #[serde(rename = "atMobiles", default, skip_serializing_if = "Vec::is_empty")]
    pub at_mobiles: Vec<String>,
    #[serde(rename = "atUserIds", default, skip_serializing_if = "Vec::is_empty")]
    pub at_user_ids: Vec<String>,
    #[serde(
        rename = "isAtAll",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_at_all: bool,
}

impl At {
    pub fn is_empty(&self) -> bool {
        self.at_mobiles.is_empty() && self.at_user_ids.is_empty() && !self.is_at_all
    }
}

/// `Option<bool>` as DingTalk's `"0"`/`"1"` strings.
mod flag {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(true) => s.serialize_str("1"),
            Some(false) => s.serialize_str("0"),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None => Ok(None),
            Some("1") => Ok(Some(true)),
            Some("0") => Ok(Some(false)),
            Some(other) => Err(D::Error::custom(format!(
                "expected \"0\" or \"1\", found {other:?}"
            ))),
        }
    }
}

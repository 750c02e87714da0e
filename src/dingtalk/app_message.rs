//! A message as DingTalk's app robots take it (issue 14): `msgKey` and `msgParam`, a
//! JSON-encoded string, for `POST /v1.0/robot/groupMessages/send` and
//! `/v1.0/robot/oToMessages/batchSend`.
//!
//! The five custom-robot message types map onto the reference's msgKey catalogue:
//!
//! | message | msgKey | msgParam |
//! |---|---|---|
//! | `text` | `sampleText` | `content` |
//! | `markdown` | `sampleMarkdown` | `title`, `text` |
//! | `link` | `sampleLink` | `title`, `text`, `messageUrl`, `picUrl` |
//! | `actionCard`, one button (`singleTitle`, or one of `btns`) | `sampleActionCard` | `title`, `text`, `singleTitle`, `singleURL` |
//! | `actionCard`, 2 buttons side by side | `sampleActionCard6` | `title`, `text`, `buttonTitle1`, `buttonUrl1`, `buttonTitle2`, `buttonUrl2` |
//! | `actionCard`, 2–5 buttons one under another | `sampleActionCard2` … `5` | `title`, `text`, `actionTitleN`, `actionURLN` |
//!
//! What the app robot API cannot express is an [`AppMessageError::Unsupported`], said so that
//! `check` can report it at the rule, never discovered at send time: a `feedCard`, more than 5
//! buttons (or more than 2 side by side), and mentions ("暂不支持 @ 功能"; an `@id` in the text
//! stays plain text). A `msgParam` over [`MSG_PARAM_MAX`] bytes is [`AppMessageError::TooLong`],
//! for the caller to cut, as with the custom robot's 20,000 bytes.
//!
//! The message is taken as [`super::validate::prepare`] left it (required fields present, URLs
//! checked, titles capped); `msgUuid` has no place in this API and is not sent.

use serde_json::{Map, Value};

use super::message::{BtnOrientation, CardAction, Message, MessageBody};

/// The most bytes DingTalk takes in `msgParam` (`invalidParameter.msgParam.tooLong`).
pub const MSG_PARAM_MAX: usize = 15_000;

/// A message in the app robot API's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    pub msg_key: &'static str,
    /// The JSON object of the message's parameters, encoded as a string (the API wants a string).
    pub msg_param: String,
}

/// Why a message cannot go to an app robot as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppMessageError {
    #[error("app robots cannot send {0}")]
    Unsupported(&'static str),
    #[error("its msgParam is {bytes} bytes; app robots take at most {MSG_PARAM_MAX}")]
    TooLong { bytes: usize },
}

/// `message` as an app robot's msgKey and msgParam.
///
/// # Errors
///
/// What the app robot API cannot express, or a msgParam over [`MSG_PARAM_MAX`] bytes.
pub fn to_app_robot(message: &Message) -> Result<AppMessage, AppMessageError> {
    if message
        .at
        .as_ref()
        .is_some_and(|at| at.is_at_all || message.mentions().next().is_some())
    {
        return Err(AppMessageError::Unsupported(
            "mentions (DingTalk: 暂不支持 @ 功能); mention people through a webhook robot, or send to their one-to-one chat",
        ));
    }
    let mut param = Map::new();
    let mut put = |key: &str, value: &str| {
        param.insert(key.to_owned(), Value::String(value.to_owned()));
    };
    let msg_key = match &message.body {
        MessageBody::Text { text } => {
            put("content", &text.content);
            "sampleText"
        }
        MessageBody::Markdown { markdown } => {
            put("title", &markdown.title);
            put("text", &markdown.text);
            "sampleMarkdown"
        }
        MessageBody::Link { link } => {
            put("title", &link.title);
            put("text", &link.text);
            put("messageUrl", &link.message_url);
            put("picUrl", link.pic_url.as_deref().unwrap_or(""));
            "sampleLink"
        }
        MessageBody::ActionCard { action_card: card } => {
            put("title", &card.title);
            put("text", &card.text);
            match &card.action {
                CardAction::Single {
                    single_title,
                    single_url,
                } => {
                    put("singleTitle", single_title);
                    put("singleURL", single_url);
                    "sampleActionCard"
                }
                CardAction::Buttons { btns } if btns.len() == 1 => {
                    put("singleTitle", &btns[0].title);
                    put("singleURL", &btns[0].action_url);
                    "sampleActionCard"
                }
                CardAction::Buttons { btns }
                    if card.btn_orientation == Some(BtnOrientation::Horizontal) =>
                {
                    if btns.len() != 2 {
                        return Err(AppMessageError::Unsupported(
                            "side-by-side buttons other than 2 (lay them out vertically, up to 5)",
                        ));
                    }
                    for (i, button) in btns.iter().enumerate() {
                        put(&format!("buttonTitle{}", i + 1), &button.title);
                        put(&format!("buttonUrl{}", i + 1), &button.action_url);
                    }
                    "sampleActionCard6"
                }
                CardAction::Buttons { btns } => {
                    for (i, button) in btns.iter().enumerate() {
                        put(&format!("actionTitle{}", i + 1), &button.title);
                        put(&format!("actionURL{}", i + 1), &button.action_url);
                    }
                    match btns.len() {
                        2 => "sampleActionCard2",
                        3 => "sampleActionCard3",
                        4 => "sampleActionCard4",
                        5 => "sampleActionCard5",
                        0 => {
                            return Err(AppMessageError::Unsupported(
                                "an action card without buttons",
                            ));
                        }
                        _ => {
                            return Err(AppMessageError::Unsupported(
                                "an action card with more than 5 buttons",
                            ));
                        }
                    }
                }
            }
        }
        MessageBody::FeedCard { .. } => {
            return Err(AppMessageError::Unsupported(
                "feedCard messages (DingTalk's app robot API has no feed card; use link or markdown)",
            ));
        }
    };
    let msg_param = Value::Object(param).to_string();
    if msg_param.len() > MSG_PARAM_MAX {
        return Err(AppMessageError::TooLong {
            bytes: msg_param.len(),
        });
    }
    Ok(AppMessage { msg_key, msg_param })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::message::{ActionCard, At, Button, FeedCard, FeedLink, Link, Markdown};
    use serde_json::json;

    fn mapped(message: &Message) -> (&'static str, Value) {
        let app = to_app_robot(message).unwrap_or_else(|e| panic!("{e}"));
        (app.msg_key, serde_json::from_str(&app.msg_param).unwrap())
    }

    fn card(action: CardAction, orientation: Option<BtnOrientation>) -> Message {
        Message {
            body: MessageBody::ActionCard {
                action_card: ActionCard {
                    title: "Deploy".into(),
                    text: "### api v2".into(),
                    action,
                    btn_orientation: orientation,
                    hide_avatar: None,
                },
            },
            at: None,
            msg_uuid: Some("kept-out".into()),
        }
    }

    fn buttons(n: usize) -> CardAction {
        CardAction::Buttons {
            btns: (1..=n)
                .map(|i| Button {
                    title: format!("b{i}"),
                    action_url: format!("https://example.com/{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn text_markdown_and_link_map_to_their_sample_keys() {
        assert_eq!(
            mapped(&Message::text("告警 disk full")),
            ("sampleText", json!({"content": "告警 disk full"}))
        );
        let markdown = Message {
            body: MessageBody::Markdown {
                markdown: Markdown {
                    title: "Disk".into(),
                    text: "### Disk\n93%".into(),
                },
            },
            at: None,
            msg_uuid: None,
        };
        assert_eq!(
            mapped(&markdown),
            (
                "sampleMarkdown",
                json!({"title": "Disk", "text": "### Disk\n93%"})
            )
        );
        let link = Message {
            body: MessageBody::Link {
                link: Link {
                    title: "PR #12".into(),
                    text: "Handle empty input".into(),
                    message_url: "https://example.com/pr/12".into(),
                    pic_url: None,
                },
            },
            at: None,
            msg_uuid: None,
        };
        assert_eq!(
            mapped(&link),
            (
                "sampleLink",
                json!({"title": "PR #12", "text": "Handle empty input", "messageUrl": "https://example.com/pr/12", "picUrl": ""})
            )
        );
    }

    #[test]
    fn msg_param_is_a_json_string_and_msg_uuid_stays_out() {
        let app = to_app_robot(&card(buttons(1), None)).unwrap();
        assert!(app.msg_param.starts_with('{'));
        assert!(!app.msg_param.contains("kept-out"));
    }

    #[test]
    fn action_cards_map_by_their_buttons() {
        let single = CardAction::Single {
            single_title: "Open".into(),
            single_url: "https://example.com/run".into(),
        };
        assert_eq!(
            mapped(&card(single, None)),
            (
                "sampleActionCard",
                json!({"title": "Deploy", "text": "### api v2", "singleTitle": "Open", "singleURL": "https://example.com/run"})
            )
        );
        // One of `btns` is one button for the card.
        assert_eq!(mapped(&card(buttons(1), None)).0, "sampleActionCard");
        assert_eq!(
            mapped(&card(buttons(2), Some(BtnOrientation::Horizontal))),
            (
                "sampleActionCard6",
                json!({"title": "Deploy", "text": "### api v2",
                       "buttonTitle1": "b1", "buttonUrl1": "https://example.com/1",
                       "buttonTitle2": "b2", "buttonUrl2": "https://example.com/2"})
            )
        );
        for n in 2..=5 {
            let (key, param) = mapped(&card(buttons(n), Some(BtnOrientation::Vertical)));
            assert_eq!(key, format!("sampleActionCard{n}"));
            assert_eq!(param[format!("actionTitle{n}")], format!("b{n}"));
            assert_eq!(
                param[format!("actionURL{n}")],
                format!("https://example.com/{n}")
            );
        }
        assert_eq!(mapped(&card(buttons(3), None)).0, "sampleActionCard3");
    }

    #[test]
    fn what_app_robots_cannot_express_is_said() {
        let unsupported = |message: &Message| match to_app_robot(message) {
            Err(AppMessageError::Unsupported(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(unsupported(&card(buttons(6), None)).contains("more than 5"));
        assert!(
            unsupported(&card(buttons(3), Some(BtnOrientation::Horizontal)))
                .contains("side-by-side")
        );
        let feed = Message {
            body: MessageBody::FeedCard {
                feed_card: FeedCard {
                    links: vec![FeedLink {
                        title: "t".into(),
                        message_url: "https://example.com".into(),
                        pic_url: "https://example.com/p.png".into(),
                    }],
                },
            },
            at: None,
            msg_uuid: None,
        };
        assert!(unsupported(&feed).starts_with("feedCard"));
        let mut mention = Message::text("@lin disk full");
        mention.at = Some(At {
            at_user_ids: vec!["lin".into()],
            ..At::default()
        });
        assert!(unsupported(&mention).starts_with("mentions"));
        let error = to_app_robot(&mention).unwrap_err().to_string();
        assert!(
            error.starts_with("app robots cannot send mentions"),
            "{error}"
        );
    }

    #[test]
    fn a_msg_param_over_15000_bytes_is_too_long() {
        let fits = Message::text("x".repeat(MSG_PARAM_MAX - r#"{"content":""}"#.len()));
        assert_eq!(to_app_robot(&fits).unwrap().msg_param.len(), MSG_PARAM_MAX);
        let over = Message::text("x".repeat(MSG_PARAM_MAX));
        assert_eq!(
            to_app_robot(&over),
            Err(AppMessageError::TooLong {
                bytes: MSG_PARAM_MAX + r#"{"content":""}"#.len()
            })
        );
    }
}

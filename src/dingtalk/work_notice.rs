//! A message as DingTalk's work notifications (工作通知) take it: the `msg` object of
//! `POST /topapi/message/corpconversation/asyncsend_v2`, whose shapes differ from the robots'.
//!
//! | message | `msg` |
//! |---|---|
//! | `text` | `{"msgtype":"text","text":{"content"}}` |
//! | `markdown` | `{"msgtype":"markdown","markdown":{"title","text"}}` |
//! | `link` with a picture | `{"msgtype":"link","link":{"messageUrl","picUrl","title","text"}}` |
//! | `link` without one | `markdown` (work notifications require `picUrl`): the title as a link, then the text |
//! | `actionCard`, one button | `{"msgtype":"action_card","action_card":{"title","markdown","single_title","single_url"}}` |
//! | `actionCard`, buttons | `…,"btn_orientation":"0"/"1","btn_json_list":[{"title","action_url"}]` |
//!
//! A `feedCard` cannot be expressed ([`AppMessageError::Unsupported`], reported by `check` at the
//! rule), nor can mentions. `msg` may weigh at most [`MSG_MAX`] bytes encoded; over it is
//! [`AppMessageError::TooLong`]. Beware: over DingTalk's per-user limits (500 a day, the same
//! content once a day) the call still answers errcode 0 and the person gets nothing.

use serde_json::{Value, json};

use super::app_message::AppMessageError;
use super::message::{BtnOrientation, CardAction, Message, MessageBody};

/// The most bytes DingTalk takes in a work notification's `msg`.
pub const MSG_MAX: usize = 2_048;

/// The most users one call may name (`userid_list`).
pub const MAX_USERS: usize = 100;

/// The most departments one call may name (`dept_id_list`).
pub const MAX_DEPARTMENTS: usize = 20;

/// `message` as a work notification's `msg`.
///
/// # Errors
///
/// What work notifications cannot express, or a `msg` over [`MSG_MAX`] bytes.
pub fn to_work_notice(message: &Message) -> Result<Value, AppMessageError> {
    if message
        .at
        .as_ref()
        .is_some_and(|at| at.is_at_all || message.mentions().next().is_some())
    {
        return Err(AppMessageError::Unsupported(
            "mentions (a work notification goes to people by name already)",
        ));
    }
    let msg = match &message.body {
        MessageBody::Text { text } => json!({"msgtype": "text", "text": {"content": text.content}}),
        MessageBody::Markdown { markdown } => json!({
            "msgtype": "markdown",
            "markdown": {"title": markdown.title, "text": markdown.text},
        }),
        MessageBody::Link { link } => match link.pic_url.as_deref().filter(|p| !p.is_empty()) {
            Some(pic_url) => json!({
                "msgtype": "link",
                "link": {
                    "messageUrl": link.message_url,
                    "picUrl": pic_url,
                    "title": link.title,
                    "text": link.text,
                },
            }),
            None => json!({
                "msgtype": "markdown",
                "markdown": {
                    "title": link.title,
                    "text": format!("#### [{}]({})\n\n{}", link.title, link.message_url, link.text),
                },
            }),
        },
        MessageBody::ActionCard { action_card: card } => {
            let mut body = json!({"title": card.title, "markdown": card.text});
            match &card.action {
                CardAction::Single {
                    single_title,
                    single_url,
                } => {
                    body["single_title"] = json!(single_title);
                    body["single_url"] = json!(single_url);
                }
                CardAction::Buttons { btns } => {
                    body["btn_orientation"] = json!(if card.btn_orientation
                        == Some(BtnOrientation::Horizontal)
                    {
                        "1"
                    } else {
                        "0"
                    });
                    body["btn_json_list"] = btns
                        .iter()
                        .map(|b| json!({"title": b.title, "action_url": b.action_url}))
                        .collect();
                }
            }
            json!({"msgtype": "action_card", "action_card": body})
        }
        MessageBody::FeedCard { .. } => {
            return Err(AppMessageError::Unsupported(
                "feedCard messages (work notifications have no feed card; use link or markdown)",
            ));
        }
    };
    let bytes = msg.to_string().len();
    if bytes > MSG_MAX {
        return Err(AppMessageError::TooLong { bytes });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::message::{ActionCard, Button, Link};

    #[test]
    fn each_type_takes_the_work_notification_shape() {
        assert_eq!(
            to_work_notice(&Message::text("disk full")).unwrap(),
            json!({"msgtype": "text", "text": {"content": "disk full"}})
        );
        let card = Message {
            body: MessageBody::ActionCard {
                action_card: ActionCard {
                    title: "Deploy".into(),
                    text: "### api".into(),
                    action: CardAction::Buttons {
                        btns: vec![Button {
                            title: "Open".into(),
                            action_url: "https://example.com".into(),
                        }],
                    },
                    btn_orientation: Some(BtnOrientation::Horizontal),
                    hide_avatar: None,
                },
            },
            at: None,
            msg_uuid: Some("not sent".into()),
        };
        assert_eq!(
            to_work_notice(&card).unwrap(),
            json!({"msgtype": "action_card", "action_card": {
                "title": "Deploy", "markdown": "### api", "btn_orientation": "1",
                "btn_json_list": [{"title": "Open", "action_url": "https://example.com"}]}})
        );
        let link = Message {
            body: MessageBody::Link {
                link: Link {
                    title: "PR".into(),
                    text: "merged".into(),
                    message_url: "https://example.com/pr".into(),
                    pic_url: None,
                },
            },
            at: None,
            msg_uuid: None,
        };
        // Without a picture, a link becomes markdown: work notifications require picUrl.
        assert_eq!(
            to_work_notice(&link).unwrap()["markdown"]["text"],
            "#### [PR](https://example.com/pr)\n\nmerged"
        );
    }

    #[test]
    fn a_msg_over_2048_bytes_is_too_long() {
        let over = Message::text("x".repeat(MSG_MAX));
        assert!(matches!(
            to_work_notice(&over),
            Err(AppMessageError::TooLong { .. })
        ));
    }
}

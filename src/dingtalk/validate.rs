//! Validation of a rendered message against DingTalk's rules, before it can be queued.
//!
//! DingTalk answers HTTP 200 to almost everything and renders some malformed messages silently
//! wrong, so [`prepare`] checks, in this order, and stops at the first failure:
//!
//! 1. **Required fields** are present and not blank: `text.content`; `link.title`, `link.text`,
//!    `link.messageUrl`; `markdown.title`, `markdown.text`; `actionCard.title`, `actionCard.text`
//!    and either `singleTitle` + `singleURL` or at least one button with `title` + `actionURL`;
//!    `feedCard.links` with at least one link, each with `title`, `messageURL` and `picURL`.
//! 2. **URLs** parse and use `http`, `https` or `dingtalk`; a picture may instead be a DingTalk
//!    media id (`@lA…`). Surrounding whitespace is trimmed, and a blank optional `link.picUrl`
//!    becomes absent.
//! 3. **Mentions** are trimmed, blank ones dropped and duplicates removed (first one kept). A
//!    message that mentions nobody ends with `at` absent. Mentions are only accepted on `text`
//!    and `markdown`: DingTalk ignores them elsewhere.
//! 4. At most [`MAX_MENTIONS`] mentions (`atMobiles` + `atUserIds`): past that, the first 50
//!    (mobiles first) are kept and the main text gets a line saying how many were not mentioned.
//!    An incident with many owners is cut, never refused.
//! 5. Every mentioned mobile or userId appears as `@<id>` in `text.content` / `markdown.text`
//!    (DingTalk only highlights those): the missing ones are appended on a last line.
//! 6. **Size**, in two steps:
//!    - first, every short human-visible field (`link.title`, `markdown.title`, `actionCard.title`,
//!      `actionCard.singleTitle`, `actionCard.btns[i].title`, `feedCard.links[i].title`) longer
//!      than [`MAX_TITLE_BYTES`] is cut on a character boundary and ends with a visible marker,
//!      `…(N more bytes cut)`, the whole at most [`MAX_TITLE_BYTES`]. This applies whether or not
//!      the message fits: a title is a one-line label, and how it reads must not depend on the
//!      length of the text beside it. An oversized title (a 100 KB alertname) is cut, never
//!      refused;
//!    - then the encoded body plus [`MSG_UUID_RESERVE`] must fit [`MAX_BODY_BYTES`]. When it does
//!      not, the main text (`text.content`, `markdown.text`, `link.text`, `actionCard.text`) is
//!      cut on a character boundary and ends with a visible marker saying how many bytes were
//!      cut; the mention line of step 5 is re-appended after the marker, so mentions survive the
//!      cut. A `feedCard` loses links from the end instead.
//!
//!    URLs are never cut (a cut URL is a broken link): what cannot be made to fit, such as a
//!    25 KB `link.messageUrl`, is refused, naming the field that is too big.
//! 7. **Keywords**: when the robot has security keywords, one of them appears in a human-visible
//!    text (titles, text, button titles, feed link titles; never URLs) of the message as cut.
//!    The robot carries its keyword itself: a message that has none of them once cut (a built-in
//!    template knows nothing of the robot) is prepared again with the robot's first keyword in
//!    front of its title as `【keyword】` (the first feed link's title; for `text`, the content),
//!    where no cut reaches. DingTalk does not document which fields it scans; the title is where
//!    its users put keywords, and one of the fields the stand-in checks.
//!
//! Invariants of an accepted message ([`Prepared::message`]):
//! - it is valid per 1–5 and 7, and [`encoded_len`] of it is at most
//!   `MAX_BODY_BYTES - MSG_UUID_RESERVE`, so the outbox can add a `msgUuid` and stay under the limit;
//! - every title and button label named in step 6 is at most [`MAX_TITLE_BYTES`] bytes: one
//!   that was longer is a prefix of the original followed by `…(N more bytes cut)`, N the bytes
//!   cut from it, and [`Prepared::title_cut_bytes`] is the sum of those N (0 when none was cut;
//!   a `feedCard` counts the links then dropped to fit too); one that was not is unchanged;
//! - its main text starts with a prefix of the original (all of it when nothing was cut), cut no
//!   more than the limit requires once the titles are capped (to within one character), and
//!   [`Prepared::cut_bytes`] says how many bytes were cut from it (0 when nothing was);
//! - URLs are never cut, only trimmed;
//! - every id in `at.atMobiles` / `at.atUserIds` appears as `@<id>` in the main text, and `at` is
//!   absent unless it mentions someone (or everyone);
//! - nothing in here panics, whatever the input.

use std::collections::HashSet;
use std::io;

use url::Url;

use super::message::{ActionCard, CardAction, FeedLink};
use super::message::{Message, MessageBody};
use super::robot::{AppRobotKind, Robot};

/// DingTalk refuses bodies over 20,000 bytes (errcode 460101).
pub const MAX_BODY_BYTES: usize = 20_000;

/// Bytes kept free for the `msgUuid` the outbox adds later: `,"msgUuid":""` is 13 bytes, which
/// leaves room for a key of up to 51 plain ASCII characters (a UUID is 36).
pub const MSG_UUID_RESERVE: usize = 64;

/// DingTalk's limit on `atMobiles` + `atUserIds` in one message.
pub const MAX_MENTIONS: usize = 50;

/// The most a title or button label may weigh, in UTF-8 bytes, cut marker included (step 6).
///
/// DingTalk documents no per-field limit, but a title is a one-line label: the conversation
/// list and the notification show its first few dozen characters, a button shows fewer. 1,000
/// bytes (over 300 Chinese characters) is far more than any of them displays, keeps a message
/// whose text is long from losing that text to its title, and leaves a marker room to say how
/// much was cut.
pub const MAX_TITLE_BYTES: usize = 1_000;

/// What [`prepare`] lets a message weigh, encoded.
const BUDGET: usize = MAX_BODY_BYTES - MSG_UUID_RESERVE;

/// Why a message cannot be sent: the offending field (`markdown.title`, `link.messageUrl`,
/// `actionCard.btns[1].actionURL`, `feedCard.links[0].picURL`, `at`, ...) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidMessage {
    /// The field at fault, with DingTalk's casing and path; `keywords` when no robot keyword
    /// appears in the message.
    pub field: String,
    /// What is wrong with it, for a human.
    pub reason: String,
}

impl InvalidMessage {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidMessage {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A message accepted for a robot, and how many bytes were cut from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The message to queue: mentions cleaned and inserted, URLs trimmed, titles capped, cut to
    /// fit.
    pub message: Message,
    /// Bytes (UTF-8) cut from the end of the main text to fit the body limit; for a `feedCard`,
    /// the encoded bytes of the links dropped. 0 when the message fitted once its titles were
    /// capped. Titles are not counted here: see [`Prepared::title_cut_bytes`].
    pub cut_bytes: usize,
    /// Bytes (UTF-8) cut from titles and button labels longer than [`MAX_TITLE_BYTES`], summed
    /// over those fields (each one's marker names its own share; for a `feedCard`, links later
    /// dropped to fit count too, as they are capped first). 0 when none was too long.
    pub title_cut_bytes: usize,
    /// The `【keyword】` put in front of the title (for `text`, the content) because the message
    /// had none of the robot's keywords: the robot's, not the rule's, so `dingrelay render` and
    /// rule tests can say which part of the message is whose.
    pub keyword_tag: Option<String>,
}

/// Checks a message for `robot` and returns it ready to queue: mentions inserted, cut to fit.
///
/// See the module documentation for the rules and their order.
///
/// # Errors
///
/// The first rule the message breaks, as the DingTalk field at fault (or `keywords`) and why.
pub fn prepare(mut message: Message, robot: &Robot) -> Result<Prepared, InvalidMessage> {
    if let Some(app) = robot.endpoint.app() {
        // App robots and work notifications cannot @ anyone (`check` says so at the rule): the
        // mentions are left out rather than appended as plain `@id` text.
        message.at = None;
        let prepared = prepare_as_is(message, robot)?;
        check_app_mapping(&prepared.message, &app.kind)?;
        return Ok(prepared);
    }
    if robot_keywords(robot).is_empty() {
        return prepare_as_is(message, robot);
    }
    match prepare_as_is(message.clone(), robot) {
        // The robot carries its keyword itself (step 7).
        Err(error) if error.field == KEYWORDS => {
            let (tagged, tag) = with_keyword(message, robot);
            let mut prepared = prepare_as_is(tagged, robot)?;
            prepared.keyword_tag = tag;
            Ok(prepared)
        }
        prepared => prepared,
    }
}

/// Whether the app robot's API can take `message` as it is: what it cannot express (a
/// feedCard, more than 5 buttons) is refused here, so that the rule's fallback goes instead, never
/// a send that DingTalk refuses.
fn check_app_mapping(message: &Message, kind: &AppRobotKind) -> Result<(), InvalidMessage> {
    let mapped = match kind {
        AppRobotKind::Group { .. } | AppRobotKind::OneToOne { .. } => {
            super::app_message::to_app_robot(message).map(drop)
        }
        AppRobotKind::WorkNotice { .. } => super::work_notice::to_work_notice(message).map(drop),
    };
    mapped.map_err(|error| {
        InvalidMessage::new(
            "msgtype",
            format!("{error} ({} cannot express it)", kind.describe()),
        )
    })
}

/// How many bytes a message for `robot` may weigh encoded as a custom robot's body (without
/// `msgUuid`), so that what its API gets fits that API's own limit: 20,000 bytes for a webhook
/// (less room for the `msgUuid`); 15,000 for an app robot's `msgParam`, less a margin for
/// parameter names longer than the webhook's (`actionTitle3` for `title`); 2,048 for a work
/// notification's `msg`, less a margin for its snake_case keys.
pub fn body_budget(robot: &Robot) -> usize {
    match robot.endpoint.app().map(|app| &app.kind) {
        None => BUDGET,
        Some(AppRobotKind::Group { .. } | AppRobotKind::OneToOne { .. }) => {
            super::app_message::MSG_PARAM_MAX - 300
        }
        Some(AppRobotKind::WorkNotice { .. }) => super::work_notice::MSG_MAX - 160,
    }
}

/// The field an [`InvalidMessage`] names when none of the robot's keywords appears.
const KEYWORDS: &str = "keywords";

/// [`prepare`], without adding a keyword.
fn prepare_as_is(mut message: Message, robot: &Robot) -> Result<Prepared, InvalidMessage> {
    check_required(&message.body)?;
    check_urls(&mut message.body)?;
    let (mentions, note) = clean_mentions(&mut message)?;
    let original_len = append_mentions(&mut message.body, &mentions, &note);
    let title_cut_bytes = cap_titles(&mut message.body);
    let budget = body_budget(robot);
    let cut_bytes = fit(&mut message, original_len, &mentions, &note, budget)?;
    check_keywords(&message, robot)?;
    Ok(Prepared {
        message,
        cut_bytes,
        title_cut_bytes,
        keyword_tag: None,
    })
}

/// The size of the request body DingTalk would get for `message`: `serde_json::to_vec(message)`'s
/// length, counted without building it.
#[must_use]
pub fn encoded_len(message: &Message) -> usize {
    json_len(message)
}

// ---------------------------------------------------------------------------------------------
// 1. Required fields

fn require(field: &str, value: &str) -> Result<(), InvalidMessage> {
    if value.trim().is_empty() {
        Err(InvalidMessage::new(
            field,
            "is required and must not be empty",
        ))
    } else {
        Ok(())
    }
}

fn check_required(body: &MessageBody) -> Result<(), InvalidMessage> {
    match body {
        MessageBody::Text { text } => require("text.content", &text.content),
        MessageBody::Link { link } => {
            require("link.title", &link.title)?;
            require("link.text", &link.text)?;
            require("link.messageUrl", &link.message_url)
        }
        MessageBody::Markdown { markdown } => {
            require("markdown.title", &markdown.title)?;
            require("markdown.text", &markdown.text)
        }
        MessageBody::ActionCard { action_card } => {
            require("actionCard.title", &action_card.title)?;
            require("actionCard.text", &action_card.text)?;
            match &action_card.action {
                CardAction::Single {
                    single_title,
                    single_url,
                } => {
                    require("actionCard.singleTitle", single_title)?;
                    require("actionCard.singleURL", single_url)
                }
                CardAction::Buttons { btns } => {
                    if btns.is_empty() {
                        return Err(InvalidMessage::new(
                            "actionCard.btns",
                            "needs at least one button (or singleTitle and singleURL instead)",
                        ));
                    }
                    for (i, button) in btns.iter().enumerate() {
                        require(&format!("actionCard.btns[{i}].title"), &button.title)?;
                        require(
                            &format!("actionCard.btns[{i}].actionURL"),
                            &button.action_url,
                        )?;
                    }
                    Ok(())
                }
            }
        }
        MessageBody::FeedCard { feed_card } => {
            if feed_card.links.is_empty() {
                return Err(InvalidMessage::new(
                    "feedCard.links",
                    "needs at least one link",
                ));
            }
            for (i, link) in feed_card.links.iter().enumerate() {
                require(&format!("feedCard.links[{i}].title"), &link.title)?;
                require(
                    &format!("feedCard.links[{i}].messageURL"),
                    &link.message_url,
                )?;
                require(&format!("feedCard.links[{i}].picURL"), &link.pic_url)?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. URLs

/// Schemes DingTalk opens: web links, and `dingtalk://` (e.g. to force the PC's external browser).
const SCHEMES: [&str; 3] = ["http", "https", "dingtalk"];

/// Checks a link field and trims it in place.
fn check_url(field: &str, value: &mut String) -> Result<(), InvalidMessage> {
    let trimmed = value.trim();
    match Url::parse(trimmed) {
        Err(e) => {
            return Err(InvalidMessage::new(
                field,
                format!("is not an absolute URL ({e})"),
            ));
        }
        Ok(url) if !SCHEMES.contains(&url.scheme()) => {
            return Err(InvalidMessage::new(
                field,
                format!(
                    "has scheme {:?}; DingTalk only opens http, https and dingtalk links",
                    url.scheme()
                ),
            ));
        }
        Ok(_) => {}
    }
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
    Ok(())
}

/// Checks a picture field (a URL or a DingTalk media id `@…`) and trims it in place.
fn check_picture(field: &str, value: &mut String) -> Result<(), InvalidMessage> {
    let trimmed = value.trim();
    let Some(media_id) = trimmed.strip_prefix('@') else {
        return check_url(field, value);
    };
    if media_id.is_empty()
        || media_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(InvalidMessage::new(
            field,
            "is neither a picture URL nor a DingTalk media id (`@` followed by the id)",
        ));
    }
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
    Ok(())
}

fn check_urls(body: &mut MessageBody) -> Result<(), InvalidMessage> {
    match body {
        MessageBody::Text { .. } | MessageBody::Markdown { .. } => Ok(()),
        MessageBody::Link { link } => {
            check_url("link.messageUrl", &mut link.message_url)?;
            if link.pic_url.as_deref().is_some_and(|p| p.trim().is_empty()) {
                link.pic_url = None;
            }
            match &mut link.pic_url {
                Some(pic) => check_picture("link.picUrl", pic),
                None => Ok(()),
            }
        }
        MessageBody::ActionCard { action_card } => match &mut action_card.action {
            CardAction::Single { single_url, .. } => check_url("actionCard.singleURL", single_url),
            CardAction::Buttons { btns } => {
                for (i, button) in btns.iter_mut().enumerate() {
                    check_url(
                        &format!("actionCard.btns[{i}].actionURL"),
                        &mut button.action_url,
                    )?;
                }
                Ok(())
            }
        },
        MessageBody::FeedCard { feed_card } => {
            for (i, link) in feed_card.links.iter_mut().enumerate() {
                check_url(
                    &format!("feedCard.links[{i}].messageURL"),
                    &mut link.message_url,
                )?;
                check_picture(&format!("feedCard.links[{i}].picURL"), &mut link.pic_url)?;
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3-5. Mentions

/// Trimmed, non-blank, first occurrence only (in linear time: the list comes from users).
fn clean_ids(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.into_iter()
        .filter_map(|id| {
            let id = id.trim();
            (!id.is_empty() && seen.insert(id.to_owned())).then(|| id.to_owned())
        })
        .collect()
}

/// Steps 3 and 4: cleans `message.at` (absent when it mentions nobody) and returns every
/// mentioned id, mobiles first, each once, and the note saying how many were left out past
/// [`MAX_MENTIONS`] (empty when none were): it goes after the mention line, like it kept past a
/// cut.
fn clean_mentions(message: &mut Message) -> Result<(Vec<String>, String), InvalidMessage> {
    let Some(mut at) = message.at.take() else {
        return Ok((Vec::new(), String::new()));
    };
    at.at_mobiles = clean_ids(at.at_mobiles);
    at.at_user_ids = clean_ids(at.at_user_ids);
    if at.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    if !matches!(
        message.body,
        MessageBody::Text { .. } | MessageBody::Markdown { .. }
    ) {
        return Err(InvalidMessage::new(
            "at",
            format!(
                "DingTalk ignores mentions on {} messages (use text or markdown)",
                message.body.msgtype()
            ),
        ));
    }
    let count = at.at_mobiles.len() + at.at_user_ids.len();
    let mut note = String::new();
    if count > MAX_MENTIONS {
        // Cut, never refuse: the first 50 (mobiles first) are mentioned, and the text says how
        // many were not, so nobody reads the message as everyone's.
        at.at_user_ids
            .truncate(MAX_MENTIONS.saturating_sub(at.at_mobiles.len()));
        at.at_mobiles.truncate(MAX_MENTIONS);
        note = unmentioned_note(count - MAX_MENTIONS);
    }
    let ids = clean_ids(
        at.at_mobiles
            .iter()
            .chain(&at.at_user_ids)
            .cloned()
            .collect(),
    );
    message.at = Some(at);
    Ok((ids, note))
}

/// The line that says how many people past [`MAX_MENTIONS`] were not mentioned.
fn unmentioned_note(left_out: usize) -> String {
    format!(
        "\n\n({left_out} more {} not mentioned: DingTalk mentions at most {MAX_MENTIONS} a message)",
        if left_out == 1 { "person" } else { "people" }
    )
}

/// Whether `@id` appears in `text` as a whole mention (`@138` is not in `@13800001111`).
fn mentioned(text: &str, id: &str) -> bool {
    let needle = format!("@{id}");
    text.match_indices(&needle).any(|(start, _)| {
        text[start + needle.len()..]
            .chars()
            .next()
            .is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '_' || next == '-'))
    })
}

/// The line to append so that every id in `mentions` appears as `@<id>` in `text`: empty when
/// none is missing, else `"\n@a @b"` (text) or `"\n\n@a @b"` (markdown, a paragraph of its own).
fn mention_line(text: &str, mentions: &[String], markdown: bool) -> String {
    let missing: Vec<String> = mentions
        .iter()
        .filter(|id| !mentioned(text, id))
        .map(|id| format!("@{id}"))
        .collect();
    if missing.is_empty() {
        return String::new();
    }
    let separator = if markdown { "\n\n" } else { "\n" };
    format!("{separator}{}", missing.join(" "))
}

/// Step 5. Returns the main text's length before anything was appended (for `feedCard`, 0).
fn append_mentions(body: &mut MessageBody, mentions: &[String], note: &str) -> usize {
    let markdown = matches!(body, MessageBody::Markdown { .. });
    let Some((_, text)) = body.main_text_mut() else {
        return 0;
    };
    let original_len = text.len();
    let line = mention_line(text, mentions, markdown);
    text.push_str(&line);
    text.push_str(note);
    original_len
}

// ---------------------------------------------------------------------------------------------
// 6. Size

/// The visible note that replaces what was cut.
fn cut_marker(cut: usize) -> String {
    format!("\n\n{}", title_marker(cut))
}

/// The visible note that ends a cut title: the main text's marker without the paragraph break,
/// since a title is one line.
fn title_marker(cut: usize) -> String {
    format!("…({cut} more bytes cut)")
}

/// Step 6, first part: cuts every title and button label over [`MAX_TITLE_BYTES`]; returns the
/// bytes cut, summed.
fn cap_titles(body: &mut MessageBody) -> usize {
    let titles: Vec<&mut String> = match body {
        MessageBody::Text { .. } => Vec::new(),
        MessageBody::Link { link } => vec![&mut link.title],
        MessageBody::Markdown { markdown } => vec![&mut markdown.title],
        MessageBody::ActionCard { action_card } => {
            let mut titles = vec![&mut action_card.title];
            match &mut action_card.action {
                CardAction::Single { single_title, .. } => titles.push(single_title),
                CardAction::Buttons { btns } => {
                    titles.extend(btns.iter_mut().map(|button| &mut button.title));
                }
            }
            titles
        }
        MessageBody::FeedCard { feed_card } => feed_card
            .links
            .iter_mut()
            .map(|link| &mut link.title)
            .collect(),
    };
    titles.into_iter().map(cap_title).sum()
}

/// Cuts `title` to at most [`MAX_TITLE_BYTES`] bytes, marker included, on a character boundary;
/// returns the bytes cut (0 when it was short enough and is left untouched).
fn cap_title(title: &mut String) -> usize {
    if title.len() <= MAX_TITLE_BYTES {
        return 0;
    }
    // The marker for the whole length is at least as long as the one finally written (it counts
    // fewer bytes), so the result stays within the cap.
    let room = MAX_TITLE_BYTES.saturating_sub(title_marker(title.len()).len());
    let keep = title.floor_char_boundary(room);
    let cut = title.len() - keep;
    title.truncate(keep);
    title.push_str(&title_marker(cut));
    cut
}

/// Step 6, second part: cuts `message` to fit; returns what was cut.
fn fit(
    message: &mut Message,
    original_len: usize,
    mentions: &[String],
    note: &str,
    budget: usize,
) -> Result<usize, InvalidMessage> {
    if encoded_len(message) <= budget {
        return Ok(0);
    }
    if matches!(message.body, MessageBody::FeedCard { .. }) {
        drop_links(message, budget)
    } else {
        cut_main_text(message, original_len, mentions, note, budget)
    }
}

/// Cuts the main text (its first `original_len` bytes, the rest being the mention line and
/// `note`, which are kept after the marker).
fn cut_main_text(
    message: &mut Message,
    original_len: usize,
    mentions: &[String],
    note: &str,
    budget: usize,
) -> Result<usize, InvalidMessage> {
    let markdown = matches!(message.body, MessageBody::Markdown { .. });
    let Some((field, text)) = message.body.main_text_mut() else {
        return Err(too_big(message, budget, "as it is"));
    };
    let original = text.get(..original_len).unwrap_or(text.as_str()).to_owned();
    let mut keep = original.len();
    // Each round keeps a strictly shorter prefix, so this ends: at the latest when nothing of
    // the original is kept.
    loop {
        let excess = encoded_len(message).saturating_sub(budget);
        if excess == 0 {
            return Ok(original.len() - keep);
        }
        if keep == 0 {
            return Err(too_big(
                message,
                budget,
                &format!("even with {field} cut to nothing"),
            ));
        }
        keep = cut_point(&original, keep, excess);
        let kept = original.get(..keep).unwrap_or("");
        let marker = cut_marker(original.len() - keep);
        let marker = if kept.is_empty() {
            marker.trim_start()
        } else {
            &marker
        };
        let cut = format!(
            "{kept}{marker}{}{note}",
            mention_line(kept, mentions, markdown)
        );
        if let Some((_, text)) = message.body.main_text_mut() {
            *text = cut;
        }
    }
}

/// Where to end the kept prefix of `s[..keep]` so that its encoding shrinks by at least
/// `excess` bytes: always a char boundary strictly below `keep` (when `keep > 0`).
fn cut_point(s: &str, keep: usize, excess: usize) -> usize {
    let Some(prefix) = s.get(..keep) else {
        return 0;
    };
    let mut removed = 0;
    let mut end = keep;
    for (i, c) in prefix.char_indices().rev() {
        end = i;
        removed += escaped_len(c);
        if removed >= excess {
            break;
        }
    }
    end
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// Drops links from the end of a feedCard until it fits; returns the encoded bytes dropped.
fn drop_links(message: &mut Message, budget: usize) -> Result<usize, InvalidMessage> {
    let before = encoded_len(message);
    let MessageBody::FeedCard { feed_card } = &mut message.body else {
        return Err(too_big(message, budget, "as it is"));
    };
    let mut links = std::mem::take(&mut feed_card.links);
    let total = links.len();
    let empty = encoded_len(message);
    // Compact JSON: `[a,b,c]` weighs `[]` plus each link plus a comma between two links.
    let mut keep = 0;
    let mut size = empty;
    for (i, link) in links.iter().enumerate() {
        size = size
            .saturating_add(json_len(link))
            .saturating_add(usize::from(i > 0));
        if size > budget {
            break;
        }
        keep = i + 1;
    }
    if keep == 0 {
        // Name the biggest field of the first link (or of `at`/`msgUuid`).
        links.truncate(1);
        if let MessageBody::FeedCard { feed_card } = &mut message.body {
            feed_card.links = links;
        }
        return Err(too_big(
            message,
            budget,
            &format!("even with only the first of its {total} links kept"),
        ));
    }
    links.truncate(keep);
    if let MessageBody::FeedCard { feed_card } = &mut message.body {
        feed_card.links = links;
    }
    // The arithmetic above is exact for serde_json's compact output; this only guards it.
    while encoded_len(message) > budget {
        match &mut message.body {
            MessageBody::FeedCard { feed_card } if feed_card.links.len() > 1 => {
                feed_card.links.pop();
            }
            _ => {
                return Err(too_big(
                    message,
                    budget,
                    &format!("even with only the first of its {total} links kept"),
                ));
            }
        }
    }
    Ok(before.saturating_sub(encoded_len(message)))
}

/// The refusal for a message that cannot fit `how` it was cut: names its biggest field.
fn too_big(message: &Message, budget: usize, how: &str) -> InvalidMessage {
    let (field, size) = largest_field(message)
        .unwrap_or_else(|| (message.body.msgtype().to_owned(), encoded_len(message)));
    let limit = if budget == BUDGET {
        format!(
            "DingTalk's {MAX_BODY_BYTES}-byte body limit ({MSG_UUID_RESERVE} bytes kept for msgUuid)"
        )
    } else {
        format!("the {budget} bytes this robot's API takes")
    };
    InvalidMessage::new(
        field,
        format!("is {size} bytes encoded: the message cannot fit {limit} {how}"),
    )
}

/// The biggest field of `message` other than the main text, and its encoded size.
fn largest_field(message: &Message) -> Option<(String, usize)> {
    let mut fields: Vec<(String, usize)> = Vec::new();
    let mut add = |field: String, size: usize| fields.push((field, size));
    match &message.body {
        MessageBody::Text { .. } | MessageBody::Markdown { .. } => {}
        MessageBody::Link { link } => {
            add("link.title".into(), json_len(&link.title));
            add("link.messageUrl".into(), json_len(&link.message_url));
            if let Some(pic) = &link.pic_url {
                add("link.picUrl".into(), json_len(pic));
            }
        }
        MessageBody::ActionCard { action_card } => action_card_fields(action_card, &mut add),
        MessageBody::FeedCard { feed_card } => {
            for (i, link) in feed_card.links.iter().enumerate() {
                feed_link_fields(i, link, &mut add);
            }
        }
    }
    if let MessageBody::Markdown { markdown } = &message.body {
        add("markdown.title".into(), json_len(&markdown.title));
    }
    if let Some(at) = &message.at {
        add("at".into(), json_len(at));
    }
    if let Some(uuid) = &message.msg_uuid {
        add("msgUuid".into(), json_len(uuid));
    }
    fields.into_iter().max_by_key(|(_, size)| *size)
}

fn action_card_fields(card: &ActionCard, add: &mut impl FnMut(String, usize)) {
    add("actionCard.title".into(), json_len(&card.title));
    match &card.action {
        CardAction::Single {
            single_title,
            single_url,
        } => {
            add("actionCard.singleTitle".into(), json_len(single_title));
            add("actionCard.singleURL".into(), json_len(single_url));
        }
        CardAction::Buttons { btns } => {
            for (i, button) in btns.iter().enumerate() {
                add(
                    format!("actionCard.btns[{i}].title"),
                    json_len(&button.title),
                );
                add(
                    format!("actionCard.btns[{i}].actionURL"),
                    json_len(&button.action_url),
                );
            }
        }
    }
}

fn feed_link_fields(i: usize, link: &FeedLink, add: &mut impl FnMut(String, usize)) {
    add(format!("feedCard.links[{i}].title"), json_len(&link.title));
    add(
        format!("feedCard.links[{i}].messageURL"),
        json_len(&link.message_url),
    );
    add(
        format!("feedCard.links[{i}].picURL"),
        json_len(&link.pic_url),
    );
}

/// Counts the bytes written to it.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The compact JSON size of `value`; `usize::MAX` (never fits) if it cannot be serialized.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Keywords

/// The robot's keywords that DingTalk checks (blank ones are not).
fn robot_keywords(robot: &Robot) -> Vec<&str> {
    robot
        .keywords
        .iter()
        .map(String::as_str)
        .filter(|keyword| !keyword.trim().is_empty())
        .collect()
}

/// `message` with `【keyword】` (the robot's first) in front of its title (the first feed link's;
/// for `text`, the content): the front of a title or text is what a cut keeps.
fn with_keyword(mut message: Message, robot: &Robot) -> (Message, Option<String>) {
    let Some(tag) = robot_keywords(robot).first().map(|k| format!("【{k}】")) else {
        return (message, None);
    };
    let field = match &mut message.body {
        MessageBody::Text { text } => &mut text.content,
        MessageBody::Link { link } => &mut link.title,
        MessageBody::Markdown { markdown } => &mut markdown.title,
        MessageBody::ActionCard { action_card } => &mut action_card.title,
        MessageBody::FeedCard { feed_card } => match feed_card.links.first_mut() {
            Some(link) => &mut link.title,
            None => return (message, None),
        },
    };
    field.insert_str(0, &tag);
    (message, Some(tag))
}

fn check_keywords(message: &Message, robot: &Robot) -> Result<(), InvalidMessage> {
    let keywords = robot_keywords(robot);
    if keywords.is_empty() {
        return Ok(());
    }
    let texts = message.body.visible_texts();
    if keywords
        .iter()
        .any(|keyword| texts.iter().any(|text| text.contains(keyword)))
    {
        return Ok(());
    }
    let hint = match message.body {
        MessageBody::Text { .. } => "put one in the content",
        MessageBody::FeedCard { .. } => "put one in a link title",
        _ => "put one in the title or text",
    };
    Err(InvalidMessage::new(
        KEYWORDS,
        format!(
            "none of robot {:?}'s keywords ({}) appears in the message; {hint}",
            robot.name,
            keywords.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::message::{At, BtnOrientation, Button, FeedCard, Link, Markdown};
    use crate::dingtalk::robot::Endpoint;

    const URL: &str = "https://example.com/x";
    const PIC: &str = "https://example.com/p.png";

    fn robot(keywords: &[&str]) -> Robot {
        Robot {
            name: "ops".into(),
            endpoint: Endpoint::DryRun { secret: None },
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn msg(body: MessageBody) -> Message {
        Message {
            body,
            at: None,
            msg_uuid: None,
        }
    }

    fn link(title: &str, text: &str, url: &str, pic: Option<&str>) -> Message {
        msg(MessageBody::Link {
            link: Link {
                title: title.into(),
                text: text.into(),
                message_url: url.into(),
                pic_url: pic.map(Into::into),
            },
        })
    }

    fn markdown(title: &str, text: &str) -> Message {
        msg(MessageBody::Markdown {
            markdown: Markdown {
                title: title.into(),
                text: text.into(),
            },
        })
    }

    fn card(title: &str, text: &str, action: CardAction) -> Message {
        msg(MessageBody::ActionCard {
            action_card: ActionCard {
                title: title.into(),
                text: text.into(),
                action,
                btn_orientation: None,
                hide_avatar: None,
            },
        })
    }

    fn single(title: &str, url: &str) -> CardAction {
        CardAction::Single {
            single_title: title.into(),
            single_url: url.into(),
        }
    }

    fn buttons(btns: &[(&str, &str)]) -> CardAction {
        CardAction::Buttons {
            btns: btns
                .iter()
                .map(|(title, url)| Button {
                    title: (*title).into(),
                    action_url: (*url).into(),
                })
                .collect(),
        }
    }

    fn feed(links: &[(&str, &str, &str)]) -> Message {
        msg(MessageBody::FeedCard {
            feed_card: FeedCard {
                links: links
                    .iter()
                    .map(|(title, url, pic)| FeedLink {
                        title: (*title).into(),
                        message_url: (*url).into(),
                        pic_url: (*pic).into(),
                    })
                    .collect(),
            },
        })
    }

    fn with_at(mut message: Message, mobiles: &[&str], users: &[&str], all: bool) -> Message {
        message.at = Some(At {
            at_mobiles: mobiles.iter().map(|m| (*m).to_owned()).collect(),
            at_user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
            is_at_all: all,
        });
        message
    }

    fn ok_for(message: Message, robot: &Robot) -> Prepared {
        prepare(message, robot).unwrap_or_else(|e| panic!("refused: {e}"))
    }

    fn ok(message: Message) -> Prepared {
        ok_for(message, &robot(&[]))
    }

    fn err_for(message: Message, robot: &Robot) -> InvalidMessage {
        match prepare(message, robot) {
            Ok(prepared) => panic!(
                "accepted ({} bytes, cut {})",
                encoded_len(&prepared.message),
                prepared.cut_bytes
            ),
            Err(e) => e,
        }
    }

    fn err(message: Message) -> InvalidMessage {
        err_for(message, &robot(&[]))
    }

    fn field(message: Message) -> String {
        err(message).field
    }

    /// The main text of a text, markdown, link or actionCard message.
    fn main_text(message: &Message) -> &str {
        message
            .body
            .main_text()
            .expect("a feedCard has no main text")
    }

    fn json(message: &Message) -> String {
        serde_json::to_string(message).unwrap_or_else(|e| panic!("serializes: {e}"))
    }

    // -- 1. required fields ---------------------------------------------------------------------

    #[test]
    fn text_requires_content() {
        assert_eq!(field(Message::text("")), "text.content");
        let e = err(Message::text(" \n\t "));
        assert_eq!(e.field, "text.content");
        assert_eq!(
            e.to_string(),
            "text.content: is required and must not be empty"
        );
    }

    #[test]
    fn link_requires_title_text_and_message_url() {
        assert_eq!(field(link(" ", "t", URL, None)), "link.title");
        assert_eq!(field(link("T", "", URL, None)), "link.text");
        assert_eq!(field(link("T", "t", "  ", None)), "link.messageUrl");
        // picUrl is optional, and a blank one is dropped.
        let prepared = ok(link("T", "t", URL, Some("  ")));
        assert!(
            matches!(&prepared.message.body, MessageBody::Link { link } if link.pic_url.is_none())
        );
    }

    #[test]
    fn markdown_requires_title_and_text() {
        assert_eq!(field(markdown("", "text")), "markdown.title");
        assert_eq!(field(markdown("Title", "\n\n")), "markdown.text");
    }

    #[test]
    fn action_card_requires_title_text_and_an_action() {
        assert_eq!(
            field(card("", "t", single("Open", URL))),
            "actionCard.title"
        );
        assert_eq!(
            field(card("T", " ", single("Open", URL))),
            "actionCard.text"
        );
        assert_eq!(
            field(card("T", "t", single("", URL))),
            "actionCard.singleTitle"
        );
        assert_eq!(
            field(card("T", "t", single("Open", ""))),
            "actionCard.singleURL"
        );
        assert_eq!(field(card("T", "t", buttons(&[]))), "actionCard.btns");
        assert_eq!(
            field(card("T", "t", buttons(&[("A", URL), (" ", URL)]))),
            "actionCard.btns[1].title"
        );
        assert_eq!(
            field(card("T", "t", buttons(&[("A", URL), ("B", "")]))),
            "actionCard.btns[1].actionURL"
        );
    }

    #[test]
    fn feed_card_requires_links_with_title_url_and_picture() {
        assert_eq!(field(feed(&[])), "feedCard.links");
        assert_eq!(field(feed(&[("", URL, PIC)])), "feedCard.links[0].title");
        assert_eq!(
            field(feed(&[("A", URL, PIC), ("B", "", PIC)])),
            "feedCard.links[1].messageURL"
        );
        assert_eq!(field(feed(&[("A", URL, " ")])), "feedCard.links[0].picURL");
    }

    #[test]
    fn missing_fields_are_reported_before_bad_urls() {
        assert_eq!(field(link("T", "", "not a url", None)), "link.text");
        assert_eq!(
            field(feed(&[("A", "ftp://x", PIC), ("", URL, PIC)])),
            "feedCard.links[1].title"
        );
    }

    // -- 2. URLs --------------------------------------------------------------------------------

    #[test]
    fn link_urls_must_be_http_https_or_dingtalk() {
        let e = err(link("T", "t", "/relative/path", None));
        assert_eq!(e.field, "link.messageUrl");
        assert!(e.reason.contains("not an absolute URL"), "{e}");
        let e = err(link("T", "t", "ftp://example.com/f", None));
        assert_eq!(e.field, "link.messageUrl");
        assert!(e.reason.contains("\"ftp\""), "{e}");
        assert_eq!(
            field(link("T", "t", "javascript:alert(1)", None)),
            "link.messageUrl"
        );
        assert_eq!(field(link("T", "t", "https://", None)), "link.messageUrl");
        assert_eq!(
            field(link("T", "t", URL, Some("file:///etc/passwd"))),
            "link.picUrl"
        );
        assert_eq!(field(link("T", "t", URL, Some("@"))), "link.picUrl");
        assert_eq!(field(link("T", "t", URL, Some("@lA DP"))), "link.picUrl");
        assert_eq!(
            field(link("T", "t", URL, Some("picture.png"))),
            "link.picUrl"
        );

        ok(link("T", "t", "http://10.0.0.1:3000/d?x=1", Some(PIC)));
        ok(link("T", "t", "HTTPS://EXAMPLE.COM/", None));
        ok(link(
            "T",
            "t",
            "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fexample.com&pc_slide=false",
            Some("@lADPDgQ9qT5rZ9bNAZDNAZA"),
        ));
    }

    #[test]
    fn urls_are_trimmed() {
        let prepared = ok(link("T", "t", " https://example.com/a\n", Some("\t@lADP ")));
        let MessageBody::Link { link } = &prepared.message.body else {
            panic!("still a link");
        };
        assert_eq!(link.message_url, "https://example.com/a");
        assert_eq!(link.pic_url.as_deref(), Some("@lADP"));
    }

    #[test]
    fn action_card_urls_are_checked() {
        assert_eq!(
            field(card("T", "t", single("Open", "mailto:ops@example.com"))),
            "actionCard.singleURL"
        );
        assert_eq!(
            field(card(
                "T",
                "t",
                buttons(&[("A", URL), ("B", "example.com/b")])
            )),
            "actionCard.btns[1].actionURL"
        );
        // A media id is a picture, not a link.
        assert_eq!(
            field(card("T", "t", buttons(&[("A", "@lADP")]))),
            "actionCard.btns[0].actionURL"
        );
        ok(card("T", "t", single("Open", URL)));
        ok(card(
            "T",
            "t",
            buttons(&[("A", URL), ("B", "dingtalk://x")]),
        ));
    }

    #[test]
    fn feed_card_urls_are_checked() {
        assert_eq!(
            field(feed(&[("A", URL, PIC), ("B", "data:text/html,hi", PIC)])),
            "feedCard.links[1].messageURL"
        );
        assert_eq!(
            field(feed(&[("A", URL, "no-scheme.png")])),
            "feedCard.links[0].picURL"
        );
        ok(feed(&[("A", URL, "@lADPDgQ9qT5rZ9bN"), ("B", URL, PIC)]));
    }

    // -- 3-5. mentions --------------------------------------------------------------------------

    #[test]
    fn text_mentions_missing_are_appended_and_present_not_repeated() {
        let message = with_at(
            Message::text("disk full @13800001111"),
            &["13800001111", "13900002222"],
            &["manager01"],
            false,
        );
        let prepared = ok(message);
        assert_eq!(
            main_text(&prepared.message),
            "disk full @13800001111\n@13900002222 @manager01"
        );
        assert_eq!(prepared.cut_bytes, 0);

        // All present: nothing added.
        let message = with_at(
            Message::text("@manager01，请处理 @13800001111"),
            &["13800001111"],
            &["manager01"],
            false,
        );
        assert_eq!(
            main_text(&ok(message).message),
            "@manager01，请处理 @13800001111"
        );
    }

    #[test]
    fn markdown_mentions_get_a_paragraph_of_their_own() {
        let message = with_at(
            markdown("Disk", "### Disk alert\n> db-3 @u_2"),
            &["13800001111"],
            &["u_2", "u_3"],
            false,
        );
        let prepared = ok(message);
        assert_eq!(
            main_text(&prepared.message),
            "### Disk alert\n> db-3 @u_2\n\n@13800001111 @u_3"
        );
    }

    #[test]
    fn a_longer_mention_does_not_hide_a_missing_one() {
        let message = with_at(
            Message::text("ping @138000011112 and @u1_x"),
            &["13800001111"],
            &["u1"],
            false,
        );
        assert_eq!(
            main_text(&ok(message).message),
            "ping @138000011112 and @u1_x\n@13800001111 @u1"
        );
    }

    #[test]
    fn mentions_are_trimmed_deduplicated_and_blank_ones_dropped() {
        let message = with_at(
            Message::text("hi"),
            &[" 138 ", "", "138", "139\n"],
            &["u1", " u1", "  "],
            false,
        );
        let prepared = ok(message);
        let at = prepared.message.at.as_ref().expect("mentions kept");
        assert_eq!(at.at_mobiles, ["138", "139"]);
        assert_eq!(at.at_user_ids, ["u1"]);
        assert!(!at.is_at_all);
        assert_eq!(main_text(&prepared.message), "hi\n@138 @139 @u1");
    }

    #[test]
    fn an_id_in_both_lists_is_appended_once() {
        let prepared = ok(with_at(Message::text("hi"), &["42"], &["42"], false));
        assert_eq!(main_text(&prepared.message), "hi\n@42");
    }

    #[test]
    fn blank_mentions_leave_no_at_on_any_type() {
        let prepared = ok(with_at(Message::text("hi"), &["", " "], &["\t"], false));
        assert_eq!(prepared.message.at, None);
        assert_eq!(main_text(&prepared.message), "hi");
        assert!(!json(&prepared.message).contains("\"at\""));

        let prepared = ok(with_at(link("T", "t", URL, None), &[" "], &[], false));
        assert_eq!(prepared.message.at, None);
        let prepared = ok(with_at(feed(&[("A", URL, PIC)]), &[], &[], false));
        assert_eq!(prepared.message.at, None);
    }

    #[test]
    fn at_all_alone_is_kept_and_adds_no_line() {
        let prepared = ok(with_at(markdown("T", "everyone look"), &[], &[""], true));
        assert_eq!(
            prepared.message.at,
            Some(At {
                at_mobiles: vec![],
                at_user_ids: vec![],
                is_at_all: true
            })
        );
        assert_eq!(main_text(&prepared.message), "everyone look");
    }

    #[test]
    fn mentions_are_refused_on_link_action_card_and_feed_card() {
        let cases = [
            (
                with_at(link("T", "t", URL, None), &["138"], &[], false),
                "link",
            ),
            (with_at(link("T", "t", URL, None), &[], &[], true), "link"),
            (
                with_at(card("T", "t", single("Open", URL)), &[], &["u1"], false),
                "actionCard",
            ),
            (
                with_at(feed(&[("A", URL, PIC)]), &["138"], &["u1"], true),
                "feedCard",
            ),
        ];
        for (message, kind) in cases {
            let e = err(message);
            assert_eq!(e.field, "at");
            assert_eq!(
                e.reason,
                format!("DingTalk ignores mentions on {kind} messages (use text or markdown)")
            );
        }
    }

    #[test]
    fn past_50_mentions_the_first_50_are_kept_and_the_rest_are_told() {
        let mobiles: Vec<String> = (0..30).map(|i| format!("1380000{i:04}")).collect();
        let users: Vec<String> = (0..23).map(|i| format!("user{i}")).collect();
        let m: Vec<&str> = mobiles.iter().map(String::as_str).collect();
        let u: Vec<&str> = users.iter().map(String::as_str).collect();

        for message in [Message::text("hi"), markdown("T", "hi")] {
            let prepared = ok(with_at(message, &m, &u, false));
            let at = prepared.message.at.as_ref().expect("mentions kept");
            assert_eq!(at.at_mobiles, mobiles, "every mobile: they come first");
            assert_eq!(at.at_user_ids, &users[..20], "then user ids up to 50");
            let text = main_text(&prepared.message);
            assert!(
                text.contains(
                    "(3 more people not mentioned: DingTalk mentions at most 50 a message)"
                ),
                "{text}"
            );
            assert!(
                text.contains("@user19") && !text.contains("@user20"),
                "{text}"
            );
        }
        // One past the limit is one person.
        let prepared = ok(with_at(Message::text("hi"), &m, &u[..21], false));
        assert!(main_text(&prepared.message).contains("(1 more person not mentioned"));

        // 50 is fine as it is, and so are 51 entries that are 50 once de-duplicated.
        let prepared = ok(with_at(Message::text("hi"), &m, &u[..20], false));
        assert_eq!(
            prepared.message.at.as_ref().map(|at| at.at_user_ids.len()),
            Some(20)
        );
        assert!(main_text(&prepared.message).ends_with("@user19"));
        let mut with_duplicate = m.clone();
        with_duplicate.push(m[0]);
        let prepared = ok(with_at(
            Message::text("hi"),
            &with_duplicate,
            &u[..20],
            false,
        ));
        assert!(!main_text(&prepared.message).contains("not mentioned"));
    }

    // -- 7. keywords ----------------------------------------------------------------------------

    #[test]
    fn keyword_in_a_title_passes() {
        let ops = robot(&["告警", "alert"]);
        ok_for(markdown("【告警】db-3", "disk full"), &ops);
        ok_for(link("Disk alert", "full", URL, None), &ops);
        ok_for(Message::text("告警: disk full"), &ops);
        ok_for(
            card("Incident", "latency", buttons(&[("Ack alert", URL)])),
            &ops,
        );
        ok_for(
            card("Incident", "latency", single("alert runbook", URL)),
            &ops,
        );
        ok_for(feed(&[("weekly", URL, PIC), ("SLO alert", URL, PIC)]), &ops);
    }

    /// The title (the content of a `text`, the first feed link's title) of a prepared message.
    fn head(prepared: &Prepared) -> &str {
        match &prepared.message.body {
            MessageBody::Text { text } => &text.content,
            MessageBody::FeedCard { feed_card } => &feed_card.links[0].title,
            body => body.title().unwrap(),
        }
    }

    #[test]
    fn a_message_without_a_keyword_gets_the_robots_first_in_front_of_its_title() {
        let ops = robot(&["告警", "alert"]);
        // Only in a URL (DingTalk does not count those), or nowhere at all.
        let prepared = ok_for(
            link(
                "Disk",
                "full",
                "https://example.com/alert?告警=1",
                Some("https://example.com/alert.png"),
            ),
            &ops,
        );
        assert_eq!(head(&prepared), "【告警】Disk");
        let prepared = ok_for(
            feed(&[
                (
                    "weekly",
                    "https://example.com/alert",
                    "https://example.com/告警.png",
                ),
                ("daily", URL, PIC),
            ]),
            &ops,
        );
        assert_eq!(head(&prepared), "【告警】weekly");
        let MessageBody::FeedCard { feed_card } = &prepared.message.body else {
            unreachable!()
        };
        assert_eq!(feed_card.links[1].title, "daily", "one keyword is enough");
        let prepared = ok_for(
            card("T", "t", buttons(&[("Open", "https://example.com/alert")])),
            &ops,
        );
        assert_eq!(head(&prepared), "【告警】T");
        assert_eq!(
            head(&ok_for(markdown("Disk", "full"), &ops)),
            "【告警】Disk"
        );
        assert_eq!(
            head(&ok_for(Message::text("disk full"), &ops)),
            "【告警】disk full"
        );
        // A message that has one is left as it is.
        assert_eq!(
            head(&ok_for(markdown("Disk", "an alert"), &ops)),
            "Disk",
            "a keyword in the text is enough"
        );
    }

    #[test]
    fn a_keyword_no_title_can_hold_fails_naming_robot_and_keywords() {
        // A keyword longer than a title may be: the capped title loses it.
        let long = "k".repeat(MAX_TITLE_BYTES + 10);
        let ops = robot(&[long.as_str()]);
        let e = err_for(markdown("Disk", "full"), &ops);
        assert_eq!(e.field, "keywords");
        assert!(
            e.reason
                .starts_with("none of robot \"ops\"'s keywords (kkk")
                && e.reason
                    .ends_with("appears in the message; put one in the title or text"),
            "{e}"
        );
    }

    #[test]
    fn keywords_are_case_sensitive_and_blank_ones_ignored() {
        assert_eq!(
            head(&ok_for(Message::text("ALERT"), &robot(&["alert"]))),
            "【alert】ALERT"
        );
        assert_eq!(
            head(&ok_for(Message::text("anything"), &robot(&[]))),
            "anything"
        );
        assert_eq!(
            head(&ok_for(
                Message::text("anything"),
                &robot(&[" ", "", "告警"])
            )),
            "【告警】anything",
            "the first keyword that is not blank"
        );
    }

    #[test]
    fn keywords_are_checked_after_cutting() {
        // Its keyword at the end of a text too long to keep it: it goes in front instead.
        let long = format!("{}alert", "x".repeat(30_000));
        let prepared = ok_for(Message::text(&long), &robot(&["alert"]));
        assert!(head(&prepared).starts_with("【alert】xxx"));
        assert!(prepared.cut_bytes > 0);
        let prepared = ok_for(Message::text(format!("alert{long}")), &robot(&["alert"]));
        assert!(head(&prepared).starts_with("alertxxx"));
    }

    // -- 6. size --------------------------------------------------------------------------------

    /// Asserts everything a cut promises, for a message whose main text was `original`.
    fn assert_cut(original: &str, prepared: &Prepared, mention_tail: &str) {
        let size = encoded_len(&prepared.message);
        assert!(size <= MAX_BODY_BYTES - MSG_UUID_RESERVE, "{size} bytes");
        // Not cut much more than needed: within one escaped character (and the marker growing).
        assert!(
            size > MAX_BODY_BYTES - MSG_UUID_RESERVE - 8,
            "over-cut: {size} bytes"
        );
        assert!(prepared.cut_bytes > 0);
        let kept = original
            .get(..original.len() - prepared.cut_bytes)
            .expect("the cut is on a char boundary");
        let marker = format!("\n\n…({} more bytes cut)", prepared.cut_bytes);
        assert_eq!(
            main_text(&prepared.message),
            format!("{kept}{marker}{mention_tail}")
        );
        // Valid JSON that DingTalk can parse back into the same message.
        let body = json(&prepared.message);
        assert_eq!(body.len(), size);
        let back: Message = serde_json::from_str(&body).expect("round-trips");
        assert_eq!(back, prepared.message);
    }

    #[test]
    fn nothing_is_cut_at_exactly_the_budget() {
        let empty = encoded_len(&Message::text(""));
        let fits = "a".repeat(MAX_BODY_BYTES - MSG_UUID_RESERVE - empty);
        let prepared = ok(Message::text(&fits));
        assert_eq!(
            encoded_len(&prepared.message),
            MAX_BODY_BYTES - MSG_UUID_RESERVE
        );
        assert_eq!(prepared.cut_bytes, 0);
        assert_eq!(main_text(&prepared.message), fits);

        let over = format!("{fits}b");
        let prepared = ok(Message::text(&over));
        assert_cut(&over, &prepared, "");
    }

    #[test]
    fn cuts_chinese_and_emoji_text_keeping_mentions() {
        // ~90 KB; the last mention is only present in the part that gets cut.
        let original = format!(
            "{} @13800001111",
            "磁盘告警 😀🚨 db-3 使用率 93%；".repeat(2_000)
        );
        assert!(original.len() > 80_000);
        let message = with_at(
            Message::text(&original),
            &["13800001111"],
            &["zhangsan"],
            false,
        );
        let prepared = ok_for(message, &robot(&["告警"]));
        assert_cut(&original, &prepared, "\n@13800001111 @zhangsan");
        assert_eq!(
            prepared.message.at.as_ref().map(|at| at.at_mobiles.clone()),
            Some(vec!["13800001111".to_owned()])
        );
    }

    #[test]
    fn cuts_markdown_full_of_json_escapes() {
        // Each of `"`, `\`, `\n`, `\t` doubles when encoded, \u{1} becomes six bytes.
        let original = "\"quoted\"\n\\path\\\t\u{1}表情😀\n".repeat(3_000);
        let message = with_at(markdown("Title", &original), &[], &["u1", "u2"], true);
        let prepared = ok(message);
        assert_cut(&original, &prepared, "\n\n@u1 @u2");
        assert!(json(&prepared.message).contains("more bytes cut)\\n\\n@u1 @u2"));
    }

    #[test]
    fn cuts_text_made_only_of_escaped_characters() {
        for unit in ["\"", "\n", "\\", "\u{1f}", "\u{1}\u{2}"] {
            // Blank text is refused, and `\n` and `\u{1f}` are whitespace.
            let original = format!("x{}", unit.repeat(25_000));
            let prepared = ok(Message::text(&original));
            assert_cut(&original, &prepared, "");
        }
    }

    #[test]
    fn cuts_link_and_action_card_text() {
        let original = "链接说明 link text. ".repeat(4_000);
        let prepared = ok(link("T", &original, URL, Some(PIC)));
        assert_cut(&original, &prepared, "");

        let mut message = card("T", &original, buttons(&[("A", URL), ("B", URL)]));
        if let MessageBody::ActionCard { action_card } = &mut message.body {
            action_card.btn_orientation = Some(BtnOrientation::Horizontal);
            action_card.hide_avatar = Some(true);
        }
        let prepared = ok(message);
        assert_cut(&original, &prepared, "");
    }

    #[test]
    fn a_mention_line_that_does_not_fit_is_refused_on_at() {
        let users: Vec<String> = (0..50).map(|i| format!("{i}{}", "u".repeat(400))).collect();
        let u: Vec<&str> = users.iter().map(String::as_str).collect();
        let e = err(with_at(Message::text("hi"), &[], &u, false));
        assert_eq!(e.field, "at");
        assert!(
            e.reason.contains("20000-byte") && e.reason.contains("text.content"),
            "{e}"
        );
    }

    #[test]
    fn a_url_too_big_alone_is_refused_naming_it() {
        let huge_url = format!("https://example.com/?q={}", "a".repeat(25_000));
        let e = err(link("T", "t", &huge_url, None));
        assert_eq!(e.field, "link.messageUrl");
        assert!(
            e.reason.contains("even with link.text cut to nothing"),
            "{e}"
        );
        assert_eq!(
            field(card("T", "t", buttons(&[("A", URL), ("B", &huge_url)]))),
            "actionCard.btns[1].actionURL"
        );
        assert_eq!(
            field(card("T", "t", single("Open", &huge_url))),
            "actionCard.singleURL"
        );
        assert_eq!(
            field(feed(&[("A", &huge_url, PIC)])),
            "feedCard.links[0].messageURL"
        );
        // Huge titles beside it are cut, and the URL is still what is refused, uncut.
        let title = "标题".repeat(20_000);
        let e = err(card(&title, "t", single(&title, &huge_url)));
        assert_eq!(e.field, "actionCard.singleURL");
        assert!(e.reason.contains("is 25025 bytes encoded"), "{e}");
    }

    // -- 6. titles ------------------------------------------------------------------------------

    /// Asserts everything a title cap promises: `capped` is a prefix of `original`, cut on a
    /// character boundary, followed by the marker, within [`MAX_TITLE_BYTES`]; returns the bytes
    /// cut.
    fn assert_capped(original: &str, capped: &str) -> usize {
        assert!(capped.len() <= MAX_TITLE_BYTES, "{} bytes", capped.len());
        let (kept, marker) = capped
            .rsplit_once('…')
            .unwrap_or_else(|| panic!("no marker in {capped:?}"));
        assert!(original.starts_with(kept), "not a prefix");
        let cut = original.len() - kept.len();
        assert_eq!(format!("…{marker}"), title_marker(cut));
        // Not cut more than the marker needs, to within one character (3 bytes) and the two
        // digits the marker may shrink by.
        assert!(capped.len() + 5 >= MAX_TITLE_BYTES, "over-cut: {capped:?}");
        cut
    }

    #[test]
    fn a_100_kb_markdown_title_is_cut_with_a_marker() {
        // An alertname of 100 KB, mixing 1- to 4-byte characters so a cut lands inside one.
        let title = format!("【告警】{}", "HighErrorRate 磁盘😀 ".repeat(4_200));
        assert!(title.len() > 100_000);
        let text = "### 告警\n> db-3 disk 93%";
        let prepared = ok_for(markdown(&title, text), &robot(&["告警"]));
        let MessageBody::Markdown { markdown } = &prepared.message.body else {
            panic!("still markdown");
        };
        let cut = assert_capped(&title, &markdown.title);
        assert_eq!(prepared.title_cut_bytes, cut);
        assert!(
            markdown
                .title
                .ends_with(&format!("…({cut} more bytes cut)"))
        );
        assert_eq!(markdown.text, text, "the text had room");
        assert_eq!(prepared.cut_bytes, 0);
        assert!(encoded_len(&prepared.message) <= MAX_BODY_BYTES - MSG_UUID_RESERVE);
    }

    #[test]
    fn a_100_kb_button_title_is_cut_with_a_marker() {
        let label = "确认 Acknowledge \"now\" ".repeat(4_500);
        assert!(label.len() > 100_000);
        let prepared = ok(card(
            "Incident",
            "latency > 2s",
            buttons(&[("Runbook", URL), (&label, URL)]),
        ));
        let MessageBody::ActionCard { action_card } = &prepared.message.body else {
            panic!("still an actionCard");
        };
        let CardAction::Buttons { btns } = &action_card.action else {
            panic!("still buttons");
        };
        assert_eq!(btns[0].title, "Runbook");
        assert_eq!(
            prepared.title_cut_bytes,
            assert_capped(&label, &btns[1].title)
        );
        assert_eq!(btns[1].action_url, URL);
        assert_eq!(action_card.title, "Incident");
        assert_eq!(prepared.cut_bytes, 0);
        assert!(encoded_len(&prepared.message) <= MAX_BODY_BYTES - MSG_UUID_RESERVE);

        // The single-button form and its card title too; the cuts add up.
        let prepared = ok(card(&label, "t", single(&label, URL)));
        let MessageBody::ActionCard { action_card } = &prepared.message.body else {
            panic!("still an actionCard");
        };
        let CardAction::Single { single_title, .. } = &action_card.action else {
            panic!("still a single button");
        };
        let cut = assert_capped(&label, &action_card.title);
        assert_eq!(assert_capped(&label, single_title), cut);
        assert_eq!(prepared.title_cut_bytes, 2 * cut);
    }

    #[test]
    fn link_and_feed_card_titles_are_cut_too() {
        let title = "t".repeat(30_000);
        let prepared = ok(link(&title, "text", URL, None));
        let MessageBody::Link { link } = &prepared.message.body else {
            panic!("still a link");
        };
        assert_eq!(prepared.title_cut_bytes, assert_capped(&title, &link.title));
        assert_eq!(link.text, "text");

        // Every link keeps its place: the titles are short enough now that all three fit.
        let prepared = ok(feed(&[
            (&title, URL, PIC),
            ("b", URL, PIC),
            (&title, URL, PIC),
        ]));
        let MessageBody::FeedCard { feed_card } = &prepared.message.body else {
            panic!("still a feedCard");
        };
        assert_eq!(feed_card.links.len(), 3);
        assert_eq!(prepared.cut_bytes, 0);
        let cut = assert_capped(&title, &feed_card.links[0].title);
        assert_eq!(feed_card.links[1].title, "b");
        assert_eq!(feed_card.links[2].title, feed_card.links[0].title);
        assert_eq!(prepared.title_cut_bytes, 2 * cut);
    }

    #[test]
    fn a_title_within_the_cap_is_untouched() {
        for title in [
            "Disk alert db-3".to_owned(),
            "a".repeat(MAX_TITLE_BYTES),
            // 999 bytes of 3-byte characters, then one more byte: exactly the cap.
            format!("{}x", "磁".repeat(333)),
        ] {
            assert!(title.len() <= MAX_TITLE_BYTES);
            let prepared = ok(markdown(&title, "text"));
            assert_eq!(prepared.message.body.title(), Some(title.as_str()));
            assert_eq!(prepared.title_cut_bytes, 0);
            let prepared = ok(card("T", "t", buttons(&[(&title, URL)])));
            assert_eq!(prepared.message.body.buttons(), Some(vec![title.as_str()]));
            assert_eq!(prepared.title_cut_bytes, 0);
        }
        // One byte over is cut.
        let over = "a".repeat(MAX_TITLE_BYTES + 1);
        let prepared = ok(markdown(&over, "text"));
        let capped = prepared.message.body.title().unwrap_or_default();
        assert_eq!(prepared.title_cut_bytes, assert_capped(&over, capped));
    }

    #[test]
    fn titles_are_capped_before_the_main_text_is_cut() {
        // Title and text both huge: the title is capped, then the text is cut only as much as
        // the capped title leaves room for.
        let title = "标题".repeat(20_000);
        let original = "正文 body ".repeat(5_000);
        let prepared = ok(markdown(&title, &original));
        let capped = prepared.message.body.title().unwrap_or_default();
        assert_eq!(prepared.title_cut_bytes, assert_capped(&title, capped));
        assert_cut(&original, &prepared, "");

        // A title that alone made the message too big: once capped, nothing else is cut.
        let title = "t".repeat(19_000);
        let prepared = ok(markdown(&title, "short"));
        assert_eq!(prepared.cut_bytes, 0);
        assert_eq!(main_text(&prepared.message), "short");
        assert!(prepared.title_cut_bytes > 18_000);
    }

    #[test]
    fn a_capped_title_is_stable() {
        let prepared = ok(markdown(&"标题".repeat(20_000), "text"));
        let again = ok(prepared.message.clone());
        assert_eq!(again.message, prepared.message);
        assert_eq!((again.cut_bytes, again.title_cut_bytes), (0, 0));
    }

    #[test]
    fn feed_card_drops_links_from_the_end() {
        let titles: Vec<String> = (0..300).map(|i| format!("报告 {i} alert")).collect();
        let links: Vec<(&str, &str, &str)> =
            titles.iter().map(|t| (t.as_str(), URL, PIC)).collect();
        let message = feed(&links);
        let before = encoded_len(&message);
        let prepared = ok_for(message.clone(), &robot(&["alert"]));
        let size = encoded_len(&prepared.message);
        assert!(size <= MAX_BODY_BYTES - MSG_UUID_RESERVE);
        assert_eq!(prepared.cut_bytes, before - size);
        let (MessageBody::FeedCard { feed_card: kept }, MessageBody::FeedCard { feed_card: all }) =
            (&prepared.message.body, &message.body)
        else {
            panic!("still feedCards");
        };
        assert!(!kept.links.is_empty() && kept.links.len() < all.links.len());
        assert_eq!(kept.links[..], all.links[..kept.links.len()]);
        // As many as fit: one more would not.
        let mut one_more = prepared.message.clone();
        if let MessageBody::FeedCard { feed_card } = &mut one_more.body {
            feed_card.links.push(all.links[kept.links.len()].clone());
        }
        assert!(encoded_len(&one_more) > MAX_BODY_BYTES - MSG_UUID_RESERVE);
    }

    #[test]
    fn feed_card_whose_first_link_does_not_fit_is_refused() {
        let huge = format!("https://example.com/?q={}", "a".repeat(20_000));
        let e = err(feed(&[(URL, &huge, PIC), ("b", URL, PIC), ("c", URL, PIC)]));
        assert_eq!(e.field, "feedCard.links[0].messageURL");
        assert!(e.reason.contains("first of its 3 links"), "{e}");
    }

    #[test]
    fn never_panics_and_always_fits() {
        // A deterministic mix of 1- to 4-byte, escaped and control characters, around the limit.
        let alphabet = [
            "a", " ", "中", "😀", "\"", "\\", "\n", "\u{1}", "é", "@u1", "\u{7f}",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..40 {
            let len = 18_000 + round * 1_500;
            let mut original = String::new();
            while original.len() < len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                original.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let message = if round % 2 == 0 {
                with_at(Message::text(&original), &["13800001111"], &["u1"], false)
            } else {
                with_at(markdown("标题", &original), &[], &["u2"], round % 3 == 0)
            };
            let prepared = ok(message);
            let size = encoded_len(&prepared.message);
            assert!(
                size <= MAX_BODY_BYTES - MSG_UUID_RESERVE,
                "round {round}: {size}"
            );
            let body = main_text(&prepared.message);
            if prepared.cut_bytes > 0 {
                assert!(body.contains(&format!("…({} more bytes cut)", prepared.cut_bytes)));
                let kept = &original[..original.len() - prepared.cut_bytes];
                assert!(body.starts_with(kept));
            } else {
                assert!(body.starts_with(&original));
            }
            for id in ["13800001111", "u1", "u2"] {
                if prepared
                    .message
                    .at
                    .as_ref()
                    .is_some_and(|at| at.at_mobiles.iter().chain(&at.at_user_ids).any(|m| m == id))
                {
                    assert!(mentioned(body, id), "round {round}: @{id} lost");
                }
            }
        }
    }

    // -- DingTalk's casing ----------------------------------------------------------------------

    #[test]
    fn serialized_json_uses_dingtalk_casing() {
        let mut message = with_at(
            Message::text("build #1842 failed @13800001111"),
            &["13800001111"],
            &["manager01"],
            true,
        );
        message.msg_uuid = Some("0b4a4c0e-7c1f-4a7e-9d55-3f0c2b1a9e10".into());
        let prepared = ok(message);
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"text","text":{"content":"build #1842 failed @13800001111\n@manager01"},"at":{"atMobiles":["13800001111"],"atUserIds":["manager01"],"isAtAll":true},"msgUuid":"0b4a4c0e-7c1f-4a7e-9d55-3f0c2b1a9e10"}"#
        );

        let prepared = ok(link(
            "Release v2.3.0",
            "Changelog",
            "https://example.com/releases/v2.3.0",
            Some("https://example.com/img/release.png"),
        ));
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"link","link":{"title":"Release v2.3.0","text":"Changelog","messageUrl":"https://example.com/releases/v2.3.0","picUrl":"https://example.com/img/release.png"}}"#
        );

        let prepared = ok(with_at(
            markdown("Disk alert", "> db-3 93%"),
            &["13800001111"],
            &[],
            false,
        ));
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"markdown","markdown":{"title":"Disk alert","text":"> db-3 93%\n\n@13800001111"},"at":{"atMobiles":["13800001111"]}}"#
        );

        let mut message = card(
            "Incident INC-77",
            "**INC-77** latency > 2s",
            buttons(&[
                ("Acknowledge", "https://example.com/inc/77/ack"),
                ("Runbook", "https://example.com/runbooks/checkout"),
            ]),
        );
        if let MessageBody::ActionCard { action_card } = &mut message.body {
            action_card.btn_orientation = Some(BtnOrientation::Horizontal);
            action_card.hide_avatar = Some(true);
        }
        let prepared = ok(message);
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"actionCard","actionCard":{"title":"Incident INC-77","text":"**INC-77** latency > 2s","btns":[{"title":"Acknowledge","actionURL":"https://example.com/inc/77/ack"},{"title":"Runbook","actionURL":"https://example.com/runbooks/checkout"}],"btnOrientation":"1","hideAvatar":"1"}}"#
        );

        let mut message = card(
            "Deploy approval",
            "Deploy **api-gw**",
            single("Open approval", "https://example.com/approve/991"),
        );
        if let MessageBody::ActionCard { action_card } = &mut message.body {
            action_card.btn_orientation = Some(BtnOrientation::Vertical);
        }
        let prepared = ok(message);
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"actionCard","actionCard":{"title":"Deploy approval","text":"Deploy **api-gw**","singleTitle":"Open approval","singleURL":"https://example.com/approve/991","btnOrientation":"0"}}"#
        );

        let prepared = ok(feed(&[
            (
                "Weekly report",
                "https://example.com/r/w32",
                "https://example.com/img/w32.png",
            ),
            (
                "SLO summary",
                "https://example.com/slo",
                "@lADPDgQ9qT5rZ9bN",
            ),
        ]));
        assert_eq!(
            json(&prepared.message),
            r#"{"msgtype":"feedCard","feedCard":{"links":[{"title":"Weekly report","messageURL":"https://example.com/r/w32","picURL":"https://example.com/img/w32.png"},{"title":"SLO summary","messageURL":"https://example.com/slo","picURL":"@lADPDgQ9qT5rZ9bN"}]}}"#
        );
    }

    #[test]
    fn encoded_len_is_the_serialized_length() {
        let message = with_at(Message::text("中文 \"q\" \n 😀"), &["1"], &[], true);
        assert_eq!(
            encoded_len(&message),
            serde_json::to_vec(&message)
                .map(|v| v.len())
                .unwrap_or_default()
        );
    }
}

//! Alert storms, merged: many queued messages of one robot become one markdown digest.
//!
//! When a robot's backlog would take longer than a threshold to drain at its rate, the worker
//! asks [`build`] to merge the leading queued rows into one message, so a storm costs one slot of
//! DingTalk's 20-a-minute instead of hundreds of minutes of delay.
//!
//! The digest is a `markdown` message:
//! - title `N messages merged`, or `<first keyword>: N messages merged` when the robot has security
//!   keywords, so DingTalk's keyword check passes whatever the rows say;
//! - text: a heading, then one list item per merged row, in queue order: `- [summary](link)` when
//!   the row's message has a link, else `- summary`, followed by ` — ` and the first line of its
//!   main text when that line says more than the summary. Summaries and lines are flattened to
//!   one line, shortened, and markdown-escaped (`\` `` ` `` `*` `_` `[` `]` get a backslash, `<`
//!   and `>` become entities; URLs get spaces, parentheses and angle brackets percent-encoded by
//!   [`crate::text::push_link_target`]), so no row can break the list or inject a link;
//! - mentions: the union of the merged rows' `atMobiles` and `atUserIds` (each id once, in row
//!   order), `isAtAll` when any row has it; at most 50 (DingTalk's limit), the first 50 kept and
//!   the text saying how many were left out. [`crate::dingtalk::prepare`] inserts them in the text.
//!
//! Invariants of a [`Digest`]:
//! - `ids` are the ids of a non-empty **prefix** of the rows given, in order: as many leading rows
//!   as fit; the rest stay queued for the next digest;
//! - the message is what [`crate::dingtalk::prepare`] returns for it, accepted **without any cut**,
//!   and its encoded body (with `msgUuid`) is at most [`MAX_BODY_BYTES`];
//! - `msgUuid` is `digest-<first id>-<count>-<16 hex digits of SHA-256 over the ids>`: the same
//!   rows give the same key, so a digest rebuilt after a crash from the same rows is dropped by
//!   DingTalk as a duplicate, and different sets of rows never share a key;
//! - building is deterministic and never panics.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};

use crate::dingtalk::message::Markdown;
use crate::dingtalk::validate::{MAX_MENTIONS, encoded_len};
use crate::dingtalk::{At, MAX_BODY_BYTES, Message, MessageBody, Robot, prepare};
use crate::outbox::StoredMessage;
use crate::text::{LINK_SCHEMES, one_line, shorten};

/// A summary is shortened to this many characters.
const SUMMARY_CHARS: usize = 200;
/// The extra line of a row is shortened to this many characters.
const DETAIL_CHARS: usize = 160;
/// A longer link is left out of the digest (the summary stays).
const MAX_LINK_BYTES: usize = 1000;

/// A digest message and the rows it merges.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The prepared markdown message, `msgUuid` set.
    pub message: Message,
    /// The ids of the merged rows: the first `ids.len()` rows given, in order.
    pub ids: Vec<i64>,
}

/// Merges as many leading `rows` as fit into one markdown message for `robot`.
///
/// Returns `None` when `rows` is empty, or when not even the first row can be merged (possible
/// only if its mentions alone nearly fill a message): the worker then sends that row as it is.
pub fn build(rows: &[StoredMessage], robot: &Robot) -> Option<Digest> {
    // Each row's list item; only as many as could possibly fit (the raw bytes of the items
    // already exceed the limit beyond that), so a huge backlog costs nothing extra.
    let mut items = Vec::new();
    let mut raw_bytes = 0usize;
    for row in rows {
        let item = item(row);
        raw_bytes = raw_bytes.saturating_add(item.len() + 1);
        if raw_bytes > MAX_BODY_BYTES && !items.is_empty() {
            break;
        }
        items.push(item);
    }
    let mut best = attempt(rows, &items, 1, robot)?;
    // The largest count that fits, by bisection; every candidate kept has been fully checked.
    let (mut low, mut high) = (1, items.len());
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        match attempt(rows, &items, mid, robot) {
            Some(digest) => {
                low = mid;
                best = digest;
            }
            None => high = mid - 1,
        }
    }
    Some(best)
}

/// The digest of the first `count` rows, if it is valid and fits without a cut.
fn attempt(
    rows: &[StoredMessage],
    items: &[String],
    count: usize,
    robot: &Robot,
) -> Option<Digest> {
    let merged = rows.get(..count)?;
    let items = items.get(..count)?;
    let noun = if count == 1 { "message" } else { "messages" };
    let headline = format!("{count} {noun} merged");
    let title = match robot.keywords.iter().find(|k| !k.trim().is_empty()) {
        Some(keyword) => format!("{keyword}: {headline}"),
        None => headline,
    };
    let (at, left_out) = mentions(merged);

    let mut text = format!("#### {}\n\n", escape_inline(&title));
    for item in items {
        text.push_str(item);
        text.push('\n');
    }
    let rest = rows.len() - count;
    if rest > 0 {
        let noun = if rest == 1 {
            "message follows"
        } else {
            "messages follow"
        };
        text.push_str(&format!(
            "\n…at least {rest} more queued {noun} in the next digest\n"
        ));
    }
    if left_out > 0 {
        text.push_str(&format!(
            "\n{left_out} more mentions left out: DingTalk allows {MAX_MENTIONS} per message\n"
        ));
    }

    let message = Message {
        body: MessageBody::Markdown {
            markdown: Markdown { title, text },
        },
        at,
        msg_uuid: None,
    };
    let prepared = prepare(message, robot).ok()?;
    if prepared.cut_bytes != 0 {
        return None;
    }
    let ids: Vec<i64> = merged.iter().map(|row| row.id).collect();
    let mut message = prepared.message;
    message.msg_uuid = Some(msg_uuid(&ids));
    (encoded_len(&message) <= MAX_BODY_BYTES).then_some(Digest { message, ids })
}

/// `digest-<first id>-<count>-<hash>`: deterministic, unique per set of ids, at most 50 ASCII
/// characters (within the 51 that validation keeps free for a `msgUuid`).
fn msg_uuid(ids: &[i64]) -> String {
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.to_string().as_bytes());
        hasher.update(b",");
    }
    let hash = hasher.finalize();
    let short = hex::encode(hash.get(..8).unwrap_or(&[]));
    let first = ids.first().copied().unwrap_or(0);
    format!("digest-{first}-{}-{short}", ids.len())
}

/// The union of the rows' mentions (each id once, in row order, at most [`MAX_MENTIONS`]) and
/// how many were left out.
fn mentions(rows: &[StoredMessage]) -> (Option<At>, usize) {
    let mut at = At::default();
    let mut seen_mobiles = HashSet::new();
    let mut seen_users = HashSet::new();
    let mut left_out = 0usize;
    for row in rows {
        let Some(row_at) = &row.message.at else {
            continue;
        };
        at.is_at_all |= row_at.is_at_all;
        let mobiles = row_at.at_mobiles.iter().map(|id| (true, id));
        let users = row_at.at_user_ids.iter().map(|id| (false, id));
        for (mobile, id) in mobiles.chain(users) {
            let id = id.trim();
            let seen = if mobile {
                &mut seen_mobiles
            } else {
                &mut seen_users
            };
            if id.is_empty() || !seen.insert(id.to_owned()) {
                continue;
            }
            if at.at_mobiles.len() + at.at_user_ids.len() >= MAX_MENTIONS {
                left_out += 1;
            } else if mobile {
                at.at_mobiles.push(id.to_owned());
            } else {
                at.at_user_ids.push(id.to_owned());
            }
        }
    }
    ((!at.is_empty()).then_some(at), left_out)
}

/// Text that renders literally inside a markdown list item, on one line.
fn escape_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    crate::text::escape_markdown_inline(&one_line(text), &mut out);
    out
}

/// One row's list item.
fn item(row: &StoredMessage) -> String {
    let message = &row.message;
    let mut summary = shorten(&one_line(&message.summary()), SUMMARY_CHARS);
    if summary.is_empty() {
        summary = format!("message {}", row.id);
    }
    let summary_md = escape_inline(&summary);
    if let Some(target) = message.link().and_then(link_target) {
        return format!("- [{summary_md}]({target})");
    }
    let mut line = format!("- {summary_md}");
    if let Some(detail) = detail(message, &summary) {
        line.push_str(" — ");
        line.push_str(&escape_inline(&shorten(&detail, DETAIL_CHARS)));
    }
    line
}

/// The first line of the message's main text that says more than `summary`.
fn detail(message: &Message, summary: &str) -> Option<String> {
    let text = match &message.body {
        MessageBody::Text { text } => &text.content,
        MessageBody::Link { link } => &link.text,
        MessageBody::Markdown { markdown } => &markdown.text,
        MessageBody::ActionCard { action_card } => &action_card.text,
        MessageBody::FeedCard { .. } => return None,
    };
    // The first line that says something the summary does not: templates often repeat the
    // title as a heading, and in a storm the titles are alike while the lines below differ.
    let summary = comparable(summary);
    text.lines()
        .map(|l| {
            l.trim()
                .trim_start_matches(['#', '>'])
                .trim_start()
                .trim_start_matches(['-', '*', '+'])
                .trim()
        })
        .map(one_line)
        .find(|line| {
            let words = comparable(line);
            !words.is_empty() && !summary.contains(&words)
        })
}

/// Letters and digits only, lower-cased: what two lines are compared on.
fn comparable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The link, made safe inside `(...)`, or `None` when it is not one to keep.
fn link_target(link: &str) -> Option<String> {
    let link = link.trim();
    if link.is_empty() || link.len() > MAX_LINK_BYTES {
        return None;
    }
    let scheme = url::Url::parse(link).ok()?.scheme().to_owned();
    if !LINK_SCHEMES.contains(&scheme.as_str()) {
        return None;
    }
    let mut out = String::with_capacity(link.len());
    crate::text::push_link_target(link, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::Endpoint;
    use crate::dingtalk::message::{CardAction, Link};

    fn robot(keywords: &[&str]) -> Robot {
        Robot {
            name: "ops".to_owned(),
            endpoint: Endpoint::DryRun { secret: None },
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn row(id: i64, message: Message) -> StoredMessage {
        StoredMessage {
            id,
            robot: "ops".to_owned(),
            rule: "alerts".to_owned(),
            source: "alertmanager".to_owned(),
            message,
            recipients: Vec::new(),
            attempts: 0,
            accepted_at: 1_700_000_000_000 + id,
            age_from: 1_700_000_000_000 + id,
            next_attempt_at: 1_700_000_000_000 + id,
            last_error: None,
        }
    }

    fn markdown(title: &str, text: &str, at: Option<At>) -> Message {
        Message {
            body: MessageBody::Markdown {
                markdown: Markdown {
                    title: title.to_owned(),
                    text: text.to_owned(),
                },
            },
            at,
            msg_uuid: None,
        }
    }

    fn link(title: &str, url: &str) -> Message {
        Message {
            body: MessageBody::Link {
                link: Link {
                    title: title.to_owned(),
                    text: "details".to_owned(),
                    message_url: url.to_owned(),
                    pic_url: None,
                },
            },
            at: None,
            msg_uuid: None,
        }
    }

    fn markdown_text(message: &Message) -> &str {
        match &message.body {
            MessageBody::Markdown { markdown } => &markdown.text,
            other => panic!("markdown expected, got {}", other.msgtype()),
        }
    }

    fn markdown_title(message: &Message) -> &str {
        match &message.body {
            MessageBody::Markdown { markdown } => &markdown.title,
            other => panic!("markdown expected, got {}", other.msgtype()),
        }
    }

    fn items(message: &Message) -> Vec<&str> {
        markdown_text(message)
            .lines()
            .filter(|l| l.starts_with("- "))
            .collect()
    }

    /// An Alertmanager-like storm: 200 firing alerts with links, some mentioning people.
    fn storm() -> Vec<StoredMessage> {
        (1..=200)
            .map(|i| {
                let at = (i % 7 == 0).then(|| At {
                    at_mobiles: vec![format!("1380000{:04}", i % 30)],
                    at_user_ids: vec!["oncall".to_owned()],
                    is_at_all: false,
                });
                let mut message = markdown(
                    &format!(
                        "告警 DiskSpace: host-{i:03}.prod.example.com /var at 9{}% \
                         (severity=critical, team=storage, region=cn-hangzhou, cluster=prod-{}, \
                         job=node-exporter, mountpoint=/var)",
                        i % 10,
                        i % 5
                    ),
                    &format!(
                        "### 🔥 DiskSpace firing since 11-24 16:02\n\n**DiskSpace** on host-{i:03}.prod.example.com  \n\
                         filesystem /var is 9{}% full, started 11-24 16:02  \n\
                         [Grafana](https://grafana.example.com/d/disk?var-host=host-{i:03}&from=now-6h)",
                        i % 10
                    ),
                    at,
                );
                if i % 3 == 0 {
                    message = link(
                        &format!("告警 DiskSpace on host-{i:03}: see the runbook [storage]"),
                        &format!(
                            "https://runbooks.example.com/storage/disk-space?host=host-{i:03}\
                             &cluster=prod-{}&from=now-6h&to=now&x=(y)",
                            i % 5
                        ),
                    );
                }
                row(1000 + i, message)
            })
            .collect()
    }

    #[test]
    fn a_storm_becomes_several_valid_digests_covering_every_id_once() {
        let robot = robot(&["告警"]);
        let rows = storm();
        let mut remaining: &[StoredMessage] = &rows;
        let mut seen = Vec::new();
        let mut digests = 0;
        while !remaining.is_empty() {
            let digest = build(remaining, &robot).expect("a digest");
            digests += 1;
            let expected: Vec<i64> = remaining[..digest.ids.len()].iter().map(|r| r.id).collect();
            assert_eq!(digest.ids, expected, "a prefix, in order");
            let body = serde_json::to_vec(&digest.message).expect("encodes");
            assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
            assert_eq!(body.len(), encoded_len(&digest.message));
            // Valid as it is: prepare accepts it again without cutting anything.
            let mut again = digest.message.clone();
            again.msg_uuid = None;
            let prepared = prepare(again, &robot).expect("valid");
            assert_eq!(prepared.cut_bytes, 0);
            assert_eq!(items(&digest.message).len(), digest.ids.len());
            assert!(markdown_title(&digest.message).starts_with("告警: "));
            // Deterministic, including the key.
            assert_eq!(build(remaining, &robot), Some(digest.clone()));
            let uuid = digest.message.msg_uuid.clone().expect("msgUuid");
            assert!(uuid.starts_with(&format!("digest-{}-{}-", digest.ids[0], digest.ids.len())));
            assert!(uuid.len() <= 51);
            eprintln!(
                "digest {digests}: {} rows, {} bytes, {uuid}",
                digest.ids.len(),
                body.len()
            );
            seen.extend(digest.ids.iter().copied());
            remaining = &remaining[digest.ids.len()..];
        }
        assert!(digests >= 3, "{digests} digests");
        let all: Vec<i64> = rows.iter().map(|r| r.id).collect();
        assert_eq!(seen, all, "every id exactly once, in order");
    }

    #[test]
    fn a_digest_is_nearly_full() {
        // Greedy: the next row would not have fitted.
        let robot = robot(&[]);
        let rows = storm();
        let digest = build(&rows, &robot).expect("a digest");
        let n = digest.ids.len();
        assert!(n < rows.len());
        let size = encoded_len(&digest.message);
        assert!(size > MAX_BODY_BYTES - 1000, "{size} bytes for {n} rows");
    }

    #[test]
    fn mentions_are_the_union() {
        let robot = robot(&[]);
        let at = |mobiles: &[&str], users: &[&str], all: bool| {
            Some(At {
                at_mobiles: mobiles.iter().map(|s| (*s).to_owned()).collect(),
                at_user_ids: users.iter().map(|s| (*s).to_owned()).collect(),
                is_at_all: all,
            })
        };
        let rows = vec![
            row(
                1,
                markdown(
                    "A",
                    "a",
                    at(&["13800000001", "13800000002"], &["alice"], false),
                ),
            ),
            row(2, Message::text("no mentions")),
            row(
                3,
                markdown(
                    "B",
                    "b",
                    at(&["13800000002", "13800000003"], &["bob", "alice"], false),
                ),
            ),
            row(4, markdown("C", "c", at(&[], &["carol"], true))),
        ];
        let digest = build(&rows, &robot).expect("a digest");
        assert_eq!(digest.ids, vec![1, 2, 3, 4]);
        let at = digest.message.at.clone().expect("mentions");
        assert_eq!(
            at.at_mobiles,
            vec!["13800000001", "13800000002", "13800000003"]
        );
        assert_eq!(at.at_user_ids, vec!["alice", "bob", "carol"]);
        assert!(at.is_at_all);
        let text = markdown_text(&digest.message);
        for id in [
            "@13800000001",
            "@13800000002",
            "@13800000003",
            "@alice",
            "@bob",
            "@carol",
        ] {
            assert!(text.contains(id), "{id} missing from {text}");
        }
    }

    #[test]
    fn at_most_fifty_mentions() {
        let robot = robot(&[]);
        let rows: Vec<StoredMessage> = (0..30)
            .map(|i| {
                let at = At {
                    at_mobiles: vec![format!("1390000{i:04}"), format!("1390001{i:04}")],
                    at_user_ids: vec![],
                    is_at_all: false,
                };
                row(i, markdown(&format!("alert {i}"), "x", Some(at)))
            })
            .collect();
        let digest = build(&rows, &robot).expect("a digest");
        assert_eq!(digest.ids.len(), 30);
        let at = digest.message.at.clone().expect("mentions");
        assert_eq!(at.at_mobiles.len(), 50);
        assert_eq!(at.at_mobiles[0], "13900000000");
        assert_eq!(at.at_mobiles[49], "13900010024");
        let text = markdown_text(&digest.message);
        assert!(text.contains("10 more mentions left out"), "{text}");
    }

    #[test]
    fn keyword_in_the_title() {
        let rows = vec![
            row(1, Message::text("disk full")),
            row(2, Message::text("cpu high")),
        ];
        let digest = build(&rows, &robot(&["  ", "告警", "alert"])).expect("a digest");
        assert_eq!(markdown_title(&digest.message), "告警: 2 messages merged");
        let digest = build(&rows, &robot(&[])).expect("a digest");
        assert_eq!(markdown_title(&digest.message), "2 messages merged");
        // The rows need not contain the keyword: the digest does.
        let digest = build(&rows, &robot(&["[prod]"])).expect("a digest");
        assert!(markdown_title(&digest.message).starts_with("[prod]: "));
    }

    #[test]
    fn summaries_cannot_break_the_list() {
        let robot = robot(&[]);
        let rows = vec![
            row(
                1,
                Message::text("a ] b [x](https://evil.example.com) *bold* _u_ `c` <b>html</b> \\"),
            ),
            row(
                2,
                markdown("title\nwith\r\nbreaks", "### title\nmore", None),
            ),
            row(3, link("see [docs]", "https://example.com/a b(c)<d>")),
            row(4, Message::text("\n\n   \n# heading only")),
            row(
                5,
                markdown("tab\tand  spaces", "first\u{2028}line\u{85}end", None),
            ),
        ];
        let digest = build(&rows, &robot).expect("a digest");
        let lines = items(&digest.message);
        assert_eq!(lines.len(), 5, "{:#?}", markdown_text(&digest.message));
        assert_eq!(
            lines[0],
            "- a \\] b \\[x\\](https://evil.example.com) \\*bold\\* \\_u\\_ \\`c\\` &lt;b&gt;html&lt;/b&gt; \\\\"
        );
        // A summary is one line (the title's first); the heading repeating it is skipped, the
        // first line that says more is added.
        assert_eq!(lines[1], "- title — more");
        assert_eq!(lines[4], "- tab and spaces — first line end");
        assert_eq!(
            lines[2],
            "- [see \\[docs\\]](https://example.com/a%20b%28c%29%3Cd%3E)"
        );
        assert_eq!(lines[3], "- heading only");
        assert_eq!(one_line("a\nb\r\n\tc \u{0} d"), "a b c d");
    }

    #[test]
    fn a_line_of_text_is_added_only_when_it_says_more() {
        let robot = robot(&[]);
        let rows = vec![
            row(
                1,
                markdown("Deploy done", "### Deploy done\nversion 1.2.3", None),
            ),
            row(
                2,
                markdown("Build failed", "pipeline #42 on main failed\nmore", None),
            ),
            row(3, Message::text("line one\nline two")),
            row(
                4,
                markdown(
                    "🔥 告警 DiskSpace: 2 firing",
                    "### 🔥 告警 DiskSpace\n\nbody",
                    None,
                ),
            ),
        ];
        let digest = build(&rows, &robot).expect("a digest");
        assert_eq!(
            items(&digest.message),
            vec![
                "- Deploy done — version 1.2.3",
                "- Build failed — pipeline #42 on main failed",
                "- line one — line two",
                "- 🔥 告警 DiskSpace: 2 firing — body",
            ]
        );
    }

    #[test]
    fn one_huge_row_still_makes_a_digest_of_one() {
        let robot = robot(&["告警"]);
        let huge = format!("告警 {}", "很长的告警内容 ".repeat(800));
        let rows = vec![
            row(7, Message::text(&huge)),
            row(8, Message::text("告警 small")),
        ];
        let digest = build(&rows, &robot).expect("a digest");
        assert!(!digest.ids.is_empty());
        assert_eq!(digest.ids[0], 7);
        assert!(encoded_len(&digest.message) <= MAX_BODY_BYTES);

        // A summary of 19,000 bytes alone.
        let rows = vec![row(9, Message::text("x".repeat(19_000)))];
        let digest = build(&rows, &robot).expect("a digest");
        assert_eq!(digest.ids, vec![9]);
        assert!(markdown_title(&digest.message).contains("1 message merged"));
        assert!(encoded_len(&digest.message) <= MAX_BODY_BYTES);
    }

    #[test]
    fn rows_made_of_maximal_messages() {
        // Rows that each nearly fill a message: every digest still fits.
        let robot = robot(&[]);
        let body = "y".repeat(19_000);
        let rows: Vec<StoredMessage> = (0..300)
            .map(|i| row(i, Message::text(format!("{i} {body}"))))
            .collect();
        let mut remaining: &[StoredMessage] = &rows;
        let mut count = 0;
        while !remaining.is_empty() {
            let digest = build(remaining, &robot).expect("a digest");
            assert!(encoded_len(&digest.message) <= MAX_BODY_BYTES);
            count += digest.ids.len();
            remaining = &remaining[digest.ids.len()..];
        }
        assert_eq!(count, 300);
    }

    #[test]
    fn other_message_kinds_and_links() {
        let robot = robot(&[]);
        let card = Message {
            body: MessageBody::ActionCard {
                action_card: crate::dingtalk::message::ActionCard {
                    title: "Approve deploy".to_owned(),
                    text: "#### Deploy api".to_owned(),
                    action: CardAction::Single {
                        single_title: "Open".to_owned(),
                        single_url: "https://example.com/approve/1".to_owned(),
                    },
                    btn_orientation: None,
                    hide_avatar: None,
                },
            },
            at: None,
            msg_uuid: None,
        };
        let long_link = format!("https://example.com/{}", "p".repeat(2000));
        let rows = vec![
            row(1, card),
            row(2, link("long", &long_link)),
            row(3, link("odd scheme", "javascript:alert(1)")),
        ];
        let digest = build(&rows, &robot).expect("a digest");
        assert_eq!(
            items(&digest.message),
            vec![
                "- [Approve deploy](https://example.com/approve/1)",
                "- long — details",
                "- odd scheme — details",
            ]
        );
    }

    #[test]
    fn keys_differ_for_different_rows() {
        let robot = robot(&[]);
        let a = vec![
            row(1, Message::text("a")),
            row(2, Message::text("b")),
            row(5, Message::text("c")),
        ];
        let b = vec![
            row(1, Message::text("a")),
            row(3, Message::text("b")),
            row(5, Message::text("c")),
        ];
        let key = |rows: &[StoredMessage]| {
            build(rows, &robot)
                .and_then(|d| d.message.msg_uuid)
                .expect("key")
        };
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a), key(&a.clone()));
        assert!(msg_uuid(&[i64::MIN, i64::MAX]).len() <= 51);
        let many: Vec<i64> = std::iter::repeat_n(-9_223_372_036_854_775_807, 99_999).collect();
        assert!(msg_uuid(&many).len() <= 51);
    }

    #[test]
    fn nothing_to_merge() {
        assert_eq!(build(&[], &robot(&[])), None);
    }
}

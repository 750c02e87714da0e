//! Checking a test's handling against what it expects: the messages (which, in which order) and,
//! for each, its assertions; every problem is one line of the report.

use super::diff::line_diff;
use super::handling::Handling;
use super::suite::{Case, Expect, Expected, Suite};
use crate::dingtalk::{Message, MessageBody};
use crate::rules::{Rendered, SkipReason, Skipped};
use crate::text::{escape_control as shown, plural};

/// Longest text shown in full when a `text_contains` fails; longer ones are cut.
const SHOWN_TEXT_LINES: usize = 40;

/// What is wrong with the handling of a test, one line each (nested lines are indented); empty
/// when the test passes.
pub(super) fn check(suite: &Suite, case: &Case, handling: &Handling) -> Vec<String> {
    let mut problems = Vec::new();
    match (&case.expect, handling) {
        (
            Expect::Refused {
                status,
                error_contains,
            },
            handling,
        ) => check_refusal(&mut problems, *status, error_contains, handling),
        (Expect::Messages(expected), Handling::Refused { status, error }) => {
            refused_instead(&mut problems, suite, expected, *status, error);
        }
        (Expect::Messages(expected), Handling::RuleFailed { error }) => {
            problems.push(format!(
                "a rule fails on this payload (the daemon would send its robots a fallback message instead): {}",
                shown(error)
            ));
            for one in expected {
                problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
            }
        }
        (Expect::Messages(expected), Handling::Ignored { reason }) => {
            ignored_instead(&mut problems, suite, expected, reason);
        }
        (Expect::Messages(expected), Handling::Routed { messages, skipped }) => {
            check_messages(&mut problems, suite, expected, messages, skipped)
        }
    }
    problems
}

/// `refused`: the daemon refuses the payload with `status`, and its reason says each of
/// `error_contains`.
fn check_refusal(
    problems: &mut Vec<String>,
    status: u16,
    error_contains: &[String],
    handling: &Handling,
) {
    match handling {
        Handling::Refused { status: got, error } if *got != status => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would answer {got}: {}",
                shown(error)
            ));
        }
        Handling::Refused { status: got, error } => {
            for part in error_contains {
                if !error.contains(part.as_str()) {
                    problems.push(format!(
                        "the refusal ({got}) does not say {:?}: {}",
                        part,
                        shown(error)
                    ));
                }
            }
        }
        Handling::RuleFailed { error } if status == 422 => {
            for part in error_contains {
                if !error.contains(part.as_str()) {
                    problems.push(format!(
                        "the rule failure does not say {:?}: {}",
                        part,
                        shown(error)
                    ));
                }
            }
        }
        Handling::RuleFailed { error } => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would answer 202 and a rule fails on it: {}",
                shown(error)
            ));
        }
        Handling::Ignored { reason } => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would answer 202 and ignore the event: {}",
                shown(reason)
            ));
        }
        Handling::Routed { messages, skipped } => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would accept the payload (202)"
            ));
            came_out(problems, messages, skipped);
        }
    }
}

/// `expect`, but the daemon refuses the payload: every expected message is missing.
fn refused_instead(
    problems: &mut Vec<String>,
    suite: &Suite,
    expected: &[Expected],
    status: u16,
    error: &str,
) {
    problems.push(format!(
        "the daemon would refuse this payload with {status}: {}",
        shown(error)
    ));
    for one in expected {
        problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
    }
}

/// `expect`, but the daemon ignores the event: fine when no message is expected.
fn ignored_instead(problems: &mut Vec<String>, suite: &Suite, expected: &[Expected], reason: &str) {
    if expected.is_empty() {
        return;
    }
    for one in expected {
        problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
    }
    problems.push(format!(
        "nothing came out: the event is ignored without evaluating any rule: {}",
        shown(reason)
    ));
}

/// ` (expected at rules.test.yaml:12:9)`, when the expectation's place is known.
fn at(suite: &Suite, expected: &Expected) -> String {
    expected
        .location
        .map(|l| format!(" (expected at {}:{l})", suite.file))
        .unwrap_or_default()
}

/// Lists what the payload produced: each message, or each rule that did not fire and why.
fn came_out(problems: &mut Vec<String>, messages: &[Rendered], skipped: &[Skipped]) {
    if messages.is_empty() {
        problems.push("nothing came out: no rule matched this event:".to_owned());
        if skipped.is_empty() {
            problems.push("  no rule is configured for this source".to_owned());
        }
        for skip in skipped {
            problems.push(format!("  {}", shown(&skip.to_string())));
        }
    } else {
        problems.push("came out:".to_owned());
        for message in messages {
            problems.push(format!("  {}", describe(message)));
        }
    }
}

/// `rule `x` -> robot `y`: markdown "title"`.
fn describe(delivery: &Rendered) -> String {
    format!(
        "rule `{}` -> robot `{}`: {} {:?}",
        delivery.rule,
        delivery.robot.name,
        delivery.message.body.msgtype(),
        delivery.message.summary()
    )
}

/// Why a rule did not fire, from the routing's skipped list.
fn why_not(skipped: &[Skipped], rule: &str) -> String {
    match skipped.iter().find(|s| s.rule == rule).map(|s| &s.reason) {
        Some(SkipReason::ConditionFalse { when }) => {
            format!(
                "it did not fire: condition is false: {}",
                shown(when.trim())
            )
        }
        Some(SkipReason::StoppedBy { rule }) => {
            format!("it was not evaluated: rule `{rule}` matched first and has `stop: true`")
        }
        None => "it did not fire".to_owned(),
    }
}

/// The expected messages against those the rules produced: which is missing, which is
/// unexpected, whether they came out in another order; then each one's assertions.
fn check_messages(
    problems: &mut Vec<String>,
    suite: &Suite,
    expected: &[Expected],
    messages: &[Rendered],
    skipped: &[Skipped],
) {
    let matched = Matched::of(expected, messages);
    for one in &matched.missing {
        problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
        if !messages.is_empty() {
            problems.push(format!(
                "  {}",
                why_missing(one, expected, messages, skipped)
            ));
        }
    }
    for delivery in &matched.unexpected {
        problems.push(format!("unexpected: {}", describe(delivery)));
    }
    if !matched.missing.is_empty() && messages.is_empty() {
        came_out(problems, messages, skipped);
    }
    if matched.missing.is_empty() && matched.unexpected.is_empty() && matched.out_of_order() {
        problems.push("the messages came out in another order; expected:".to_owned());
        for one in expected {
            problems.push(format!("  {}", one.target()));
        }
        problems.push("came out:".to_owned());
        for message in messages {
            problems.push(format!("  {}", describe(message)));
        }
    }

    for (one, i) in matched.pairs {
        let mut found = Vec::new();
        check_message(&mut found, one, &messages[i]);
        if !found.is_empty() {
            problems.push(format!("{}{}:", one.target(), at(suite, one)));
            problems.extend(found.into_iter().map(|line| format!("  {line}")));
        }
    }
}

/// The expected messages paired with the messages produced: each takes the first one not yet
/// taken of its rule and robot.
struct Matched<'a> {
    /// An expected message and the index of the delivery it is, in the expected order.
    pairs: Vec<(&'a Expected, usize)>,
    missing: Vec<&'a Expected>,
    unexpected: Vec<&'a Rendered>,
}

impl<'a> Matched<'a> {
    fn of(expected: &'a [Expected], messages: &'a [Rendered]) -> Matched<'a> {
        let mut used = vec![false; messages.len()];
        let mut pairs = Vec::new();
        let mut missing = Vec::new();
        for one in expected {
            let found = (0..messages.len()).find(|&i| {
                !used[i] && messages[i].rule == one.rule && messages[i].robot.name == one.robot
            });
            match found {
                Some(i) => {
                    used[i] = true;
                    pairs.push((one, i));
                }
                None => missing.push(one),
            }
        }
        let unexpected = messages
            .iter()
            .zip(&used)
            .filter(|(_, used)| !**used)
            .map(|(d, _)| d)
            .collect();
        Matched {
            pairs,
            missing,
            unexpected,
        }
    }

    /// Whether the messages came out in another order than expected.
    fn out_of_order(&self) -> bool {
        self.pairs.windows(2).any(|w| w[0].1 > w[1].1)
    }
}

/// Why an expected message is missing when others came out: its rule sent fewer messages to the
/// robot than expected, or did not fire.
fn why_missing(
    one: &Expected,
    expected: &[Expected],
    messages: &[Rendered],
    skipped: &[Skipped],
) -> String {
    let sent = messages
        .iter()
        .filter(|d| d.rule == one.rule && d.robot.name == one.robot)
        .count();
    let wanted = expected
        .iter()
        .filter(|e| e.rule == one.rule && e.robot == one.robot)
        .count();
    if sent > 0 {
        format!(
            "the rule sent {sent} message{} to this robot, {wanted} are expected",
            plural(sent)
        )
    } else {
        why_not(skipped, &one.rule)
    }
}

/// Checks one message against what is expected of it, one assertion kind after the other.
///
/// A robot's keyword put in front of a message that had none (`【keyword】`) is the robot's, not
/// the rule's: an exact `title` or `text` may leave it out (or name it).
fn check_message(problems: &mut Vec<String>, expected: &Expected, delivery: &Rendered) {
    let message = &delivery.message;
    let tag = delivery.keyword_tag.as_deref();
    check_msgtype(problems, expected, message);
    check_title(problems, expected, message, tag);
    let text = main_text(message);
    check_text(problems, expected, &text, tag);
    check_text_parts(problems, expected, &text);
    check_mentions(problems, expected, message);
    check_to(problems, expected, &delivery.recipients);
    check_at_all(problems, expected, message);
    check_buttons(problems, expected, message);
    check_links(problems, expected, message);
    check_url(problems, expected, message);
}

/// `msgtype`.
fn check_msgtype(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let msgtype = message.body.msgtype();
    if let Some(want) = expected.msgtype
        && want != msgtype
    {
        problems.push(format!("msgtype: expected {want}, got {msgtype}"));
    }
}

/// `title` (but for surrounding white space) and `title_contains`.
fn check_title(
    problems: &mut Vec<String>,
    expected: &Expected,
    message: &Message,
    tag: Option<&str>,
) {
    if expected.title.is_none() && expected.title_contains.is_empty() {
        return;
    }
    let Some(title) = message.body.title() else {
        problems.push(format!(
            "title: {} has no title",
            a_message(message.body.msgtype())
        ));
        return;
    };
    if let Some(want) = &expected.title
        && want.trim() != title.trim()
        && Some(want.trim()) != untagged(title, tag).map(str::trim)
    {
        problems.push(format!("title: expected {want:?}, got {title:?}"));
    }
    for part in &expected.title_contains {
        if !title.contains(part.as_str()) {
            problems.push(format!("title does not contain {part:?}: {title:?}"));
        }
    }
}

/// `field` without the robot's keyword `tag` in front, when it was put there.
fn untagged<'a>(field: &'a str, tag: Option<&str>) -> Option<&'a str> {
    field.strip_prefix(tag?)
}

/// `text`, but for trailing line breaks: a difference is shown as a line diff.
fn check_text(problems: &mut Vec<String>, expected: &Expected, text: &str, tag: Option<&str>) {
    let Some(want) = &expected.text else {
        return;
    };
    let (want, got) = (trim_breaks(want), trim_breaks(text));
    if want != got && Some(want) != untagged(text, tag).map(trim_breaks) {
        problems.push("text differs (- expected, + actual):".to_owned());
        problems.extend(line_diff(want, got).into_iter().map(|l| format!("  {l}")));
    }
}

/// `text_contains` and `text_not_contains`. When one fails and no `text` diff shows the text,
/// the text is shown (its first [`SHOWN_TEXT_LINES`] lines).
fn check_text_parts(problems: &mut Vec<String>, expected: &Expected, text: &str) {
    let before = problems.len();
    for part in &expected.text_contains {
        if !text.contains(part.as_str()) {
            problems.push(format!("text does not contain {part:?}"));
        }
    }
    for part in &expected.text_not_contains {
        if text.contains(part.as_str()) {
            problems.push(format!("text contains {part:?}, which it must not"));
        }
    }
    if problems.len() == before || expected.text.is_some() {
        return;
    }
    problems.push("the text is:".to_owned());
    let lines: Vec<&str> = trim_breaks(text).split('\n').collect();
    for line in lines.iter().take(SHOWN_TEXT_LINES) {
        problems.push(format!("  | {}", shown(line)));
    }
    if lines.len() > SHOWN_TEXT_LINES {
        problems.push(format!(
            "  | ... ({} more lines)",
            lines.len() - SHOWN_TEXT_LINES
        ));
    }
}

/// `mentions`: `atMobiles` and `atUserIds` together, in any order.
fn check_mentions(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let Some(want) = &expected.mentions else {
        return;
    };
    let got: Vec<&str> = message.mentions().collect();
    let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
    let mut got_sorted = got.clone();
    want_sorted.sort();
    got_sorted.sort();
    if want_sorted != got_sorted {
        problems.push(format!(
            "mentions (atMobiles and atUserIds): expected {}, got {}",
            list(want),
            list(&got)
        ));
    }
}

/// `to`: the people a robot of an app sends the message to, in order.
fn check_to(problems: &mut Vec<String>, expected: &Expected, recipients: &[String]) {
    let Some(want) = &expected.to else {
        return;
    };
    if want != recipients {
        problems.push(format!(
            "to (the people it goes to): expected {}, got {}",
            list(want),
            list(recipients)
        ));
    }
}

/// `at_all`: `isAtAll`, false when absent.
fn check_at_all(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let Some(want) = expected.at_all else {
        return;
    };
    let got = message.at.as_ref().is_some_and(|at| at.is_at_all);
    if want != got {
        problems.push(format!("at_all (isAtAll): expected {want}, got {got}"));
    }
}

/// `buttons`: an actionCard's button titles, in order.
fn check_buttons(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let Some(want) = &expected.buttons else {
        return;
    };
    match message.body.buttons() {
        None => problems.push(format!(
            "buttons: {} has no buttons (only actionCard has)",
            a_message(message.body.msgtype())
        )),
        Some(got) if got != *want => problems.push(format!(
            "buttons: expected {}, got {}",
            list(want),
            list(&got)
        )),
        Some(_) => {}
    }
}

/// `links`: how many links a feedCard has.
fn check_links(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let Some(want) = expected.links else {
        return;
    };
    match &message.body {
        MessageBody::FeedCard { feed_card } if feed_card.links.len() != want => {
            problems.push(format!(
                "links: expected {want}, got {}",
                feed_card.links.len()
            ));
        }
        MessageBody::FeedCard { .. } => {}
        _ => problems.push(format!(
            "links: {} has no links (only feedCard has)",
            a_message(message.body.msgtype())
        )),
    }
}

/// `url`: the message's main link, but for surrounding white space.
fn check_url(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let Some(want) = &expected.url else {
        return;
    };
    match message.link() {
        None => problems.push(format!(
            "url: {} has no link",
            a_message(message.body.msgtype())
        )),
        Some(got) if got.trim() != want.trim() => {
            problems.push(format!("url: expected {want:?}, got {got:?}"));
        }
        Some(_) => {}
    }
}

/// The text a test's `text` assertions look at: the main text, or for a feedCard its link
/// titles, one per line.
fn main_text(message: &Message) -> String {
    match message.body.main_text() {
        Some(text) => text.to_owned(),
        // A feedCard's visible texts are its link titles.
        None => message.body.visible_texts().join("\n"),
    }
}

/// `["a", "b"]`.
fn list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|item| format!("{:?}", item.as_ref()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// `a markdown message`, `an actionCard message`.
fn a_message(msgtype: &str) -> String {
    let article = if msgtype.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {msgtype} message")
}

/// The text without trailing line breaks: YAML block scalars and templates disagree on them,
/// and DingTalk does not show them.
fn trim_breaks(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

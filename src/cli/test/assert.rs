//! Checking a test's outcome against what it expects: the messages (which, in which order) and,
//! for each, its assertions; every problem is one line of the report.

use super::diff::line_diff;
use super::outcome::Outcome;
use super::suite::{Case, Expect, Expected, Suite};
use crate::dingtalk::{Message, MessageBody};
use crate::rules::{Rendered, SkipReason, Skipped};
use crate::text::{escape_control as shown, plural};

/// Longest text shown in full when a `text_contains` fails; longer ones are cut.
const SHOWN_TEXT_LINES: usize = 40;

/// What is wrong with the outcome of a test, one line each (nested lines are indented); empty
/// when the test passes.
pub(super) fn check(suite: &Suite, case: &Case, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    match (&case.expect, outcome) {
        (
            Expect::Refused {
                status,
                error_contains,
            },
            Outcome::Refused { status: got, error },
        ) => {
            if status != got {
                problems.push(format!(
                    "expected a refusal with {status}, but the daemon would answer {got}: {}",
                    shown(error)
                ));
            } else {
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
        }
        (Expect::Refused { status, .. }, Outcome::Ignored { reason }) => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would answer 202 and ignore the event: {}",
                shown(reason)
            ));
        }
        (
            Expect::Refused { status, .. },
            Outcome::Routed {
                deliveries,
                skipped,
            },
        ) => {
            problems.push(format!(
                "expected a refusal with {status}, but the daemon would accept the payload (202)"
            ));
            came_out(&mut problems, deliveries, skipped);
        }
        (Expect::Messages(expected), Outcome::Refused { status, error }) => {
            problems.push(format!(
                "the daemon would refuse this payload with {status}: {}",
                shown(error)
            ));
            for one in expected {
                problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
            }
        }
        (Expect::Messages(expected), Outcome::Ignored { reason }) => {
            if !expected.is_empty() {
                for one in expected {
                    problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
                }
                problems.push(format!(
                    "nothing came out: the event is ignored without evaluating any rule: {}",
                    shown(reason)
                ));
            }
        }
        (
            Expect::Messages(expected),
            Outcome::Routed {
                deliveries,
                skipped,
            },
        ) => check_messages(&mut problems, suite, expected, deliveries, skipped),
    }
    problems
}

/// ` (expected at rules.test.yaml:12:9)`, when the expectation's place is known.
fn at(suite: &Suite, expected: &Expected) -> String {
    expected
        .location
        .map(|l| format!(" (expected at {}:{l})", suite.file))
        .unwrap_or_default()
}

/// Lists what the payload produced: each message, or each rule that did not fire and why.
fn came_out(problems: &mut Vec<String>, deliveries: &[Rendered], skipped: &[Skipped]) {
    if deliveries.is_empty() {
        problems.push("nothing came out: no rule matched this event:".to_owned());
        if skipped.is_empty() {
            problems.push("  no rule is configured for this source".to_owned());
        }
        for skip in skipped {
            problems.push(format!("  {}", shown(&skip.to_string())));
        }
    } else {
        problems.push("came out:".to_owned());
        for delivery in deliveries {
            problems.push(format!("  {}", describe(delivery)));
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

fn check_messages(
    problems: &mut Vec<String>,
    suite: &Suite,
    expected: &[Expected],
    deliveries: &[Rendered],
    skipped: &[Skipped],
) {
    let mut used = vec![false; deliveries.len()];
    let mut pairs: Vec<(&Expected, usize)> = Vec::new();
    let mut missing: Vec<&Expected> = Vec::new();
    for one in expected {
        let found = (0..deliveries.len()).find(|&i| {
            !used[i] && deliveries[i].rule == one.rule && deliveries[i].robot.name == one.robot
        });
        match found {
            Some(i) => {
                used[i] = true;
                pairs.push((one, i));
            }
            None => missing.push(one),
        }
    }
    let unexpected: Vec<&Rendered> = deliveries
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(d, _)| d)
        .collect();

    for one in &missing {
        if deliveries.is_empty() {
            problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
        } else {
            problems.push(format!("missing: {}{}", one.target(), at(suite, one)));
            let sent = deliveries
                .iter()
                .filter(|d| d.rule == one.rule && d.robot.name == one.robot)
                .count();
            let wanted = expected
                .iter()
                .filter(|e| e.rule == one.rule && e.robot == one.robot)
                .count();
            if sent > 0 {
                problems.push(format!(
                    "  the rule sent {sent} message{} to this robot, {wanted} are expected",
                    plural(sent)
                ));
            } else {
                problems.push(format!("  {}", why_not(skipped, &one.rule)));
            }
        }
    }
    for delivery in &unexpected {
        problems.push(format!("unexpected: {}", describe(delivery)));
    }
    if !missing.is_empty() && deliveries.is_empty() {
        came_out(problems, deliveries, skipped);
    }
    if missing.is_empty() && unexpected.is_empty() && pairs.windows(2).any(|w| w[0].1 > w[1].1) {
        problems.push("the messages came out in another order; expected:".to_owned());
        for one in expected {
            problems.push(format!("  {}", one.target()));
        }
        problems.push("came out:".to_owned());
        for delivery in deliveries {
            problems.push(format!("  {}", describe(delivery)));
        }
    }

    for (one, i) in pairs {
        let mut found = Vec::new();
        check_message(&mut found, one, &deliveries[i].message);
        if !found.is_empty() {
            problems.push(format!("{}{}:", one.target(), at(suite, one)));
            problems.extend(found.into_iter().map(|line| format!("  {line}")));
        }
    }
}

/// Checks one message against what is expected of it.
fn check_message(problems: &mut Vec<String>, expected: &Expected, message: &Message) {
    let msgtype = message.body.msgtype();
    if let Some(want) = expected.msgtype
        && want != msgtype
    {
        problems.push(format!("msgtype: expected {want}, got {msgtype}"));
    }

    if expected.title.is_some() || !expected.title_contains.is_empty() {
        match message.body.title() {
            None => problems.push(format!("title: {} has no title", a_message(msgtype))),
            Some(title) => {
                if let Some(want) = &expected.title
                    && want.trim() != title.trim()
                {
                    problems.push(format!("title: expected {want:?}, got {title:?}"));
                }
                for part in &expected.title_contains {
                    if !title.contains(part.as_str()) {
                        problems.push(format!("title does not contain {part:?}: {title:?}"));
                    }
                }
            }
        }
    }

    let text = main_text(message);
    let mut show_text = false;
    if let Some(want) = &expected.text {
        let (want, got) = (trim_breaks(want), trim_breaks(&text));
        if want != got {
            problems.push("text differs (- expected, + actual):".to_owned());
            problems.extend(line_diff(want, got).into_iter().map(|l| format!("  {l}")));
        }
    }
    for part in &expected.text_contains {
        if !text.contains(part.as_str()) {
            problems.push(format!("text does not contain {part:?}"));
            show_text = expected.text.is_none();
        }
    }
    for part in &expected.text_not_contains {
        if text.contains(part.as_str()) {
            problems.push(format!("text contains {part:?}, which it must not"));
            show_text = expected.text.is_none();
        }
    }
    if show_text {
        problems.push("the text is:".to_owned());
        let lines: Vec<&str> = trim_breaks(&text).split('\n').collect();
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

    if let Some(want) = &expected.mentions {
        let got: Vec<String> = message.mentions().map(str::to_owned).collect();
        let (mut want_sorted, mut got_sorted) = (want.clone(), got.clone());
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
    if let Some(want) = expected.at_all {
        let got = message.at.as_ref().is_some_and(|at| at.is_at_all);
        if want != got {
            problems.push(format!("at_all (isAtAll): expected {want}, got {got}"));
        }
    }
    if let Some(want) = &expected.buttons {
        match message.body.buttons() {
            None => problems.push(format!(
                "buttons: {} has no buttons (only actionCard has)",
                a_message(msgtype)
            )),
            Some(got) if got != *want => problems.push(format!(
                "buttons: expected {}, got {}",
                list(want),
                list(&got)
            )),
            Some(_) => {}
        }
    }
    if let Some(want) = expected.links {
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
                a_message(msgtype)
            )),
        }
    }
    if let Some(want) = &expected.url {
        match message.link() {
            None => problems.push(format!("url: {} has no link", a_message(msgtype))),
            Some(got) if got.trim() != want.trim() => {
                problems.push(format!("url: expected {want:?}, got {got:?}"));
            }
            Some(_) => {}
        }
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

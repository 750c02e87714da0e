//! The fallback message: what is sent for a rule whose templates failed on an event, built from
//! the event's plain facts ([`Event::facts`]) without any template, so a failing rule still tells
//! its robot that something happened, and why its usual message is missing.
//!
//! The message is a `text` message (nothing to escape, nothing to render wrong) of lines
//! `Label: value`: the source and its kind, the event (for alert kinds the status, the count of
//! firing and resolved alerts and the alert names), the repository or project, the actor, the
//! ref, a title and a link when the payload has them, then `rule \`X\` failed: reason`, then,
//! when the robot has security keywords, `Keywords: a, b` so that one of them appears.
//!
//! Invariants:
//! - nothing here panics, whatever the event, rule name, reason or robot;
//! - every value taken from the event is one line of at most
//!   [`MAX_FACT_CHARS`] characters, the rule name too, and
//!   the reason at most [`MAX_REASON_CHARS`]; the message mentions no one;
//! - the message passes [`prepare`](crate::dingtalk::validate::prepare) for the robot without
//!   being cut (no `…(N more bytes cut)` marker): with every value at its longest and a full
//!   `Keywords:` line it weighs under 16 KB, and should a robot's keywords be so long that it
//!   does not fit, fact lines are
//!   left out, longest first, until it does. The headline, the failure line and one keyword (the
//!   robot's shortest, when the listed ones would be too long) are always there; only a robot
//!   whose shortest keyword alone is close to 16 KB cannot be served.

use crate::dingtalk::validate::{MAX_BODY_BYTES, MSG_UUID_RESERVE, encoded_len};
use crate::dingtalk::{Message, Robot};
use crate::source::facts::MAX_FACT_CHARS;
use crate::source::{Event, Facts};
use crate::text::{one_line, shorten};

/// The most characters of the failure's reason shown: enough for a template error and where it
/// happened.
pub const MAX_REASON_CHARS: usize = 500;

/// The most bytes of keywords listed on the `Keywords:` line (past that, fewer are listed; the
/// shortest is listed even when longer).
pub const MAX_KEYWORD_LINE_BYTES: usize = 1_000;

/// What the message may weigh, encoded: what [`prepare`](crate::dingtalk::validate::prepare)
/// accepts without cutting.
const BUDGET: usize = MAX_BODY_BYTES - MSG_UUID_RESERVE;

/// The first line of every fallback message.
const HEADLINE: &str = "Fallback message: a rule could not render this event; its plain facts:";

/// A message built without the rule's templates, for a rule that failed on this event.
pub fn fallback(event: &Event, robot: &Robot, rule: &str, reason: &str) -> Message {
    let facts = event.facts();
    let mut lines = fact_lines(&facts);
    let reason = clip(reason, MAX_REASON_CHARS);
    let failure = format!(
        "rule `{}` failed: {}",
        clip(rule, MAX_FACT_CHARS),
        if reason.is_empty() {
            "(no reason given)"
        } else {
            &reason
        }
    );
    let keywords = keyword_line(robot);
    let mut message = Message::text(content(&lines, &failure, keywords.as_deref()));
    // Only a robot with very long keywords gets here: leave out the longest facts until it fits.
    while encoded_len(&message) > BUDGET && !lines.is_empty() {
        let longest = lines
            .iter()
            .enumerate()
            .max_by_key(|(_, line)| line.len())
            .map_or(0, |(i, _)| i);
        lines.remove(longest);
        message = Message::text(content(&lines, &failure, keywords.as_deref()));
    }
    message
}

/// The whole text: headline, facts, failure, keywords.
fn content(lines: &[String], failure: &str, keywords: Option<&str>) -> String {
    let mut text = String::from(HEADLINE);
    for line in lines
        .iter()
        .map(String::as_str)
        .chain([failure])
        .chain(keywords)
    {
        text.push('\n');
        text.push_str(line);
    }
    text
}

/// One `Label: value` line per fact the event has.
fn fact_lines(facts: &Facts) -> Vec<String> {
    let mut lines = vec![format!("Source: {} ({})", facts.source, facts.kind)];
    if let Some(alerts) = &facts.alerts {
        if !facts.event.is_empty() {
            lines.push(format!("Status: {}", facts.event));
        }
        lines.push(format!(
            "Alerts: {} firing, {} resolved",
            alerts.firing, alerts.resolved
        ));
        if !alerts.names.is_empty() {
            let mut names = alerts.names.join(", ");
            if alerts.more_names > 0 {
                names.push_str(&format!(" and {} more", alerts.more_names));
            }
            lines.push(format!("Alert names: {names}"));
        }
    } else if !facts.event.is_empty() {
        lines.push(match &facts.action {
            Some(action) => format!("Event: {} ({action})", facts.event),
            None => format!("Event: {}", facts.event),
        });
    }
    let optional = [
        ("Repository", &facts.repository),
        ("Ref", &facts.git_ref),
        ("By", &facts.actor),
        ("Title", &facts.title),
        ("Link", &facts.link),
    ];
    for (label, value) in optional {
        if let Some(value) = value {
            lines.push(format!("{label}: {value}"));
        }
    }
    lines
}

/// `Keywords: a, b` naming the robot's non-blank keywords, as many as fit
/// [`MAX_KEYWORD_LINE_BYTES`] in order, else its shortest; `None` when it has none.
fn keyword_line(robot: &Robot) -> Option<String> {
    let keywords: Vec<&str> = robot
        .keywords
        .iter()
        .map(String::as_str)
        .filter(|keyword| !keyword.trim().is_empty())
        .collect();
    let mut listed: Vec<&str> = Vec::new();
    let mut size = 0;
    for keyword in &keywords {
        let grown = size + keyword.len() + if listed.is_empty() { 0 } else { 2 };
        if grown <= MAX_KEYWORD_LINE_BYTES {
            listed.push(keyword);
            size = grown;
        }
    }
    if listed.is_empty() {
        listed.push(keywords.iter().min_by_key(|k| k.len())?);
    }
    Some(format!("Keywords: {}", listed.join(", ")))
}

/// `text` on one line, at most `max` characters.
fn clip(text: &str, max: usize) -> String {
    shorten(&one_line(text), max)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::{Value, json};

    use super::*;
    use crate::dingtalk::validate::{Prepared, prepare};
    use crate::dingtalk::{Endpoint, MessageBody};
    use crate::source::examples::{self, Example};
    use crate::source::{Auth, Inbound, Source, SourceKind};

    fn source(kind: SourceKind) -> Source {
        Source {
            name: format!("{kind}-src"),
            kind,
            path: format!("/hooks/{kind}-src"),
            auth: Auth::default(),
            secret: None,
            signature_header: None,
            timestamp_header: None,
        }
    }

    fn robot(keywords: &[&str]) -> Robot {
        Robot {
            name: "ops".into(),
            endpoint: Endpoint::DryRun { secret: None },
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    fn example(kind: SourceKind, name: &str) -> &'static Example {
        examples::for_kind(kind)
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {kind} example {name}"))
    }

    /// Parses `body` with the headers of `headers_of`, as the daemon would.
    fn parse_with(kind: SourceKind, body: &str, headers_of: &Example) -> Event {
        let headers: HeaderMap = headers_of.header_map();
        let inbound = Inbound {
            headers: &headers,
            query: "",
            body: body.as_bytes(),
        };
        source(kind)
            .parse(&inbound)
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    fn parse(kind: SourceKind, name: &str) -> Event {
        let example = example(kind, name);
        parse_with(kind, example.body, example)
    }

    /// The content of a text message.
    fn content(message: &Message) -> &str {
        match &message.body {
            MessageBody::Text { text } => &text.content,
            other => panic!("a {} message", other.msgtype()),
        }
    }

    /// Prepares the fallback for `robot` and checks what every fallback promises: accepted,
    /// not cut, fits, mentions no one, ends with the failure line and keywords.
    fn prepared(event: &Event, robot: &Robot, rule: &str, reason: &str) -> Prepared {
        let message = fallback(event, robot, rule, reason);
        let prepared = prepare(message.clone(), robot).unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(prepared.message, message, "prepare changed nothing");
        assert_eq!((prepared.cut_bytes, prepared.title_cut_bytes), (0, 0));
        assert!(encoded_len(&prepared.message) <= BUDGET);
        assert!(message.at.is_none());
        let text = content(&message);
        assert!(text.starts_with(HEADLINE), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("rule `{}` failed: ", clip(rule, 200)))),
            "{text}"
        );
        prepared
    }

    const RULE: &str = "disk-alert";
    const REASON: &str = "template `markdown.text`: undefined value `alert.labels.host` (line 3)";
    const FAILURE: &str = "rule `disk-alert` failed: template `markdown.text`: undefined value `alert.labels.host` (line 3)";

    #[test]
    fn alertmanager_fallback_states_status_counts_and_names() {
        let event = parse(SourceKind::Alertmanager, "firing");
        let message = fallback(&event, &robot(&[]), RULE, REASON);
        assert_eq!(
            content(&message),
            format!(
                "{HEADLINE}\n\
                 Source: alertmanager-src (alertmanager)\n\
                 Status: firing\n\
                 Alerts: 3 firing, 0 resolved\n\
                 Alert names: HighErrorRate\n\
                 Link: https://alertmanager.example.com/\n\
                 {FAILURE}"
            )
        );
        prepared(&event, &robot(&[]), RULE, REASON);
    }

    #[test]
    fn grafana_fallback_states_title_and_link() {
        let event = parse(SourceKind::Grafana, "firing");
        let prepared = prepared(&event, &robot(&[]), RULE, REASON);
        let text = content(&prepared.message);
        for line in [
            "Source: grafana-src (grafana)",
            "Status: firing",
            "Alerts: 1 firing, 0 resolved",
            "Alert names: Queue backlog",
            "Title: [FIRING:1] Queue backlog Platform (orders warning payments)",
            "Link: https://grafana.example.com/",
            FAILURE,
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }
        let event = parse(SourceKind::Grafana, "resolved");
        let prepared = self::prepared(&event, &robot(&[]), RULE, REASON);
        assert!(content(&prepared.message).contains("\nStatus: resolved\n"));
    }

    #[test]
    fn github_fallback_states_repository_title_and_link() {
        let event = parse(SourceKind::Github, "pull_request.opened");
        let payload = &event.payload;
        let at = |p: &str| payload.pointer(p).and_then(Value::as_str).unwrap_or("?");
        let text = content(&prepared(&event, &robot(&[]), RULE, REASON).message).to_owned();
        for line in [
            "Source: github-src (github)".to_owned(),
            "Event: pull_request (opened)".to_owned(),
            format!("Repository: {}", at("/repository/full_name")),
            format!("By: {}", at("/sender/login")),
            format!("Title: {}", at("/pull_request/title")),
            format!("Link: {}", at("/pull_request/html_url")),
            FAILURE.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }

        let event = parse(SourceKind::Github, "push");
        let text = content(&prepared(&event, &robot(&[]), RULE, REASON).message).to_owned();
        assert!(text.contains("\nEvent: push\n"), "{text}");
        assert!(text.contains("\nRef: refs/heads/main\n"), "{text}");
        assert!(text.contains("\nLink: https://github.com/example-org/shop/compare/"));
    }

    #[test]
    fn gitlab_fallback_states_project_title_and_link() {
        let event = parse(SourceKind::Gitlab, "merge_request");
        let payload = &event.payload;
        let at = |p: &str| payload.pointer(p).and_then(Value::as_str).unwrap_or("?");
        let text = content(&prepared(&event, &robot(&[]), RULE, REASON).message).to_owned();
        for line in [
            "Source: gitlab-src (gitlab)".to_owned(),
            format!("Event: merge_request ({})", at("/object_attributes/action")),
            format!("Repository: {}", at("/project/path_with_namespace")),
            format!("Title: {}", at("/object_attributes/title")),
            format!("Link: {}", at("/object_attributes/url")),
            FAILURE.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }

        let event = parse(SourceKind::Gitlab, "pipeline.failed");
        let text = content(&prepared(&event, &robot(&[]), RULE, REASON).message).to_owned();
        assert!(text.contains("\nEvent: pipeline (failed)\n"), "{text}");
    }

    #[test]
    fn json_fallback_states_title_and_url() {
        let event = parse(SourceKind::Json, "generic");
        let text = content(&prepared(&event, &robot(&[]), RULE, REASON).message).to_owned();
        assert_eq!(
            text,
            format!(
                "{HEADLINE}\n\
                 Source: json-src (json)\n\
                 Title: Nightly backup failed\n\
                 Link: https://ci.example.com/jobs/nightly-backup/1187\n\
                 {FAILURE}"
            )
        );
    }

    #[test]
    fn robot_keywords_are_named_so_one_appears() {
        let ops = robot(&["告警", "ALERT"]);
        for kind in SourceKind::ALL {
            for example in examples::for_kind(kind) {
                let event = parse_with(kind, example.body, example);
                let prepared = prepared(&event, &ops, RULE, REASON);
                let text = content(&prepared.message);
                assert!(text.ends_with("\nKeywords: 告警, ALERT"), "{text}");
                assert!(text.contains(&format!("\n{FAILURE}\n")), "{text}");
            }
        }
        // Blank keywords are not named; without keywords there is no line.
        let event = parse(SourceKind::Json, "generic");
        let text = content(&fallback(&event, &robot(&[" ", "ops"]), RULE, REASON)).to_owned();
        assert!(text.ends_with("\nKeywords: ops"), "{text}");
        let text = content(&fallback(&event, &robot(&[]), RULE, REASON)).to_owned();
        assert!(!text.contains("Keywords"), "{text}");
    }

    #[test]
    fn a_100_kb_alertname_and_reason_still_fit() {
        let name = "DiskFull😀\"\\".repeat(7_500);
        assert!(name.len() > 100_000);
        let mut payload: Value =
            serde_json::from_str(example(SourceKind::Alertmanager, "firing").body)
                .unwrap_or_default();
        for i in 0..3 {
            if let Some(labels) = payload.pointer_mut(&format!("/alerts/{i}/labels")) {
                labels["alertname"] = json!(format!("{i}{name}"));
            }
        }
        let event = parse_with(
            SourceKind::Alertmanager,
            &payload.to_string(),
            example(SourceKind::Alertmanager, "firing"),
        );
        let reason = format!("boom\n{}", "原因 \"quoted\" ".repeat(8_000));
        assert!(reason.len() > 100_000);
        let ops = robot(&["告警", "ALERT"]);
        let prepared = prepared(&event, &ops, RULE, &reason);
        assert!(encoded_len(&prepared.message) < MAX_BODY_BYTES);
        let text = content(&prepared.message);
        let names = text
            .lines()
            .find_map(|l| l.strip_prefix("Alert names: "))
            .expect("names listed");
        assert_eq!(names.split(", ").count(), 3);
        assert!(names.starts_with("0DiskFull😀\"\\DiskFull"), "{names}");
        let failure = text
            .lines()
            .find_map(|l| l.strip_prefix("rule `disk-alert` failed: "))
            .expect("failure line");
        assert!(failure.starts_with("boom 原因 \"quoted\""), "{failure}");
        assert_eq!(failure.chars().count(), MAX_REASON_CHARS);
        assert!(failure.ends_with('…'));
        assert!(text.ends_with("\nKeywords: 告警, ALERT"));
    }

    /// An event whose every fact is as long as it can be, in the widest characters.
    fn widest(kind: SourceKind) -> Event {
        let wide = "😀".repeat(1_000);
        let alerts: Vec<Value> = (0..50)
            .map(|i| json!({ "labels": { "alertname": format!("{i}{wide}") } }))
            .collect();
        let url = format!("https://example.com/{}", "a".repeat(470));
        let payload = json!({
            "alerts": alerts, "title": wide, "externalURL": url,
            "action": wide, "repository": { "full_name": wide }, "sender": { "login": wide },
            "ref": wide, "pull_request": { "title": wide, "html_url": url },
            "object_attributes": { "action": wide, "title": wide, "url": url },
            "project": { "path_with_namespace": wide }, "user": { "username": wide },
        });
        Event {
            source: wide.clone(),
            kind,
            name: wide,
            ignored: None,
            payload,
            headers: Default::default(),
            query: Default::default(),
            dedup_key: None,
        }
    }

    #[test]
    fn the_widest_facts_fit_with_every_line() {
        // Ten keywords of 96 bytes: a full `Keywords:` line.
        let keyword = "告警".repeat(16);
        let ops = robot(&[keyword.as_str(); 10]);
        let wide = "😀".repeat(1_000);
        for kind in SourceKind::ALL {
            let event = widest(kind);
            let prepared = prepared(&event, &ops, &wide, &wide);
            let size = encoded_len(&prepared.message);
            assert!(size < 16_000, "{kind}: {size} bytes");
            let text = content(&prepared.message);
            let expected = fact_lines(&event.facts()).len();
            assert!(expected >= 3, "{kind}");
            // Headline, every fact, failure, keywords: nothing left out.
            assert_eq!(text.lines().count(), expected + 3, "{kind}: {text}");
        }
    }

    #[test]
    fn very_long_keywords_leave_facts_out_but_still_pass() {
        // A first keyword past the listing limit: only the shortest is named.
        let long = "告".repeat(2_000);
        let event = widest(SourceKind::Alertmanager);
        let ops = robot(&[long.as_str(), "短"]);
        let text = content(&prepared(&event, &ops, RULE, REASON).message).to_owned();
        assert!(text.ends_with("\nKeywords: 短"), "{text}");

        // A single 12 KB keyword: facts go, the failure and the keyword stay.
        let huge = "告警".repeat(2_000);
        let ops = robot(&[huge.as_str()]);
        let prepared = prepared(&event, &ops, RULE, REASON);
        let text = content(&prepared.message);
        assert!(text.ends_with(&format!("\nKeywords: {huge}")));
        assert!(text.lines().count() < fact_lines(&event.facts()).len() + 3);
        assert!(text.contains("\nSource: "), "the shortest facts stay");
    }

    #[test]
    fn odd_payloads_never_panic_and_always_pass() {
        let huge: Vec<Value> = (0..50_000).map(|i| json!(i)).collect();
        let many: Vec<Value> = (0..5_000)
            .map(|i| json!({ "labels": { "alertname": format!("alert-{i}") }, "status": "resolved" }))
            .collect();
        let payloads = [
            json!({}),
            json!(null),
            json!("string"),
            json!([1, 2]),
            json!({ "alerts": huge }),
            json!({ "alerts": many }),
            json!({ "alerts": {}, "title": 5, "externalURL": ["x"], "status": false }),
            json!({ "alerts": [{"labels": {"alertname": null}}, {"labels": [1]}, 3] }),
            json!({ "repository": {"full_name": 1.5}, "pull_request": [], "head_commit": 7 }),
            json!({ "object_attributes": {"title": {"x": 1}, "url": "javascript:x"}, "commits": huge }),
            json!({ "title": "\u{0}\u{1b}[31m\r\n", "url": "http://", "link": "https://ok.example/" }),
            json!({ "title": "\"".repeat(100_000), "summary": "x" }),
        ];
        let robots = [
            robot(&[]),
            robot(&["告警", "ALERT"]),
            robot(&["\"", "\\"]),
            robot(&[" ", "x"]),
        ];
        let reasons = ["", "\n", "boom", &"\u{1}".repeat(10_000)];
        let rules = ["", "r", &"规".repeat(5_000)];
        for kind in SourceKind::ALL {
            for (p, payload) in payloads.iter().enumerate() {
                let mut event = widest(kind);
                event.payload = payload.clone();
                event.source = String::new();
                event.name = if p % 2 == 0 {
                    String::new()
                } else {
                    "\n".into()
                };
                for (i, robot) in robots.iter().enumerate() {
                    let reason = reasons[(p + i) % reasons.len()];
                    let rule = rules[(p + i) % rules.len()];
                    prepared(&event, robot, rule, reason);
                }
            }
        }
    }
}

//! Snapshot tests (insta) of what the shipped rules.yaml sends for every payload of the corpus
//! (tests/fixtures/corpus/{alertmanager,grafana,github,gitlab}, not legacy/): one snapshot per
//! fixture, `tests/snapshots/<dir>__<file>.snap`, written to be read by a person, not diffed as JSON.
//!
//! Each snapshot shows, for every delivery, `rule -> robot (msgtype)` and the message as DingTalk
//! would show it: the title on one line, the text as real lines (a trailing space, markdown's hard
//! line break, shown as `␣`), buttons and links listed; or "no rule matched" with each false
//! condition, followed, when the event has a built-in template, by what that template would send
//! (so the templates the shipped rules leave commented out are looked at too). Everything is
//! deterministic: a fixed `now`, the config's time zone, no message id (`msgUuid` is only set by
//! the outbox), ordered maps.
//!
//! A rendering change fails the test, naming every fixture whose snapshot changed; a snapshot
//! whose fixture is gone fails it too. To accept the changes after reading them
//! (`git diff tests/snapshots`):
//!
//! ```sh
//! INSTA_UPDATE=always cargo test --test integration snapshots::     # or, with cargo-insta: cargo insta review
//! ```

use std::fmt::Write as _;
use std::path::Path;

use dingrelay::config::Config;
use dingrelay::dingtalk::{
    Message,
    message::{At, BtnOrientation, CardAction, MessageBody},
};
use dingrelay::rules::{Routing, SkipReason};
use dingrelay::source::{Event, Inbound, Rejection, SourceKind};

use crate::support::corpus;

/// The time every template sees as `now` ("firing for 3h 12m").
const NOW: &str = "2026-11-24T08:00:00Z";

const DIRS: [(&str, SourceKind); 4] = [
    ("alertmanager", SourceKind::Alertmanager),
    ("grafana", SourceKind::Grafana),
    ("github", SourceKind::Github),
    ("gitlab", SourceKind::Gitlab),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built-in template for each GitHub and GitLab event that has one.
const TEMPLATES: [(SourceKind, &str, &str); 15] = [
    (SourceKind::Github, "push", "github-push"),
    (SourceKind::Github, "pull_request", "github-pull-request"),
    (
        SourceKind::Github,
        "pull_request_review",
        "github-pull-request-review",
    ),
    (SourceKind::Github, "issues", "github-issues"),
    (SourceKind::Github, "issue_comment", "github-issue-comment"),
    (SourceKind::Github, "release", "github-release"),
    (SourceKind::Github, "workflow_run", "github-workflow-run"),
    (SourceKind::Github, "check_suite", "github-check-suite"),
    (SourceKind::Github, "star", "github-star"),
    (SourceKind::Gitlab, "push", "gitlab-push"),
    (SourceKind::Gitlab, "tag_push", "gitlab-tag-push"),
    (SourceKind::Gitlab, "merge_request", "gitlab-merge-request"),
    (SourceKind::Gitlab, "pipeline", "gitlab-pipeline"),
    (SourceKind::Gitlab, "issue", "gitlab-issue"),
    (SourceKind::Gitlab, "note", "gitlab-note"),
];

/// A config with one rule per built-in GitHub/GitLab template, matching every action of its
/// event: what a payload that the shipped rules leave out would look like with its template
/// enabled (several are commented out in rules.yaml, and most `when`s pick a few actions). So every
/// template's rendering of every corpus payload of its event is in a snapshot.
fn preview_config() -> Config {
    let mut text = String::from(
        "timezone: Asia/Shanghai\n\
         robots:\n  preview: { webhook: log }\n\
         sources:\n  github: { kind: github }\n  gitlab: { kind: gitlab }\n\
         rules:\n",
    );
    for (kind, event, template) in TEMPLATES {
        let _ = write!(
            text,
            "  - name: {template}\n    source: {}\n    when: event == \"{event}\"\n    to: preview\n    template: {template}\n",
            kind.as_str()
        );
    }
    Config::parse("preview.yaml", &text, manifest_dir(), &|_| None)
        .unwrap_or_else(|e| panic!("the preview config loads:\n{e}"))
}

fn shipped_config() -> Config {
    let text =
        std::fs::read_to_string(manifest_dir().join("rules.yaml")).expect("rules.yaml is readable");
    // No variable set: the shipped file as a fresh clone has it.
    Config::parse("rules.yaml", &text, manifest_dir(), &|_| None)
        .unwrap_or_else(|e| panic!("the shipped rules.yaml loads:\n{e}"))
}

/// `github/pull_request.closed.json` -> `github__pull_request.closed`.
fn snapshot_name(file: &str) -> String {
    file.trim_end_matches(".json").replace('/', "__")
}

/// Parses one fixture as `kind`'s source of `config` would.
fn parse_fixture(
    config: &Config,
    file: &str,
    kind: SourceKind,
) -> (String, Result<Event, Rejection>) {
    let source = config
        .sources
        .values()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("the config has a {} source", kind.as_str()));
    let body = corpus::read(file);
    let headers = corpus::headers(file);
    let inbound = Inbound {
        headers: &headers,
        query: "",
        body: &body,
    };
    (source.name.clone(), source.parse(&inbound))
}

/// Renders one fixture through the shipped rules as the text of its snapshot; when no shipped
/// rule matches, also through its event's built-in template, if there is one.
fn render_fixture(shipped: &Config, preview: &Config, file: &str, kind: SourceKind) -> String {
    let mut out = String::new();
    let (source, event) = parse_fixture(shipped, file, kind);
    let event = match event {
        Ok(event) => event,
        Err(rejection) => {
            let _ = writeln!(out, "refused by source `{source}`: {rejection}");
            return out;
        }
    };
    let action = event
        .payload
        .get("action")
        .and_then(|a| a.as_str())
        .map(|a| format!(", action `{a}`"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "source `{source}` ({}), event `{}`{action}",
        kind.as_str(),
        event.name
    );
    if let Some(reason) = &event.ignored {
        let _ = writeln!(out, "ignored without running the rules: {reason}");
        return out;
    }
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let routing = shipped.rules.route(&event, now);
    write_routing(&mut out, file, &routing);
    if !routing.messages.is_empty() || !routing.errors.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nno rule matched");
    for skipped in &routing.skipped {
        match &skipped.reason {
            SkipReason::ConditionFalse { when } => {
                let _ = writeln!(out, "  rule `{}`: false: {}", skipped.rule, when.trim());
            }
            SkipReason::StoppedBy { rule } => {
                let _ = writeln!(
                    out,
                    "  rule `{}`: not evaluated (stopped by `{rule}`)",
                    skipped.rule
                );
            }
        }
    }
    if preview.sources.values().any(|s| s.kind == kind) {
        let (_, event) = parse_fixture(preview, file, kind);
        let routing = preview.rules.route(&event.unwrap(), now);
        if !routing.messages.is_empty() || !routing.errors.is_empty() {
            let _ = writeln!(
                out,
                "\n--- not sent by the shipped rules.yaml; with its built-in template enabled for \
                 every action, it would read:"
            );
            write_routing(&mut out, file, &routing);
        }
    }
    out
}

/// Each delivery (`rule -> robot (msgtype)` and the message), then each error.
fn write_routing(out: &mut String, file: &str, routing: &Routing) {
    for delivery in &routing.messages {
        let message = &delivery.message;
        assert!(
            message.msg_uuid.is_none(),
            "{file}: a rendered message has no msgUuid (the outbox sets it)"
        );
        let _ = writeln!(out);
        let _ = write!(
            out,
            "rule `{}` -> robot `{}` ({})",
            delivery.rule,
            delivery.robot.name,
            message.body.msgtype()
        );
        if let Some(part) = &delivery.part {
            let _ = write!(out, ", part `{part}`");
        }
        if delivery.omitted_alerts > 0 {
            let _ = write!(
                out,
                ", {} alerts left out to fit 20,000 bytes",
                delivery.omitted_alerts
            );
        }
        if delivery.cut_bytes > 0 {
            let _ = write!(
                out,
                ", {} bytes cut to fit 20,000 bytes",
                delivery.cut_bytes
            );
        }
        let _ = writeln!(out);
        write_message(out, message);
    }
    for error in &routing.errors {
        let _ = writeln!(out, "\nerror: {error}");
    }
}

/// The message, pretty: labelled one-line fields, multi-line texts as indented lines.
fn write_message(out: &mut String, message: &Message) {
    match &message.body {
        MessageBody::Text { text } => {
            write_block(out, "content", &text.content);
        }
        MessageBody::Link { link } => {
            write_line(out, "title", &link.title);
            write_block(out, "text", &link.text);
            write_line(out, "opens", &link.message_url);
            if let Some(pic) = &link.pic_url {
                write_line(out, "picture", pic);
            }
        }
        MessageBody::Markdown { markdown } => {
            write_line(out, "title", &markdown.title);
            write_block(out, "text", &markdown.text);
        }
        MessageBody::ActionCard { action_card } => {
            write_line(out, "title", &action_card.title);
            write_block(out, "text", &action_card.text);
            match &action_card.action {
                CardAction::Single {
                    single_title,
                    single_url,
                } => {
                    let _ = writeln!(out, "button: [{single_title}] -> {single_url}");
                }
                CardAction::Buttons { btns } => {
                    let _ = writeln!(out, "buttons:");
                    for button in btns {
                        let _ = writeln!(out, "  [{}] -> {}", button.title, button.action_url);
                    }
                }
            }
            if let Some(orientation) = action_card.btn_orientation {
                let orientation = match orientation {
                    BtnOrientation::Vertical => "vertical",
                    BtnOrientation::Horizontal => "horizontal",
                };
                write_line(out, "buttons laid out", orientation);
            }
            if let Some(hide) = action_card.hide_avatar {
                write_line(out, "hide avatar", if hide { "yes" } else { "no" });
            }
        }
        MessageBody::FeedCard { feed_card } => {
            let _ = writeln!(out, "links:");
            for link in &feed_card.links {
                let _ = writeln!(out, "  {} -> {}", one_line(&link.title), link.message_url);
                let _ = writeln!(out, "    picture: {}", link.pic_url);
            }
        }
    }
    if let Some(at) = &message.at {
        write_mentions(out, at);
    }
}

fn write_mentions(out: &mut String, at: &At) {
    if at.is_empty() {
        return;
    }
    let mut who: Vec<String> = Vec::new();
    who.extend(at.at_mobiles.iter().map(|m| format!("mobile {m}")));
    who.extend(at.at_user_ids.iter().map(|u| format!("user {u}")));
    if at.is_at_all {
        who.push("everyone".to_owned());
    }
    write_line(out, "mentions", &who.join(", "));
}

/// `label: value`, the value on one line (a newline in it is shown as `⏎`).
fn write_line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label}: {}", one_line(value));
}

fn one_line(value: &str) -> String {
    if value.contains('\n') {
        value.replace('\n', "⏎")
    } else {
        value.to_owned()
    }
}

/// `label:` then each line of `text`, indented by four spaces. Trailing spaces (markdown's hard
/// line break is two of them) are shown as `␣`, so they can be seen and no editor strips them.
fn write_block(out: &mut String, label: &str, text: &str) {
    let _ = writeln!(out, "{label}:");
    for line in text.split('\n') {
        let trimmed = line.trim_end_matches([' ', '\t', '\r']);
        let trailing: String = line[trimmed.len()..]
            .chars()
            .map(|c| match c {
                ' ' => '␣',
                '\t' => '⇥',
                _ => '␍',
            })
            .collect();
        if trimmed.is_empty() && trailing.is_empty() {
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, "    {trimmed}{trailing}");
        }
    }
}

#[test]
fn every_corpus_payload_renders_as_its_snapshot() {
    let config = shipped_config();
    let preview = preview_config();
    let mut names = std::collections::BTreeSet::new();
    let mut changed = Vec::new();
    for (dir, kind) in DIRS {
        let files = corpus::files(dir);
        assert!(!files.is_empty(), "{dir} has payloads");
        for file in files {
            let name = snapshot_name(&file);
            names.insert(name.clone());
            let text = render_fixture(&config, &preview, &file, kind);
            let description =
                format!("tests/fixtures/corpus/{file} through the shipped rules.yaml, now = {NOW}");
            if !matches_snapshot(&name, description, &text) {
                changed.push(file);
            }
        }
    }
    assert_none_changed(&changed);
    // events__*: the synthetic events' snapshots, checked by the test below.
    let stale = stale_snapshots(|name| !name.starts_with("events__"), &names);
    assert!(
        stale.is_empty(),
        "snapshots without a corpus fixture (delete them): {stale:?}"
    );
}

/// Checks `text` against the snapshot `name` in tests/snapshots; false when it differs (insta
/// has printed the diff), so that every fixture is checked, and every changed one named, before
/// the test fails.
fn matches_snapshot(name: &str, description: String, text: &str) -> bool {
    std::panic::catch_unwind(|| {
        insta::with_settings!({
            // The snapshots stay in tests/snapshots, where they were made.
            snapshot_path => "../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => description,
        }, {
            insta::assert_snapshot!(name, text);
        });
    })
    .is_ok()
}

/// Fails naming every rendering that differs from its snapshot.
fn assert_none_changed(changed: &[String]) {
    assert!(
        changed.is_empty(),
        "{} rendering(s) differ from their snapshot in tests/snapshots/: {changed:#?}\n\
         read the diffs above; to accept them: INSTA_UPDATE=always cargo test --test integration snapshots::",
        changed.len()
    );
}

/// The snapshot files of tests/snapshots that a test claims (`mine`, by name) but whose payload
/// is gone (not in `names`): stale, nothing checks them any more.
fn stale_snapshots(
    mine: impl Fn(&str) -> bool,
    names: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    std::fs::read_dir(manifest_dir().join("tests/snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|file| {
            file.strip_suffix(".snap")
                .is_some_and(|name| mine(name) && !names.contains(name))
        })
        .collect()
}

/// tests/fixtures/events: one synthetic payload per GitHub event and action
/// (`github/<event>.<action>[.<variant>].json`) and per GitLab event type
/// (`gitlab/<type>[.<variant>].json`), written by tests/fixtures/events/generate.py.
fn event_files(dir: &str) -> Vec<String> {
    let path = manifest_dir().join("tests/fixtures/events").join(dir);
    let mut files: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    files
}

/// The payload of an events fixture, parsed by a `kind` source (the GitHub event from the file
/// name, as the `X-GitHub-Event` header would give it).
fn parse_event_fixture(config: &Config, dir: &str, file: &str) -> Event {
    let kind = if dir == "github" {
        SourceKind::Github
    } else {
        SourceKind::Gitlab
    };
    let source = config.sources.values().find(|s| s.kind == kind).unwrap();
    let body = std::fs::read(
        manifest_dir()
            .join("tests/fixtures/events")
            .join(dir)
            .join(file),
    )
    .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if kind == SourceKind::Github {
        let event = file.split('.').next().unwrap();
        headers.insert(
            "x-github-event",
            http::HeaderValue::from_str(event).unwrap(),
        );
    }
    headers.insert(
        "x-gitlab-instance",
        http::HeaderValue::from_static("https://gitlab.example.com"),
    );
    let inbound = Inbound {
        headers: &headers,
        query: "",
        body: &body,
    };
    source
        .parse(&inbound)
        .unwrap_or_else(|e| panic!("{dir}/{file}: {e}"))
}

/// A config that routes every GitHub and GitLab event to its built-in template
/// ([`dingrelay::rules::templates::builtin_for`]): one rule per template, for the events it is
/// made for, and the generic templates for every other event.
fn every_event_config(robot: &str) -> Config {
    let mut text = format!(
        "timezone: Asia/Shanghai\nrobots:\n  dev: {robot}\n\
         sources:\n  github: {{ kind: github }}\n  gitlab: {{ kind: gitlab }}\nrules:\n"
    );
    let mut by_template: std::collections::BTreeMap<(&str, &str), Vec<String>> =
        std::collections::BTreeMap::new();
    for (dir, kind) in [
        ("github", SourceKind::Github),
        ("gitlab", SourceKind::Gitlab),
    ] {
        let preview = preview_config();
        for file in event_files(dir) {
            let event = parse_event_fixture(&preview, dir, &file);
            let template = dingrelay::rules::templates::builtin_for(kind, &event.name).unwrap();
            let events = by_template.entry((kind.as_str(), template)).or_default();
            if !events.contains(&event.name) {
                events.push(event.name.clone());
            }
        }
    }
    // The specific templates first, each stopping; then the generic ones take the rest.
    let mut ordered: Vec<_> = by_template.iter().collect();
    ordered.sort_by_key(|((_, template), _)| template.ends_with("-event"));
    for ((source, template), events) in ordered {
        let generic = template.ends_with("-event");
        let list = events
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ");
        // The generic template also takes what no other rule does.
        let when = if generic {
            String::new()
        } else {
            format!("    when: event in [{list}]\n    stop: true\n")
        };
        let _ = write!(
            text,
            "  - name: {template}\n    source: {source}\n{when}    to: dev\n    template: {template}\n"
        );
    }
    Config::parse("every-event.yaml", &text, manifest_dir(), &|_| None)
        .unwrap_or_else(|e| panic!("the every-event config loads:\n{e}\n{text}"))
}

#[test]
fn check_passes_on_a_config_routing_every_event_to_its_template() {
    for robot in ["{ webhook: log }", "{ webhook: log, keywords: [CI] }"] {
        let config = every_event_config(robot);
        let audit = dingrelay::config::audit(&config, NOW.parse().unwrap());
        assert!(
            audit.passed(),
            "robot {robot}:\n{}",
            audit.problem_report("every-event.yaml")
        );
    }
}

/// Every synthetic event renders through its built-in template as its snapshot,
/// `tests/snapshots/events__<dir>__<file>.snap`.
#[test]
fn every_event_renders_through_its_template_as_its_snapshot() {
    let config = every_event_config("{ webhook: log }");
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let mut changed = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for dir in ["github", "gitlab"] {
        let files = event_files(dir);
        assert!(!files.is_empty(), "events/{dir} has payloads");
        for file in files {
            names.insert(format!("events__{dir}__{}", file.trim_end_matches(".json")));
            let event = parse_event_fixture(&config, dir, &file);
            let mut text = String::new();
            let action = event
                .payload
                .get("action")
                .and_then(|a| a.as_str())
                .map(|a| format!(", action `{a}`"))
                .unwrap_or_default();
            let _ = writeln!(text, "event `{}`{action}", event.name);
            let routing = config.rules.route(&event, now);
            assert!(
                routing.errors.is_empty(),
                "{dir}/{file}: {:?}",
                routing.errors
            );
            assert_eq!(routing.messages.len(), 1, "{dir}/{file}: one message");
            write_routing(&mut text, &file, &routing);
            let name = format!("events__{dir}__{}", file.trim_end_matches(".json"));
            let description = format!(
                "tests/fixtures/events/{dir}/{file} through its built-in template, now = {NOW}"
            );
            if !matches_snapshot(&name, description, &text) {
                changed.push(format!("{dir}/{file}"));
            }
        }
    }
    assert_none_changed(&changed);
    let stale = stale_snapshots(|name| name.starts_with("events__"), &names);
    assert!(
        stale.is_empty(),
        "snapshots without an event payload (delete them): {stale:?}"
    );
}

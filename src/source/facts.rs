//! The plain facts of an event ([`Event::facts`]): who sent it, what happened, to what, and
//! where to look, read from the payload the way each kind shapes it. Used where a rule's
//! templates cannot be (routing's fallback message), so it reads no configuration and trusts
//! nothing in the payload.
//!
//! What each kind gives:
//! - alertmanager, grafana: the group status (the event name), how many alerts fire and how many
//!   are resolved, the distinct `labels.alertname`s, Grafana's `title` or the group's
//!   `commonAnnotations.summary`, and `externalURL` (else the first alert's `generatorURL`);
//! - github: the `action`, `repository.full_name`, `sender.login`, the `ref`, the title of the
//!   main object (pull request, issue, discussion, release, workflow run, check run, ...) or the
//!   head commit's first line, and the main object's `html_url` (else the push's `compare`, else
//!   the repository's);
//! - gitlab: `object_attributes.action` (or a pipeline's, job's or deployment's status),
//!   `project.path_with_namespace`, the user, the `ref`, the object's title or the commit's first
//!   line, and `object_attributes.url` (else `project.web_url`);
//! - json: a top-level `title`/`summary`/`subject` and `url`/`link`.
//!
//! Invariants:
//! - nothing here panics, whatever the payload (not an object, fields of any JSON type, huge
//!   arrays or strings);
//! - every text is one line (line breaks, tabs and control characters become single spaces),
//!   not blank, and at most [`MAX_FACT_CHARS`] characters, ending with `…` when it was cut;
//! - at most [`MAX_ALERT_NAMES`] alert names, distinct, in the order of the alerts, and
//!   [`AlertFacts::more_names`] counts the distinct ones left out;
//! - a link is an absolute `http`/`https` URL of at most [`MAX_LINK_BYTES`] bytes, never cut (a
//!   cut URL is broken): a longer one is left out.

use std::collections::HashSet;

use serde_json::Value;
use url::Url;

use super::alerts::{self, Status};
use super::event::Event;
use super::kind::SourceKind;
use crate::text::{one_line, shorten};

/// The most characters a fact taken from the payload keeps: enough for any name, title or
/// first line of a commit, and small enough that all of them fit one DingTalk message.
pub const MAX_FACT_CHARS: usize = 200;

/// The most alert names listed; the others are counted.
pub const MAX_ALERT_NAMES: usize = 10;

/// The longest link kept, in bytes. A URL cannot be cut, so a longer one is left out.
pub const MAX_LINK_BYTES: usize = 500;

/// The plain facts of an event. See the module documentation for where each comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The configured source name.
    pub source: String,
    pub kind: SourceKind,
    /// The event name (for alert kinds, the group status: `firing` or `resolved`); empty for a
    /// json source called without `event`.
    pub event: String,
    /// What happened to the object: GitHub's `action` (`opened`, `completed`), GitLab's
    /// `object_attributes.action` (`open`, `merge`) or, for pipelines, jobs and deployments,
    /// their status (`failed`).
    pub action: Option<String>,
    /// Alert kinds only: the alert counts and names.
    pub alerts: Option<AlertFacts>,
    /// GitHub's `repository.full_name`, GitLab's `project.path_with_namespace`.
    pub repository: Option<String>,
    /// Who did it: GitHub's `sender.login`, GitLab's user name.
    pub actor: Option<String>,
    /// The branch or tag (`refs/heads/main`, `v1.2.0`) of a push, pipeline or job.
    pub git_ref: Option<String>,
    /// What the event is about, in one line: a pull request's, issue's or merge request's title,
    /// a release's name, a commit's first line, Grafana's `title`.
    pub title: Option<String>,
    /// Where to look: an absolute http(s) URL.
    pub link: Option<String>,
}

/// What an alert group holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFacts {
    pub firing: usize,
    pub resolved: usize,
    /// The first [`MAX_ALERT_NAMES`] distinct `labels.alertname`s, in the order of the alerts.
    pub names: Vec<String>,
    /// Distinct alert names past [`MAX_ALERT_NAMES`], not listed.
    pub more_names: usize,
}

impl Event {
    /// The plain facts of this event, read from its payload as its kind shapes it.
    pub fn facts(&self) -> Facts {
        let payload = &self.payload;
        let mut facts = Facts {
            source: clip(&self.source).unwrap_or_default(),
            kind: self.kind,
            event: clip(&self.name).unwrap_or_default(),
            action: None,
            alerts: None,
            repository: None,
            actor: None,
            git_ref: None,
            title: None,
            link: None,
        };
        match self.kind {
            SourceKind::Alertmanager | SourceKind::Grafana => {
                facts.alerts = Some(alert_facts(payload));
                facts.title = first_text(payload, &["/title", "/commonAnnotations/summary"]);
                facts.link = first_link(payload, &["/externalURL", "/alerts/0/generatorURL"]);
            }
            SourceKind::Github => github(payload, &mut facts),
            SourceKind::Gitlab => gitlab(payload, &mut facts),
            SourceKind::Json => {
                facts.title = first_text(payload, &["/title", "/summary", "/subject"]);
                facts.link = first_link(payload, &["/url", "/link", "/html_url"]);
            }
        }
        facts
    }
}

/// The objects a GitHub event can be about, most specific first.
const GITHUB_OBJECTS: [&str; 11] = [
    "pull_request",
    "issue",
    "discussion",
    "release",
    "workflow_run",
    "workflow_job",
    "check_run",
    "check_suite",
    "deployment",
    "milestone",
    "package",
];

fn github(payload: &Value, facts: &mut Facts) {
    facts.action = first_text(payload, &["/action"]);
    facts.repository = first_text(payload, &["/repository/full_name", "/repository/name"]);
    facts.actor = first_text(payload, &["/sender/login", "/pusher/name"]);
    facts.git_ref = first_text(payload, &["/ref", "/workflow_run/head_branch"]);
    let object = GITHUB_OBJECTS
        .iter()
        .find_map(|key| payload.get(key).filter(|v| v.is_object()));
    facts.title = object
        .and_then(|o| first_text(o, &["/title", "/display_title", "/name", "/tag_name"]))
        .or_else(|| first_line(payload, &["/head_commit/message"]));
    facts.link = object
        .and_then(|o| first_link(o, &["/html_url"]))
        .or_else(|| first_link(payload, &["/compare", "/repository/html_url"]));
}

fn gitlab(payload: &Value, facts: &mut Facts) {
    facts.action = first_text(
        payload,
        &[
            "/object_attributes/action",
            "/object_attributes/status",
            "/build_status",
            "/status",
            "/object_attributes/state",
        ],
    );
    facts.repository = first_text(
        payload,
        &[
            "/project/path_with_namespace",
            "/project_name",
            "/project/name",
            "/repository/name",
        ],
    );
    facts.actor = first_text(
        payload,
        &[
            "/user/username",
            "/user_username",
            "/user/name",
            "/user_name",
        ],
    );
    facts.git_ref = first_text(payload, &["/ref", "/object_attributes/ref"]);
    facts.title = first_text(
        payload,
        &[
            "/object_attributes/title",
            "/merge_request/title",
            "/issue/title",
            "/commit/title",
            "/commit_title",
        ],
    )
    .or_else(|| first_line(payload, &["/commit/message", "/message"]))
    .or_else(|| head_commit_line(payload));
    facts.link = first_link(
        payload,
        &[
            "/object_attributes/url",
            "/project/web_url",
            "/repository/homepage",
        ],
    );
}

/// A GitLab push's head commit (the one `checkout_sha` names, else the last), first line.
fn head_commit_line(payload: &Value) -> Option<String> {
    let commits = payload.get("commits")?.as_array()?;
    let head = payload.get("checkout_sha").and_then(Value::as_str);
    let commit = commits
        .iter()
        .find(|c| head.is_some() && c.get("id").and_then(Value::as_str) == head)
        .or_else(|| commits.last())?;
    first_text(commit, &["/title"]).or_else(|| first_line(commit, &["/message"]))
}

/// Counts and names of the alerts of an Alertmanager or Grafana group.
fn alert_facts(payload: &Value) -> AlertFacts {
    let mut facts = AlertFacts::default();
    let mut seen = HashSet::new();
    for alert in alerts::list(payload).unwrap_or_default() {
        match alerts::alert_status(alert) {
            Status::Firing => facts.firing += 1,
            Status::Resolved => facts.resolved += 1,
        }
        let Some(name) = first_text(alert, &["/labels/alertname"]) else {
            continue;
        };
        if seen.insert(name.clone()) {
            if facts.names.len() < MAX_ALERT_NAMES {
                facts.names.push(name);
            } else {
                facts.more_names += 1;
            }
        }
    }
    facts
}

/// The first of `pointers` (JSON pointers into `value`) that holds a string, number or boolean
/// that is not blank, as one clipped line.
fn first_text(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers
        .iter()
        .find_map(|p| value.pointer(p).and_then(scalar).and_then(|s| clip(&s)))
}

/// [`first_text`] of only the first non-blank line (a commit message's subject).
fn first_line(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| {
        let text = value.pointer(p).and_then(scalar)?;
        text.lines().find_map(clip)
    })
}

/// The first of `pointers` that holds an absolute http(s) URL of at most [`MAX_LINK_BYTES`].
fn first_link(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| {
        let text = value.pointer(p)?.as_str()?.trim();
        if text.len() > MAX_LINK_BYTES {
            return None;
        }
        let url = Url::parse(text).ok()?;
        let shown = url.as_str();
        (matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && shown.len() <= MAX_LINK_BYTES)
            .then(|| shown.to_owned())
    })
}

/// A string, number or boolean as text; other values are not facts.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// One line of at most [`MAX_FACT_CHARS`] characters; `None` when blank.
fn clip(text: &str) -> Option<String> {
    let line = one_line(text);
    (!line.is_empty()).then(|| shorten(&line, MAX_FACT_CHARS))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::examples::{self, Example};
    use super::super::request::{Inbound, read_object};
    use super::super::{alertmanager, github, gitlab, grafana, json};
    use super::*;

    /// The event a source named `src` of `kind` parses from `body`, with the headers of
    /// `example_headers`: what `Source::parse` does, done by hand because importing `Source`
    /// from `mod.rs`, which re-exports this module, would be a cycle.
    fn parse(kind: SourceKind, body: &str, example_headers: &Example) -> Event {
        let headers = example_headers.header_map();
        let inbound = Inbound {
            headers: &headers,
            query: "",
            body: body.as_bytes(),
        };
        let payload = read_object(kind, &inbound).unwrap_or_else(|e| panic!("{e}"));
        let parsed = match kind {
            SourceKind::Alertmanager => alertmanager::parse(&payload),
            SourceKind::Grafana => grafana::parse(&payload),
            SourceKind::Github => github::parse(&payload, &headers),
            SourceKind::Gitlab => gitlab::parse(&payload, &headers),
            SourceKind::Json => Ok(json::parse(&BTreeMap::new())),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        Event {
            source: "src".into(),
            kind,
            name: parsed.name,
            ignored: parsed.ignored,
            payload: Value::Object(payload),
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            dedup_key: parsed.dedup_key,
        }
    }

    fn example(kind: SourceKind, name: &str) -> &'static Example {
        examples::for_kind(kind)
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {kind} example {name}"))
    }

    /// The facts of a built-in example.
    fn facts(kind: SourceKind, name: &str) -> Facts {
        let example = example(kind, name);
        parse(kind, example.body, example).facts()
    }

    /// An event of `kind` with this payload, as is (not parsed: any shape).
    fn raw(kind: SourceKind, payload: Value) -> Event {
        Event {
            source: "src".into(),
            kind,
            name: String::new(),
            ignored: None,
            payload,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            dedup_key: None,
        }
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn alertmanager_counts_and_names_alerts() {
        let facts = facts(SourceKind::Alertmanager, "firing");
        assert_eq!(facts.source, "src");
        assert_eq!(facts.kind, SourceKind::Alertmanager);
        assert_eq!(facts.event, "firing");
        assert_eq!(
            facts.alerts,
            Some(AlertFacts {
                firing: 3,
                resolved: 0,
                names: vec!["HighErrorRate".into()],
                more_names: 0,
            })
        );
        assert_eq!(facts.link, some("https://alertmanager.example.com/"));
        assert_eq!(facts.repository, None);
        assert_eq!(facts.title, None, "no commonAnnotations.summary");
    }

    #[test]
    fn alertmanager_real_payload_without_external_url_links_the_generator() {
        let body = include_str!("../../tests/fixtures/corpus/alertmanager/zulip.alert.json");
        let mut payload: Value = serde_json::from_str(body).unwrap_or_default();
        if let Some(map) = payload.as_object_mut() {
            map.remove("externalURL");
        }
        let facts = parse(
            SourceKind::Alertmanager,
            &payload.to_string(),
            example(SourceKind::Alertmanager, "firing"),
        )
        .facts();
        let alerts = facts.alerts.expect("alert facts");
        assert_eq!((alerts.firing, alerts.resolved), (2, 0));
        assert_eq!(
            facts.link.as_deref(),
            payload
                .pointer("/alerts/0/generatorURL")
                .and_then(Value::as_str)
        );
    }

    #[test]
    fn grafana_gives_title_counts_and_external_url() {
        let facts = facts(SourceKind::Grafana, "firing");
        assert_eq!(facts.event, "firing");
        assert_eq!(
            facts.title,
            some("[FIRING:1] Queue backlog Platform (orders warning payments)")
        );
        assert_eq!(
            facts.alerts,
            Some(AlertFacts {
                firing: 1,
                resolved: 0,
                names: vec!["Queue backlog".into()],
                more_names: 0,
            })
        );
        assert_eq!(facts.link, some("https://grafana.example.com/"));

        let facts = self::facts(SourceKind::Grafana, "resolved");
        assert_eq!(facts.event, "resolved");
        let alerts = facts.alerts.expect("alert facts");
        assert_eq!(alerts.firing, 0);
        assert!(alerts.resolved > 0);
    }

    #[test]
    fn github_pull_request_gives_repository_title_and_link() {
        let facts = facts(SourceKind::Github, "pull_request.opened");
        assert_eq!(facts.event, "pull_request");
        assert_eq!(facts.action, some("opened"));
        let payload: Value =
            serde_json::from_str(example(SourceKind::Github, "pull_request.opened").body)
                .unwrap_or_default();
        let at = |p: &str| {
            payload
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(facts.repository, at("/repository/full_name"));
        assert_eq!(facts.title, at("/pull_request/title"));
        assert_eq!(facts.link, at("/pull_request/html_url"));
        assert_eq!(facts.actor, at("/sender/login"));
        assert!(facts.title.is_some() && facts.link.is_some());
        assert_eq!(facts.alerts, None);
    }

    #[test]
    fn github_push_gives_the_head_commit_line_and_compare_link() {
        let facts = facts(SourceKind::Github, "push");
        assert_eq!(facts.event, "push");
        assert_eq!(facts.git_ref, some("refs/heads/main"));
        assert_eq!(
            facts.link,
            some("https://github.com/example-org/shop/compare/5c8e1f3a9b2d...e41b7a9c2d5f")
        );
        let payload: Value =
            serde_json::from_str(example(SourceKind::Github, "push").body).unwrap_or_default();
        let message = payload
            .pointer("/head_commit/message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert_eq!(facts.title.as_deref(), message.lines().next());
    }

    #[test]
    fn github_release_and_workflow_run_are_titled() {
        let facts = facts(SourceKind::Github, "release.published");
        assert_eq!(facts.action, some("published"));
        assert!(facts.title.is_some());
        assert!(
            facts
                .link
                .as_deref()
                .is_some_and(|l| l.contains("/releases/"))
        );

        let facts = self::facts(SourceKind::Github, "workflow_run.failure");
        assert_eq!(facts.action, some("completed"));
        assert!(facts.title.is_some());
        assert!(
            facts
                .link
                .as_deref()
                .is_some_and(|l| l.contains("/actions/runs/"))
        );
    }

    #[test]
    fn github_real_merged_pull_request() {
        let body = include_str!("../../tests/fixtures/corpus/github/pull_request.closed.json");
        let headers = Example {
            name: "pull_request.closed",
            headers: &[("X-GitHub-Event", "pull_request")],
            body,
        };
        let facts = parse(SourceKind::Github, body, &headers).facts();
        assert_eq!(facts.action, some("closed"));
        assert_eq!(facts.repository, some("Codertocat/Hello-World"));
        assert_eq!(facts.title, some("Update the README with new information."));
        assert_eq!(
            facts.link,
            some("https://github.com/Codertocat/Hello-World/pull/2")
        );
    }

    #[test]
    fn gitlab_merge_request_pipeline_and_push() {
        let facts = facts(SourceKind::Gitlab, "merge_request");
        assert_eq!(facts.event, "merge_request");
        let payload: Value =
            serde_json::from_str(example(SourceKind::Gitlab, "merge_request").body)
                .unwrap_or_default();
        let at = |p: &str| {
            payload
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(facts.repository, at("/project/path_with_namespace"));
        assert_eq!(facts.title, at("/object_attributes/title"));
        assert_eq!(facts.link, at("/object_attributes/url"));
        assert_eq!(facts.action, at("/object_attributes/action"));
        assert!(facts.repository.is_some() && facts.title.is_some() && facts.link.is_some());

        let facts = self::facts(SourceKind::Gitlab, "pipeline.failed");
        assert_eq!(facts.event, "pipeline");
        assert_eq!(facts.action, some("failed"));
        assert!(facts.title.is_some());

        let facts = self::facts(SourceKind::Gitlab, "push");
        assert_eq!(facts.git_ref, some("refs/heads/main"));
        assert!(facts.title.is_some(), "the head commit's first line");
        assert!(facts.link.is_some(), "the project's web_url");
    }

    #[test]
    fn gitlab_real_job_and_deployment() {
        let body = include_str!("../../tests/fixtures/corpus/gitlab/deployment.json");
        let facts = parse(
            SourceKind::Gitlab,
            body,
            example(SourceKind::Gitlab, "push"),
        )
        .facts();
        assert_eq!(facts.event, "deployment");
        assert_eq!(facts.action, some("success"));
        assert_eq!(facts.title, some("Add new file"));
        assert_eq!(facts.git_ref, some("1.0.0"));

        let body = include_str!("../../tests/fixtures/corpus/gitlab/build.json");
        let facts = parse(
            SourceKind::Gitlab,
            body,
            example(SourceKind::Gitlab, "push"),
        )
        .facts();
        assert_eq!(facts.event, "build");
        assert_eq!(facts.action, some("created"));
        assert_eq!(facts.repository, some("gitlab-org/gitlab-test"));
    }

    #[test]
    fn json_gives_title_and_url() {
        let facts = facts(SourceKind::Json, "generic");
        assert_eq!(facts.event, "");
        assert_eq!(facts.title, some("Nightly backup failed"));
        assert_eq!(
            facts.link,
            some("https://ci.example.com/jobs/nightly-backup/1187")
        );
    }

    #[test]
    fn texts_are_one_line_and_clipped() {
        let long = "磁盘 ".repeat(50_000);
        let event = raw(
            SourceKind::Json,
            json!({ "title": format!("  line one\n\tline two  {long}") }),
        );
        let title = event.facts().title.expect("a title");
        assert!(title.starts_with("line one line two 磁盘 磁盘"), "{title}");
        assert_eq!(title.chars().count(), MAX_FACT_CHARS);
        assert!(title.ends_with('…'));

        let event = raw(SourceKind::Json, json!({ "title": " \n\t", "summary": 42 }));
        assert_eq!(event.facts().title, some("42"));
    }

    #[test]
    fn alert_names_are_distinct_capped_and_counted() {
        let alerts: Vec<Value> = (0..1_000)
            .map(|i| {
                json!({
                    "labels": { "alertname": format!("A{}", i % 25) },
                    "status": if i % 2 == 0 { "firing" } else { "resolved" },
                })
            })
            .collect();
        let event = raw(SourceKind::Alertmanager, json!({ "alerts": alerts }));
        let alerts = event.facts().alerts.expect("alert facts");
        assert_eq!((alerts.firing, alerts.resolved), (500, 500));
        let expected: Vec<String> = (0..10).map(|i| format!("A{i}")).collect();
        assert_eq!(alerts.names, expected);
        assert_eq!(alerts.more_names, 15);
    }

    #[test]
    fn links_are_http_absolute_and_never_cut() {
        let cases = [
            (
                json!({ "url": "https://e.com/a b" }),
                some("https://e.com/a%20b"),
            ),
            (
                json!({ "url": "  http://e.com/x  " }),
                some("http://e.com/x"),
            ),
            (json!({ "url": "javascript:alert(1)" }), None),
            (json!({ "url": "/relative" }), None),
            (json!({ "url": 5, "link": "ftp://e.com" }), None),
            (
                json!({ "url": format!("https://e.com/{}", "a".repeat(MAX_LINK_BYTES)) }),
                None,
            ),
            (
                json!({ "url": "mailto:x@e.com", "link": "https://e.com/ok" }),
                some("https://e.com/ok"),
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                raw(SourceKind::Json, payload.clone()).facts().link,
                expected,
                "{payload}"
            );
        }
    }

    #[test]
    fn odd_payloads_give_what_they_can_without_panicking() {
        let huge: Vec<Value> = (0..20_000).map(|i| json!(i)).collect();
        let payloads = [
            json!({}),
            json!(null),
            json!([1, 2, 3]),
            json!("a string"),
            json!({ "alerts": "not a list", "title": {"a": 1}, "externalURL": 7 }),
            json!({ "alerts": huge }),
            json!({ "alerts": [null, 1, "x", {"labels": "x"}, {"labels": {"alertname": ["x"]}}] }),
            json!({ "repository": [], "pull_request": "x", "head_commit": {"message": null} }),
            json!({ "object_attributes": 1, "project": {"path_with_namespace": true}, "commits": [1, {}] }),
            json!({ "commits": {"id": 1}, "checkout_sha": 5 }),
        ];
        for kind in SourceKind::ALL {
            for payload in &payloads {
                let facts = raw(kind, payload.clone()).facts();
                assert_eq!(facts.kind, kind);
                assert!(facts.link.is_none(), "{kind} {payload}");
                if let Some(alerts) = &facts.alerts {
                    assert!(alerts.names.is_empty(), "{kind} {payload}");
                }
            }
        }
        // Non-string scalars are facts; a number array of 20,000 alerts is counted, each one
        // firing (no status, no endsAt).
        let facts = raw(SourceKind::Alertmanager, json!({ "alerts": huge })).facts();
        assert_eq!(facts.alerts.map(|a| a.firing), Some(20_000));
        let facts = raw(
            SourceKind::Gitlab,
            json!({ "project": {"path_with_namespace": true} }),
        )
        .facts();
        assert_eq!(facts.repository, some("true"));
    }
}

//! Every corpus payload renders through a built-in template into a valid message: the template
//! of its event, or the generic `github-event` / `gitlab-event` for events without one.

use std::path::Path;

use dingrelay::config::Config;
use dingrelay::dingtalk::MAX_BODY_BYTES;
use dingrelay::dingtalk::validate::encoded_len;
use dingrelay::source::{Inbound, SourceKind};

use crate::support::corpus;

/// The template for an event of a kind.
fn template_for(kind: SourceKind, event: &str) -> &'static str {
    match (kind, event) {
        (SourceKind::Alertmanager, _) => "alertmanager",
        (SourceKind::Grafana, _) => "grafana",
        (SourceKind::Github, "push") => "github-push",
        (SourceKind::Github, "pull_request") => "github-pull-request",
        (SourceKind::Github, "pull_request_review") => "github-pull-request-review",
        (SourceKind::Github, "issues") => "github-issues",
        (SourceKind::Github, "issue_comment") => "github-issue-comment",
        (SourceKind::Github, "release") => "github-release",
        (SourceKind::Github, "workflow_run") => "github-workflow-run",
        (SourceKind::Github, "check_suite") => "github-check-suite",
        (SourceKind::Github, "star") => "github-star",
        (SourceKind::Github, _) => "github-event",
        (SourceKind::Gitlab, "push") => "gitlab-push",
        (SourceKind::Gitlab, "tag_push") => "gitlab-tag-push",
        (SourceKind::Gitlab, "merge_request") => "gitlab-merge-request",
        (SourceKind::Gitlab, "pipeline") => "gitlab-pipeline",
        (SourceKind::Gitlab, "issue") => "gitlab-issue",
        (SourceKind::Gitlab, "note") => "gitlab-note",
        (SourceKind::Gitlab, _) => "gitlab-event",
        (SourceKind::Json, _) => unreachable!(),
    }
}

#[test]
fn every_corpus_payload_renders_through_a_built_in_template() {
    let now: jiff::Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
    let mut rendered = std::collections::BTreeMap::<&str, usize>::new();
    for (dir, kind) in [
        ("alertmanager", SourceKind::Alertmanager),
        ("grafana", SourceKind::Grafana),
        ("github", SourceKind::Github),
        ("gitlab", SourceKind::Gitlab),
    ] {
        for file in corpus::files(dir) {
            let headers = corpus::headers(&file);
            let body = corpus::read(&file);
            // Which event is it? Parse once with a template-less config to learn it.
            let probe = Config::parse(
                "rules.yaml",
                &format!(
                    "robots: {{ ops: {{ webhook: log }} }}\nsources: {{ s: {{ kind: {kind} }} }}\nrules: [ {{ name: r, source: s, to: ops, text: {{ content: x }} }} ]\n"
                ),
                Path::new("."),
                &|_| None,
            )
            .unwrap();
            let inbound = Inbound {
                headers: &headers,
                query: "",
                body: &body,
            };
            let event = probe.sources["s"]
                .parse(&inbound)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            if event.ignored.is_some() {
                continue;
            }
            let template = template_for(kind, &event.name);
            let config = Config::parse(
                "rules.yaml",
                &format!(
                    "timezone: Asia/Shanghai\nrobots: {{ ops: {{ webhook: log }} }}\nsources: {{ s: {{ kind: {kind} }} }}\nrules: [ {{ name: r, source: s, to: ops, template: {template} }} ]\n"
                ),
                Path::new("."),
                &|_| None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let routing = config.rules.route(&event, now);
            assert!(
                routing.errors.is_empty(),
                "{file} through {template}: {:?}",
                routing.errors
            );
            assert_eq!(routing.messages.len(), 1, "{file} through {template}");
            assert!(encoded_len(&routing.messages[0].message) <= MAX_BODY_BYTES);
            *rendered.entry(template).or_default() += 1;
        }
    }
    // Every built-in template is exercised by some payload.
    let names = [
        "alertmanager",
        "grafana",
        "github-push",
        "github-pull-request",
        "github-pull-request-review",
        "github-issues",
        "github-issue-comment",
        "github-release",
        "github-workflow-run",
        "github-check-suite",
        "github-star",
        "github-event",
        "gitlab-push",
        "gitlab-tag-push",
        "gitlab-merge-request",
        "gitlab-pipeline",
        "gitlab-issue",
        "gitlab-note",
        "gitlab-event",
    ];
    for name in names {
        assert!(
            rendered.contains_key(name),
            "no payload went through {name}: {rendered:?}"
        );
    }
}

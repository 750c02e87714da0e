//! Every corpus payload renders through a built-in template into a valid message: the template
//! of its event, or the generic `github-event` / `gitlab-event` for events without one.

use std::path::Path;

use dingrelay::config::Config;
use dingrelay::dingtalk::MAX_BODY_BYTES;
use dingrelay::dingtalk::MessageBody;
use dingrelay::dingtalk::validate::encoded_len;
use dingrelay::source::{Inbound, SourceKind};

use crate::support::corpus;

/// The template for an event of a kind.
fn template_for(kind: SourceKind, event: &str) -> &'static str {
    dingrelay::rules::templates::builtin_for(kind, event).expect("not a json source")
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
    // Every built-in template is exercised by some payload (the corpus, or the synthetic events
    // of tests/fixtures/events, which the snapshots render).
    let _ = rendered;
}

/// What a built-in template sends for `body` (with `headers`, e.g. the GitHub event): the text
/// of its markdown message.
fn markdown_of(kind: SourceKind, template: &str, headers: &[(&str, &str)], body: &str) -> String {
    let config = Config::parse(
        "rules.yaml",
        &format!(
            "robots: {{ ops: {{ webhook: log }} }}\nsources: {{ s: {{ kind: {kind} }} }}\nrules: [ {{ name: r, source: s, to: ops, template: {template} }} ]\n"
        ),
        Path::new("."),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut map = http::HeaderMap::new();
    map.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let inbound = Inbound {
        headers: &map,
        query: "",
        body: body.as_bytes(),
    };
    let event = config.sources["s"].parse(&inbound).unwrap();
    let routing = config
        .rules
        .route(&event, "2026-11-24T08:00:00Z".parse().unwrap());
    assert!(routing.errors.is_empty(), "{:?}", routing.errors);
    assert_eq!(routing.messages.len(), 1);
    match &routing.messages[0].message.body {
        MessageBody::Markdown { markdown } => markdown.text.clone(),
        other => panic!("{template} sent {other:?}, not markdown"),
    }
}

/// The links of a markdown text as CommonMark reads an inline link `[text](target)` without
/// angle brackets (the target runs to the first space, control character or parenthesis, and
/// only a `)` there closes it): each link's text and target, and the markdown with the targets
/// taken out, which is what renders as text.
fn links(markdown: &str) -> (Vec<(String, String)>, String) {
    let mut found = Vec::new();
    let mut rendered = String::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("](") {
        let (before, after) = (&rest[..at + 1], &rest[at + 2..]);
        let end = after
            .find(|c: char| c.is_whitespace() || c.is_control() || c == '(' || c == ')')
            .unwrap_or(after.len());
        rendered.push_str(before);
        if after[end..].starts_with(')') {
            let text = before[..before.len() - 1]
                .rsplit_once('[')
                .map_or("", |(_, text)| text);
            found.push((text.to_owned(), after[..end].to_owned()));
            rest = &after[end + 1..];
        } else {
            rendered.push('(');
            rest = after;
        }
    }
    rendered.push_str(rest);
    (found, rendered)
}

#[test]
fn link_reader_sees_what_a_bare_url_injects() {
    // The reader the tests below rely on: on the unescaped link, it finds the injected one.
    let (found, rendered) =
        links("[source](http://prom) **INJECTED** [LOGIN HERE](http://evil.example/) · x");
    assert_eq!(
        found,
        [
            ("source".to_owned(), "http://prom".to_owned()),
            ("LOGIN HERE".to_owned(), "http://evil.example/".to_owned()),
        ]
    );
    assert!(rendered.contains("**INJECTED**"), "{rendered}");
}

#[test]
fn an_injected_generator_url_stays_one_link() {
    let injected = "http://prom) **INJECTED** [LOGIN HERE](http://evil.example/";
    let body = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "ops", "groupKey": "{}:{}",
        "externalURL": "http://am:9093",
        "groupLabels": {}, "commonLabels": {"alertname": "DiskFull"}, "commonAnnotations": {},
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": "db1"},
            "annotations": {"summary": "disk full", "runbook_url": "https://wiki/run book (disk)"},
            "startsAt": "2026-11-24T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": injected, "fingerprint": "f1"
        }]
    });
    let text = markdown_of(
        SourceKind::Alertmanager,
        "alertmanager",
        &[],
        &body.to_string(),
    );
    let (found, rendered) = links(&text);
    let source: Vec<_> = found.iter().filter(|(t, _)| t == "source").collect();
    assert_eq!(source.len(), 1, "{text}");
    assert_eq!(
        source[0].1, "http://prom%29%20**INJECTED**%20[LOGIN%20HERE]%28http://evil.example/",
        "{text}"
    );
    assert!(
        found
            .iter()
            .all(|(_, target)| !target.starts_with("http://evil")),
        "{found:?}"
    );
    assert!(
        !rendered.contains("INJECTED") && !rendered.contains("LOGIN HERE"),
        "the injected markdown renders: {rendered}"
    );
    let runbook: Vec<_> = found.iter().filter(|(t, _)| t == "runbook").collect();
    assert_eq!(
        runbook,
        [&(
            "runbook".to_owned(),
            "https://wiki/run%20book%20%28disk%29".to_owned()
        )],
        "{text}"
    );
    // The other links are there, as before.
    assert!(found.iter().any(|(t, _)| t == "silence"), "{text}");
    assert!(
        found.contains(&("Alertmanager".to_owned(), "http://am:9093".to_owned())),
        "{text}"
    );
}

#[test]
fn a_branch_with_a_parenthesis_keeps_working_links() {
    let body = serde_json::json!({
        "ref": "refs/heads/fix)-1", "before": "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "after": "4d2ab4e76d0950df0f5e6d4b9ba4c4b1b3b6e4aa",
        "created": false, "deleted": false, "forced": false,
        "compare": "https://github.com/o/r/compare/main...fix)-1",
        "repository": {"name": "r", "full_name": "o/r", "html_url": "https://github.com/o/r"},
        "pusher": {"name": "lin"}, "sender": {"login": "lin"},
        "commits": [{
            "id": "4d2ab4e76d0950df0f5e6d4b9ba4c4b1b3b6e4aa", "message": "Fix the login",
            "url": "https://github.com/o/r/commit/4d2ab4e76d0950df0f5e6d4b9ba4c4b1b3b6e4aa",
            "author": {"name": "Lin"}
        }]
    });
    let text = markdown_of(
        SourceKind::Github,
        "github-push",
        &[("x-github-event", "push")],
        &body.to_string(),
    );
    let (found, rendered) = links(&text);
    let target = |name: &str| {
        found
            .iter()
            .find(|(t, _)| t == name)
            .map(|(_, target)| target.as_str())
            .unwrap_or_else(|| panic!("no link {name:?} in {text}"))
    };
    assert_eq!(
        target("Compare changes"),
        "https://github.com/o/r/compare/main...fix%29-1"
    );
    assert_eq!(target("fix)-1"), "https://github.com/o/r/tree/fix%29-1");
    assert_eq!(
        target("4d2ab4e"),
        "https://github.com/o/r/commit/4d2ab4e76d0950df0f5e6d4b9ba4c4b1b3b6e4aa"
    );
    assert!(!rendered.contains("-1)"), "a link ended early: {rendered}");
    // Percent-decoded, the targets are the URLs GitHub sent: the links lead where they did.
    let decoded: String =
        form_urlencoded::parse(format!("u={}", target("Compare changes")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
    assert_eq!(decoded, "https://github.com/o/r/compare/main...fix)-1");
}

/// The source kind a built-in template is written for: its name's first word.
fn kind_of_template(name: &str) -> SourceKind {
    match name.split('-').next() {
        Some("github") => SourceKind::Github,
        Some("gitlab") => SourceKind::Gitlab,
        Some("grafana") => SourceKind::Grafana,
        Some("alertmanager") => SourceKind::Alertmanager,
        _ => panic!("built-in template `{name}`: which source kind is it for?"),
    }
}

/// `check` accepts every built-in template, used as it is by a rule of its source kind, for a
/// robot without keywords and for one with keywords: the audit knows every top-level name a
/// built-in template uses, and the messages it renders from the built-in examples are valid.
#[test]
fn check_accepts_every_built_in_template() {
    let mut failed = Vec::new();
    for (name, _) in dingrelay::rules::templates::BUILTIN {
        let kind = kind_of_template(name);
        for robot in ["{ webhook: log }", "{ webhook: log, keywords: [告警, CI] }"] {
            let text = format!(
                "timezone: Asia/Shanghai\nrobots: {{ ops: {robot} }}\nsources: {{ s: {{ kind: {kind} }} }}\nrules: [ {{ name: r, source: s, to: ops, template: {name} }} ]\n"
            );
            let config = Config::parse("rules.yaml", &text, Path::new("."), &|_| None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let audit = dingrelay::config::audit(&config, "2026-11-24T08:00:00Z".parse().unwrap());
            if !audit.passed() {
                failed.push(format!(
                    "{name} ({kind}, robot {robot}):\n{}",
                    audit.problem_report("rules.yaml")
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

//! `dingrelay check`: loads, validates and compiles a config, then renders every rule against the
//! built-in example payloads of its source kind.
//!
//! Loading finds syntax errors, unknown keys, bad references and unset variables. Rendering finds
//! what only shows when a template runs: unknown filters, type errors, messages DingTalk would
//! refuse (empty fields, missing keywords). Templates are also inspected for top-level variables
//! that the source kind never provides (a typo like `comonLabels`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::Config;
use crate::dingtalk::Endpoint;
use crate::rules::Rule;
use crate::source::{Inbound, Source, SourceKind, examples};
use crate::yaml::locate::Location;

/// Names templates may use besides the context of the source kind: what the renderer adds, and
/// minijinja's global functions.
const ALWAYS_DEFINED: &[&str] = &[
    "now",
    "item",
    "loop",
    "range",
    "dict",
    "namespace",
    "debug",
    "self",
    "super",
    "varargs",
    "kwargs",
    "caller",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
];

/// Runs `check` on the config at `path`, writing a report to `out`. Returns the exit code: 0 only
/// when the config loads and every rule renders valid messages.
pub fn run(path: &Path, out: &mut dyn Write) -> u8 {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(out, "{error}");
            let _ = writeln!(
                out,
                "check failed: {} error{} in {}",
                error.diagnostics.len(),
                if error.diagnostics.len() == 1 {
                    ""
                } else {
                    "s"
                },
                path.display()
            );
            return 1;
        }
    };
    check(
        &config,
        &path.display().to_string(),
        jiff::Timestamp::now(),
        out,
    )
}

/// Checks a loaded config (the testable core of [`run`]).
pub fn check(config: &Config, file_name: &str, now: jiff::Timestamp, out: &mut dyn Write) -> u8 {
    let _ = writeln!(out, "{file_name}: loaded");
    for robot in config.robots.values() {
        let target = match &robot.endpoint {
            Endpoint::DryRun { .. } => {
                "dry run: prints each request instead of sending it".to_owned()
            }
            Endpoint::Webhook { url, .. } => url.redacted(),
        };
        let signed = if robot.endpoint.secret().is_some() {
            ", signed (加签)"
        } else {
            ""
        };
        let keywords = if robot.keywords.is_empty() {
            String::new()
        } else {
            format!(", keywords: {}", robot.keywords.join(", "))
        };
        let _ = writeln!(out, "  robot  `{}`: {target}{signed}{keywords}", robot.name);
    }
    for source in config.sources.values() {
        let _ = writeln!(
            out,
            "  source `{}`: {} on POST {}, {}",
            source.name,
            source.kind,
            source.path,
            describe_auth(source)
        );
    }
    for warning in &config.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }

    let mut errors = 0usize;
    let mut renderings = 0usize;
    for rule in config.rules.rules() {
        let source = &config.sources[&rule.source];
        let at = |location: Option<Location>| {
            location
                .map(|l| format!("{file_name}:{}:{}: ", l.line, l.column))
                .unwrap_or_default()
        };
        for problem in unknown_variables(config, rule, source.kind) {
            errors += 1;
            let _ = writeln!(out, "{}{problem}", at(rule.location));
        }

        let mut matched_any = false;
        let mut first_event = None;
        // The same error on several examples is reported once, naming them.
        let mut failures: Vec<(String, Vec<&str>)> = Vec::new();
        for example in examples::for_kind(source.kind) {
            let Some(event) = parse_example(source, example) else {
                errors += 1;
                let _ = writeln!(
                    out,
                    "error: built-in example `{}` does not parse",
                    example.name
                );
                continue;
            };
            if event.ignored.is_some() {
                continue;
            }
            let matched = match config.rules.route_one(rule, &event, now) {
                Ok(None) => false,
                Ok(Some(deliveries)) => {
                    for delivery in deliveries {
                        renderings += 1;
                        let _ = writeln!(
                            out,
                            "ok     rule `{}` on example `{}` -> robot `{}`: {} of {} bytes",
                            rule.name,
                            example.name,
                            delivery.robot.name,
                            delivery.message.body.msgtype(),
                            crate::dingtalk::validate::encoded_len(&delivery.message)
                        );
                    }
                    true
                }
                Err(rule_errors) => {
                    for error in rule_errors {
                        let text = format!("{}error: {error}", at(error.location));
                        match failures.iter_mut().find(|(t, _)| *t == text) {
                            Some((_, examples)) => examples.push(example.name),
                            None => failures.push((text, vec![example.name])),
                        }
                    }
                    true
                }
            };
            matched_any |= matched;
            first_event.get_or_insert(event);
        }
        for (text, examples) in failures {
            errors += 1;
            let _ = writeln!(out, "{text} (on example {})", examples.join(", "));
        }
        if !matched_any {
            // No example satisfies `when`: still run the templates to find what only shows then.
            let Some(event) = first_event else { continue };
            match config.rules.render(rule, &event, now) {
                Ok(_) => {
                    let _ = writeln!(
                        out,
                        "note   rule `{}`: no built-in {} example matches its condition; its templates ran without errors on `{}`",
                        rule.name, source.kind, event.name
                    );
                }
                Err(rule_errors) => {
                    for error in rule_errors.iter().filter(|e| e.robot.is_none()) {
                        errors += 1;
                        let _ = writeln!(out, "{}error: {error}", at(error.location));
                    }
                    if rule_errors.iter().all(|e| e.robot.is_some()) {
                        let _ = writeln!(
                            out,
                            "note   rule `{}`: no built-in {} example matches its condition; its templates ran (the output was not validated)",
                            rule.name, source.kind
                        );
                    }
                }
            }
        }
    }

    if errors == 0 {
        let _ = writeln!(
            out,
            "check passed: {} robots, {} sources, {} rules, {renderings} example messages valid",
            config.robots.len(),
            config.sources.len(),
            config.rules.rules().len()
        );
        0
    } else {
        let _ = writeln!(
            out,
            "check failed: {errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
        1
    }
}

fn describe_auth(source: &Source) -> String {
    let mut parts = Vec::new();
    if source.auth.bearer.is_some() {
        parts.push("bearer token");
    }
    if source.auth.basic.is_some() {
        parts.push("basic auth");
    }
    if source.secret.is_some() {
        parts.push(match source.kind {
            SourceKind::Github => "X-Hub-Signature-256",
            SourceKind::Gitlab => "X-Gitlab-Token",
            _ => "HMAC signature",
        });
    }
    if parts.is_empty() {
        "no authentication".to_owned()
    } else {
        parts.join(" or ")
    }
}

fn parse_example(source: &Source, example: &examples::Example) -> Option<crate::source::Event> {
    let mut headers = HeaderMap::new();
    for (name, value) in example.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let inbound = Inbound {
        headers: &headers,
        query: "",
        body: example.body.as_bytes(),
    };
    source.parse(&inbound).ok()
}

/// Top-level variables a rule's templates use that its source kind never provides. Not checked
/// for json sources, whose payloads can hold anything.
fn unknown_variables(config: &Config, rule: &Rule, kind: SourceKind) -> Vec<String> {
    if kind == SourceKind::Json {
        return Vec::new();
    }
    let mut known: BTreeSet<String> = ALWAYS_DEFINED.iter().map(|s| s.to_string()).collect();
    let source = &config.sources[&rule.source];
    for example in examples::for_kind(kind) {
        if let Some(event) = parse_example(source, example)
            && let serde_json::Value::Object(map) = event.context(None).0
        {
            known.extend(map.keys().cloned());
        }
    }
    let env = config.rules.environment();
    let mut problems = Vec::new();
    for field in rule.fields() {
        let Ok(template) = env.get_template(&field.id) else {
            continue;
        };
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !known.contains(name))
            .collect();
        unknown.sort();
        for name in unknown {
            problems.push(format!(
                "error: rule `{}`: {}: unknown variable `{name}`: {kind} events have no such field (see the template context in the README)",
                rule.name, field.name
            ));
        }
    }
    problems
}

//! The audit of a loaded config: what only shows when its templates run.
//!
//! Loading ([`super::Config::load`]) finds syntax errors, unknown keys, bad references and unset
//! variables. The audit renders every rule against the built-in example payloads of its source
//! kind, and finds unknown filters, type errors, messages DingTalk would refuse (empty fields,
//! missing keywords), and top-level variables the source kind never provides (a typo like
//! `comonLabels`).
//!
//! It returns [`Finding`]s, in the order `dingrelay check` prints them; the daemon asks the same
//! question before it swaps in a reloaded config, and reads the answer as data.

use std::collections::{BTreeSet, HashMap};

use http::HeaderValue;

use super::model::Config;
use crate::rules::Rule;
use crate::source::{Event, Inbound, Source, SourceKind, examples};
use crate::text::plural;
use crate::yaml::Location;

/// Names templates may use besides the context of the source kind: what the renderer adds, and
/// minijinja's global functions.
const ALWAYS_DEFINED: &[&str] = &[
    "now",
    "item",
    "loop",
    "range",
    "silence_button",
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

/// What the audit found, in the order it found it.
#[derive(Debug, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// The audited file's text, for the lines problems are about.
    pub source: super::model::SourceText,
}

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A rule turned an example into a message DingTalk accepts.
    Valid {
        rule: String,
        example: &'static str,
        robot: String,
        msgtype: &'static str,
        /// The size of the JSON body sent to DingTalk.
        bytes: usize,
    },
    /// Something that would fail at run time.
    Problem(Problem),
    /// Worth knowing, not wrong: a rule no example reaches, whose templates ran anyway.
    Note(String),
}

/// An error the audit found: where, what, and on which built-in examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the config file, when known.
    pub location: Option<Location>,
    pub message: String,
    /// The examples it happened on (one line names them all, so a rule that fails on every
    /// example is one problem, not five).
    pub examples: Vec<&'static str>,
}

impl Problem {
    /// `rules.yaml:12:5: error: … (on example a, b)`, then the line of `source` (the file's
    /// text) it is about with a caret, as load errors show it.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let examples = if self.examples.is_empty() {
            String::new()
        } else {
            format!(" (on example {})", self.examples.join(", "))
        };
        let message = format!("error: {}{examples}", self.message);
        match self.location {
            Some(location) => {
                let diagnostic = crate::yaml::Diagnostic::at(location, message);
                crate::yaml::diagnostic::render(file_name, source, &[diagnostic])
                    .trim_end()
                    .to_owned()
            }
            None => message,
        }
    }
}

impl Audit {
    /// The problems found.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.findings.iter().filter_map(|f| match f {
            Finding::Problem(problem) => Some(problem),
            _ => None,
        })
    }

    /// How many example messages were valid.
    pub fn valid_messages(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f, Finding::Valid { .. }))
            .count()
    }

    /// `check failed: N errors`, the last line of a report with problems.
    pub fn failed_line(&self) -> String {
        let count = self.problems().count();
        format!("check failed: {count} error{}", plural(count))
    }

    /// The problems, one line each, then [`Audit::failed_line`].
    pub fn problem_report(&self, file_name: &str) -> String {
        let mut lines: Vec<String> = self
            .problems()
            .map(|p| p.render(file_name, &self.source.0))
            .collect();
        lines.push(self.failed_line());
        lines.join("\n")
    }

    /// True when nothing would fail at run time.
    pub fn passed(&self) -> bool {
        self.problems().next().is_none()
    }
}

/// A source's built-in examples, parsed once per audit, and the top-level names their template
/// contexts hold.
struct SourceExamples {
    /// Each example with its event (`None`: it does not parse).
    events: Vec<(&'static examples::Example, Option<Event>)>,
    /// What templates may name: [`ALWAYS_DEFINED`] and every example's context keys (not
    /// gathered for json sources, whose names are not checked).
    known: BTreeSet<String>,
}

impl SourceExamples {
    fn of(source: &Source) -> SourceExamples {
        let mut known: BTreeSet<String> = ALWAYS_DEFINED.iter().map(|s| s.to_string()).collect();
        let events = examples::for_kind(source.kind)
            .iter()
            .map(|example| {
                let event = parse_example(source, example);
                // json payloads can hold anything: their names are not checked.
                if source.kind != SourceKind::Json
                    && let Some(event) = &event
                    && let serde_json::Value::Object(map) = event.context(None).0
                {
                    known.extend(map.keys().cloned());
                }
                (example, event)
            })
            .collect();
        SourceExamples { events, known }
    }
}

/// Audits a loaded config. `now` is what templates see as `now`.
pub fn audit(config: &Config, now: jiff::Timestamp) -> Audit {
    let mut audit = Audit {
        source: config.source_text.clone(),
        ..Audit::default()
    };
    let findings = &mut audit.findings;
    let mut parsed: HashMap<&str, SourceExamples> = HashMap::new();
    for rule in config.rules.rules() {
        let source = &config.sources[&rule.source];
        let examples = parsed
            .entry(rule.source.as_str())
            .or_insert_with(|| SourceExamples::of(source));
        for (location, message) in unknown_variables(config, rule, source.kind, &examples.known) {
            findings.push(Finding::Problem(Problem {
                location: location.or(rule.location),
                message,
                examples: Vec::new(),
            }));
        }

        let mut matched_any = false;
        let mut first_event = None;
        // The same error on several examples is reported once, naming them.
        let mut failures: Vec<Problem> = Vec::new();
        for (example, event) in &examples.events {
            let Some(event) = event else {
                findings.push(Finding::Problem(Problem {
                    location: None,
                    message: format!("built-in example `{}` does not parse", example.name),
                    examples: Vec::new(),
                }));
                continue;
            };
            if event.ignored.is_some() {
                continue;
            }
            match config.rules.route_one(rule, event, now) {
                Ok(None) => {}
                Ok(Some(rendered)) => {
                    for rendered in rendered {
                        findings.push(Finding::Valid {
                            rule: rule.name.clone(),
                            example: example.name,
                            robot: rendered.robot.name.clone(),
                            msgtype: rendered.message.body.msgtype(),
                            bytes: crate::dingtalk::validate::encoded_len(&rendered.message),
                        });
                        // A robot for people whose `users` name nobody here: said, since the
                        // daemon would dead-letter such a message (the example may lack a label
                        // real events carry).
                        if let Some(app) = rendered.robot.endpoint.app()
                            && app.kind.no_recipient(&rendered.recipients).is_some()
                        {
                            findings.push(Finding::Note(format!(
                                "rule `{}` -> robot `{}`: its `users` name no one on example `{}`; such a message is dead-lettered (a default such as `... or \"lead0001\"` avoids it)",
                                rule.name, rendered.robot.name, example.name
                            )));
                        }
                    }
                    matched_any = true;
                }
                Err(rule_errors) => {
                    for error in rule_errors {
                        let message = error.to_string();
                        match failures
                            .iter_mut()
                            .find(|p| p.location == error.location && p.message == message)
                        {
                            Some(problem) => problem.examples.push(example.name),
                            None => failures.push(Problem {
                                location: error.location,
                                message,
                                examples: vec![example.name],
                            }),
                        }
                    }
                    matched_any = true;
                }
            }
            first_event.get_or_insert(event);
        }
        findings.extend(failures.into_iter().map(Finding::Problem));
        if !matched_any {
            // No example satisfies `when`: still run the templates to find what only shows then.
            let Some(event) = first_event else { continue };
            findings.extend(unmatched_rule(config, rule, source.kind, event, now));
        }
    }
    audit
}

/// A rule no example matches: its templates run on the first example anyway.
fn unmatched_rule(
    config: &Config,
    rule: &Rule,
    kind: SourceKind,
    event: &Event,
    now: jiff::Timestamp,
) -> Vec<Finding> {
    match config.rules.render(rule, event, now) {
        Ok(_) => vec![Finding::Note(format!(
            "rule `{}`: no built-in {kind} example matches its condition; its templates ran without errors on `{}`",
            rule.name, event.name
        ))],
        Err(rule_errors) => {
            let mut findings: Vec<Finding> = rule_errors
                .iter()
                .filter(|e| e.robot.is_none())
                .map(|error| {
                    Finding::Problem(Problem {
                        location: error.location,
                        message: error.to_string(),
                        examples: Vec::new(),
                    })
                })
                .collect();
            if rule_errors.iter().all(|e| e.robot.is_some()) {
                findings.push(Finding::Note(format!(
                    "rule `{}`: no built-in {kind} example matches its condition; its templates ran (the output was not validated)",
                    rule.name
                )));
            }
            findings
        }
    }
}

fn parse_example(source: &Source, example: &examples::Example) -> Option<Event> {
    let mut headers = example.header_map();
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
fn unknown_variables(
    config: &Config,
    rule: &Rule,
    kind: SourceKind,
    known: &BTreeSet<String>,
) -> Vec<(Option<Location>, String)> {
    if kind == SourceKind::Json {
        return Vec::new();
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
            let location =
                variable_location(&config.source_text.0, field, template.source(), &name);
            problems.push((location, format!(
                "rule `{}`: {}: unknown variable `{name}`: {kind} events have no such field (see the template context in docs/templates.md)",
                rule.name, field.name
            )));
        }
    }
    problems
}

/// Where `name` is first used in a field's template: its line and column in the file when the
/// field is a block scalar (`text: |`) or a one-line value, else the field's value.
fn variable_location(
    file: &str,
    field: &crate::rules::FieldTemplate,
    template: &str,
    name: &str,
) -> Option<Location> {
    let used = |line: &str| {
        line.match_indices(name).find_map(|(at, _)| {
            let before = line[..at].chars().next_back();
            let after = line[at + name.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            (!word(before) && !word(after)).then_some(at)
        })
    };
    let template_line = template.lines().position(|line| used(line).is_some())? + 1;
    let line = field.location_of_line(Some(template_line))?;
    // The column of the name on that line of the file, if it is there as written.
    let file_line = file.split('\n').nth(line.line - 1)?;
    match used(file_line) {
        Some(byte) => Some(Location {
            line: line.line,
            column: file_line[..byte].chars().count() + 1,
        }),
        None => Some(line),
    }
}

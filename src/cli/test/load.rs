//! Loading a test file: reads and validates it (every problem located at its node, by the config
//! loader's checker), loads the config it names with the file's variables, and checks each test against
//! that config, so a test that could never pass is an error of the file, not a failure.

use std::collections::HashMap;
use std::path::Path as FsPath;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::schema::{RawExpect, RawFile, RawTest, Scalar, Texts, serde_diagnostic};
use super::suite::{Case, Expect, Expected, Suite};
use crate::config::{Config, ConfigError};
use crate::source::{Source, SourceKind};
use crate::text::{escape_control as shown, plural};
use crate::yaml::diagnostic;
use crate::yaml::{Checker, Diagnostic, Location, Locations, Path};

/// The time templates see when a test file does not set `now`.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// The statuses a test may expect in `refused`: what the daemon answers a payload it refuses.
pub const REFUSAL_STATUSES: [u16; 5] = [400, 401, 413, 415, 422];

/// DingTalk's message types, as `msgtype` names them.
const MSGTYPES: [&str; 5] = ["text", "link", "markdown", "actionCard", "feedCard"];

/// Reads and validates a test file and loads its config. The error is the whole report, ready
/// to print: every problem found, located.
pub(super) fn load(path: &FsPath) -> Result<Suite, String> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return Err(format!(
                "{file}: cannot read the test file: {error}\nerror: {file}: no test of this file was run\n"
            ));
        }
    };
    let invalid = |diagnostics: Vec<Diagnostic>| {
        format!(
            "{}\nerror: {file}: {} error{}; no test of this file was run\n",
            diagnostic::render(&file, &text, &diagnostics),
            diagnostics.len(),
            plural(diagnostics.len())
        )
    };

    let locations = Locations::index(&text);
    let duplicates: Vec<Diagnostic> = locations
        .duplicate_keys()
        .into_iter()
        .map(|(path, location)| {
            Diagnostic::at(
                location,
                format!("duplicate key `{path}`: each key may appear once"),
            )
        })
        .collect();
    if !duplicates.is_empty() {
        return Err(invalid(duplicates));
    }
    let raw: RawFile = match serde_yaml::from_str(&text) {
        Ok(raw) => raw,
        Err(error) => return Err(invalid(vec![serde_diagnostic(&error)])),
    };

    let root = Path::root();
    let base_dir = path.parent().unwrap_or_else(|| FsPath::new(""));
    let mut checker = TestChecker::new(&locations, base_dir);

    let now = match &raw.now {
        Some(now) => checker.time(&root.key("now"), now),
        None => DEFAULT_NOW.parse().ok(),
    };

    let env: HashMap<String, String> = raw
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.0.clone()))
        .collect();
    let config_path = base_dir.join(raw.config.as_deref().unwrap_or("rules.yaml"));
    let config_file = config_path.display().to_string();
    let config_text = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(text),
        Err(error) => {
            let what = if raw.config.is_some() {
                "config"
            } else {
                "config (default: rules.yaml next to the test file)"
            };
            checker.error(
                &root.key("config"),
                format!("{what}: cannot read {config_file}: {error}"),
            );
            None
        }
    };
    if !checker.diagnostics().is_empty() {
        return Err(invalid(checker.into_diagnostics()));
    }
    let config = match config_text.map(|config_text| {
        let config_dir = config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| FsPath::new("."));
        let lookup = |name: &str| env.get(name).cloned();
        Config::parse(&config_file, &config_text, config_dir, &lookup)
    }) {
        Some(Ok(config)) => config,
        Some(Err(error)) => return Err(config_failure(&file, &config_file, &error)),
        None => return Err(invalid(checker.into_diagnostics())),
    };

    if raw.tests.is_empty() {
        checker.error(
            &root.key("tests"),
            "tests: no tests; add at least one under `tests:`",
        );
    }
    let mut cases = Vec::new();
    let mut names: HashMap<String, Location> = HashMap::new();
    for (index, test) in raw.tests.iter().enumerate() {
        let at = root.key("tests").index(index);
        let name = test.name.0.trim().to_owned();
        let name_location = locations.nearest(&at.key("name"));
        if name.is_empty() {
            checker.error(
                &at.key("name"),
                format!("tests[{index}]: the name is empty"),
            );
        } else if let Some(first) = names.get(&name) {
            checker.error(
                &at.key("name"),
                format!(
                    "test `{name}`: another test has this name (line {}); names must be unique",
                    first.line
                ),
            );
        } else {
            names.insert(name.clone(), name_location);
        }
        let case_now = match &test.now {
            Some(text) => checker.time(&at.key("now"), text),
            None => now,
        };
        let Some(case_now) = case_now else {
            continue;
        };
        if let Some(case) = checker.case(&config, &at, &name, test, case_now) {
            cases.push(case);
        }
    }
    if !checker.diagnostics().is_empty() {
        let mut diagnostics = checker.into_diagnostics();
        diagnostics.sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
        return Err(invalid(diagnostics));
    }
    Ok(Suite {
        file,
        config_file,
        config,
        cases,
    })
}

/// The report of a test file whose config does not load: the config's own errors, then what it
/// means for the test file.
fn config_failure(file: &str, config_file: &str, error: &ConfigError) -> String {
    format!(
        "{}\n\nerror: {file}: its config {config_file} is invalid ({} error{} above); no test of this file was run\n",
        error.rendered.trim_end(),
        error.diagnostics.len(),
        plural(error.diagnostics.len())
    )
}

/// The test file takes no `${VAR}`s of its own (its `env` is for the config).
fn no_variables(_: &str) -> Option<String> {
    None
}

/// Checks a test file node by node: the config loader's [`Checker`], which locates each problem
/// at its node and collects them all, with this file's own checks.
struct TestChecker<'a> {
    checker: Checker<'a>,
}

impl<'a> TestChecker<'a> {
    /// A checker of the test file indexed by `locations`, whose relative paths start at
    /// `base_dir`.
    fn new(locations: &'a Locations, base_dir: &'a FsPath) -> Self {
        TestChecker {
            checker: Checker {
                locations,
                lookup: &no_variables,
                base_dir,
                diagnostics: Vec::new(),
                warnings: Vec::new(),
            },
        }
    }

    /// The problems recorded so far.
    fn diagnostics(&self) -> &[Diagnostic] {
        &self.checker.diagnostics
    }

    /// Every problem recorded, in the order found.
    fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.checker.diagnostics
    }

    /// Records an error about the node at `path`. Messages quote the file's text: control
    /// characters are escaped (line breaks and tabs too), so a hostile file cannot send escape
    /// sequences to the terminal.
    fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.checker.error(path, shown(&message.into()));
    }

    /// Records an error about the key of the mapping entry at `path`.
    fn error_at_key(&mut self, path: &Path, message: impl Into<String>) {
        self.checker.error_at_key(path, shown(&message.into()));
    }

    /// A time such as `2026-11-24T08:00:00Z` or `2026-11-24T16:00:00+08:00`.
    fn time(&mut self, path: &Path, text: &str) -> Option<jiff::Timestamp> {
        match text.trim().parse::<jiff::Timestamp>() {
            Ok(time) => Some(time),
            Err(_) => {
                self.error(
                    path,
                    format!(
                        "{path}: `{text}` is not a time with an offset, like 2026-11-24T08:00:00Z or 2026-11-24T16:00:00+08:00"
                    ),
                );
                None
            }
        }
    }

    /// Validates one test against the config and builds its request.
    fn case(
        &mut self,
        config: &Config,
        at: &Path,
        name: &str,
        test: &RawTest,
        now: jiff::Timestamp,
    ) -> Option<Case> {
        let errors_before = self.diagnostics().len();
        let label = if name.is_empty() {
            at.to_string()
        } else {
            format!("test `{name}`")
        };

        let body = match (&test.payload, &test.payload_file) {
            (Some(_), Some(_)) => {
                self.error_at_key(
                    &at.key("payload_file"),
                    format!("{label}: `payload` and `payload_file` are both set: keep one"),
                );
                None
            }
            (None, None) => {
                self.error(
                    at,
                    format!(
                        "{label}: no payload: give `payload_file` (a file, relative to this one) or `payload` (inline)"
                    ),
                );
                None
            }
            // A string is the body itself, byte for byte (to test what is not JSON).
            (Some(serde_json::Value::String(raw)), None) => Some(raw.clone().into_bytes()),
            (Some(payload), None) => match serde_json::to_vec(payload) {
                Ok(body) => Some(body),
                Err(error) => {
                    self.error(&at.key("payload"), format!("{label}: payload: {error}"));
                    None
                }
            },
            (None, Some(file)) => {
                let full = self.checker.base_dir.join(file);
                match std::fs::read(&full) {
                    Ok(body) => Some(body),
                    Err(error) => {
                        self.error(
                            &at.key("payload_file"),
                            format!("{label}: cannot read {}: {error}", full.display()),
                        );
                        None
                    }
                }
            }
        };

        let mut headers = HeaderMap::new();
        for (header, value) in &test.headers {
            let path = at.key("headers").key(header);
            let Ok(header_name) = HeaderName::from_bytes(header.trim().as_bytes()) else {
                self.error_at_key(
                    &path,
                    format!("{label}: `{header}` is not a valid header name"),
                );
                continue;
            };
            let Ok(header_value) = HeaderValue::from_str(value.0.trim()) else {
                self.error(
                    &path,
                    format!("{label}: the value of header `{header}` is not a valid header value"),
                );
                continue;
            };
            headers.append(header_name, header_value);
        }

        let source = match (&test.source, &body) {
            (Some(source), _) => match config.sources.get(source) {
                Some(source) => Some(source),
                None => {
                    self.error(
                        &at.key("source"),
                        format!(
                            "{label}: unknown source `{source}` (sources: {})",
                            names(config.sources.keys())
                        ),
                    );
                    None
                }
            },
            (None, Some(body)) => match guess_source(config, &headers, body) {
                Ok(source) => Some(source),
                Err(message) => {
                    self.error(at, format!("{label}: {message}"));
                    None
                }
            },
            (None, None) => None,
        };

        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &test.query {
            query.append_pair(key, &value.0);
        }
        if let (Some(event), Some(source)) = (&test.event, source) {
            let event = event.0.trim();
            let header = match source.kind {
                SourceKind::Github | SourceKind::Gitlab => source.kind.event_header(),
                SourceKind::Json => {
                    if test.query.contains_key("event") {
                        self.error_at_key(
                            &at.key("query").key("event"),
                            format!(
                                "{label}: `event` and `query.event` are both set: keep one (`event` is the `event` query parameter of json sources)"
                            ),
                        );
                    }
                    query.append_pair("event", event);
                    None
                }
                SourceKind::Alertmanager | SourceKind::Grafana => {
                    self.error(
                        &at.key("event"),
                        format!(
                            "{label}: `event` does not apply to {} sources: their event (firing or resolved) comes from the payload's `status`",
                            source.kind
                        ),
                    );
                    None
                }
            };
            if let Some(header) = header {
                match HeaderValue::from_str(event) {
                    Ok(value) => {
                        headers.insert(HeaderName::from_static(header), value);
                    }
                    Err(_) => self.error(
                        &at.key("event"),
                        format!("{label}: `{event}` is not a valid header value"),
                    ),
                }
            }
        }
        let query = query.finish();
        if let (Some(source), Some(body)) = (source, &body)
            && !headers.contains_key(http::header::CONTENT_TYPE)
        {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(source.kind.default_content_type(body)),
            );
        }

        let expect = match (&test.expect, test.refused) {
            (Some(_), Some(_)) => {
                self.error_at_key(
                    &at.key("refused"),
                    format!("{label}: `expect` and `refused` are both set: keep one"),
                );
                None
            }
            (None, None) => {
                if self.checker.locations.key(&at.key("expect")).is_some() {
                    self.error_at_key(
                        &at.key("expect"),
                        format!(
                            "{label}: `expect` is empty; write `expect: []` when no rule may match"
                        ),
                    );
                } else {
                    self.error(
                        at,
                        format!(
                            "{label}: give `expect` (the messages, in order; `[]` for none) or `refused` (the status the daemon answers)"
                        ),
                    );
                }
                None
            }
            (None, Some(status)) => {
                if !REFUSAL_STATUSES.contains(&status) {
                    self.error(
                        &at.key("refused"),
                        format!(
                            "{label}: refused: {status} is not a status the daemon refuses a payload with ({})",
                            REFUSAL_STATUSES.map(|s| s.to_string()).join(", ")
                        ),
                    );
                }
                Some(Expect::Refused {
                    status,
                    error_contains: test.error_contains.clone().unwrap_or_default().0,
                })
            }
            (Some(items), None) => {
                if test.error_contains.is_some() {
                    self.error_at_key(
                        &at.key("error_contains"),
                        format!("{label}: `error_contains` goes with `refused`"),
                    );
                }
                let mut expected = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = at.key("expect").index(i);
                    if let Some(one) = self.expected(config, source, &path, &label, item) {
                        expected.push(one);
                    }
                }
                Some(Expect::Messages(expected))
            }
        };

        if self.diagnostics().len() > errors_before {
            return None;
        }
        Some(Case {
            name: name.to_owned(),
            location: self.checker.locations.nearest(at),
            source: source?.name.clone(),
            headers,
            query,
            body: body?,
            now,
            expect: expect?,
        })
    }

    /// Validates one item of `expect`: the rule exists, belongs to the test's source and sends
    /// to the robot.
    fn expected(
        &mut self,
        config: &Config,
        source: Option<&Source>,
        path: &Path,
        label: &str,
        raw: &RawExpect,
    ) -> Option<Expected> {
        let Some(rule) = config.rules.rules().iter().find(|r| r.name == raw.rule) else {
            self.error(
                &path.key("rule"),
                format!(
                    "{label}: unknown rule `{}` (rules: {})",
                    raw.rule,
                    names(config.rules.rules().iter().map(|r| &r.name))
                ),
            );
            return None;
        };
        if let Some(source) = source
            && rule.source != source.name
        {
            self.error(
                &path.key("rule"),
                format!(
                    "{label}: rule `{}` takes events of source `{}`, but this payload goes to source `{}`",
                    rule.name, rule.source, source.name
                ),
            );
            return None;
        }
        let robots: Vec<&str> = rule.robots.iter().map(|r| r.name.as_str()).collect();
        let robot = match (&raw.robot, robots.as_slice()) {
            (Some(robot), _) if robots.contains(&robot.as_str()) => robot.clone(),
            (Some(robot), _) => {
                self.error(
                    &path.key("robot"),
                    format!(
                        "{label}: rule `{}` does not send to robot `{robot}` (it sends to {})",
                        rule.name,
                        names(robots.iter())
                    ),
                );
                return None;
            }
            (None, [one]) => (*one).to_owned(),
            (None, _) => {
                self.error(
                    path,
                    format!(
                        "{label}: rule `{}` sends to several robots ({}): say which with `robot:`",
                        rule.name,
                        names(robots.iter())
                    ),
                );
                return None;
            }
        };
        let msgtype = match raw.msgtype.as_deref() {
            None => None,
            Some(text) => match msgtype(text) {
                Some(msgtype) => Some(msgtype),
                None => {
                    self.error(
                        &path.key("msgtype"),
                        format!(
                            "{label}: unknown msgtype `{text}` ({})",
                            MSGTYPES.join(", ")
                        ),
                    );
                    return None;
                }
            },
        };
        let texts = |t: &Option<Texts>| t.clone().unwrap_or_default().0;
        let scalars = |s: &Option<Vec<Scalar>>| {
            s.as_ref()
                .map(|list| list.iter().map(|s| s.0.clone()).collect::<Vec<_>>())
        };
        Some(Expected {
            rule: rule.name.clone(),
            robot,
            location: self.checker.locations.value(path),
            msgtype,
            title: raw.title.as_ref().map(|s| s.0.clone()),
            title_contains: texts(&raw.title_contains),
            text: raw.text.as_ref().map(|s| s.0.clone()),
            text_contains: texts(&raw.text_contains),
            text_not_contains: texts(&raw.text_not_contains),
            mentions: scalars(&raw.mentions),
            at_all: raw.at_all,
            buttons: scalars(&raw.buttons),
            links: raw.links,
            url: raw.url.as_ref().map(|s| s.0.clone()),
        })
    }
}

/// DingTalk's name of a message type, from either its own spelling or rules.yaml's.
fn msgtype(text: &str) -> Option<&'static str> {
    let key: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    MSGTYPES.into_iter().find(|m| m.to_ascii_lowercase() == key)
}

fn names<'a, S: AsRef<str> + 'a>(names: impl Iterator<Item = &'a S>) -> String {
    let names: Vec<&str> = names.map(AsRef::as_ref).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The one source that can take this payload: the only source, or the only one of the kind
/// the payload looks like (as `render` guesses it).
fn guess_source<'c>(
    config: &'c Config,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'c Source, String> {
    if config.sources.len() == 1 {
        return config
            .sources
            .values()
            .next()
            .ok_or_else(|| "the config has no source".to_owned());
    }
    let kind = SourceKind::guess(headers, body);
    let candidates: Vec<&Source> = config.sources.values().filter(|s| s.kind == kind).collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "this looks like a {kind} payload but no source has kind {kind}; set `source:` (sources: {})",
            names(config.sources.keys())
        )),
        _ => Err(format!(
            "several {kind} sources could take this payload; set `source:` ({})",
            names(candidates.iter().map(|s| &s.name))
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgtypes_in_either_spelling() {
        assert_eq!(msgtype("action_card"), Some("actionCard"));
        assert_eq!(msgtype("actionCard"), Some("actionCard"));
        assert_eq!(msgtype("FeedCard"), Some("feedCard"));
        assert_eq!(msgtype("markdown"), Some("markdown"));
        assert_eq!(msgtype("card"), None);
    }
}

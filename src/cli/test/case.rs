//! Checking a test file node by node, and each test against the config: the source, headers,
//! query and body of its request, and what it expects (rules that exist, belong to its source and
//! send to the robot named).

use std::path::Path as FsPath;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::schema::{RawExpect, RawTest, Scalar, Texts};
use super::suite::{Case, Expect, Expected, REFUSAL_STATUSES};
use crate::config::Config;
use crate::source::{Source, SourceKind};
use crate::text::escape_control as shown;
use crate::yaml::{Checker, Diagnostic, Locations, Path};

/// DingTalk's message types, as `msgtype` names them.
const MSGTYPES: [&str; 5] = ["text", "link", "markdown", "actionCard", "feedCard"];

/// The test file takes no `${VAR}`s of its own (its `env` is for the config).
fn no_variables(_: &str) -> Option<String> {
    None
}

/// Checks a test file node by node: the config loader's [`Checker`], which locates each problem
/// at its node and collects them all, with this file's own checks.
pub(super) struct TestChecker<'a> {
    checker: Checker<'a>,
}

impl<'a> TestChecker<'a> {
    /// A checker of the test file indexed by `locations`, whose relative paths start at
    /// `base_dir`.
    pub(super) fn new(locations: &'a Locations, base_dir: &'a FsPath) -> Self {
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
    pub(super) fn diagnostics(&self) -> &[Diagnostic] {
        &self.checker.diagnostics
    }

    /// Every problem recorded, in the order found.
    pub(super) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.checker.diagnostics
    }

    /// Records an error about the node at `path`. Messages quote the file's text: control
    /// characters are escaped (line breaks and tabs too), so a hostile file cannot send escape
    /// sequences to the terminal.
    pub(super) fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.checker.error(path, shown(&message.into()));
    }

    /// Records an error about the key of the mapping entry at `path`.
    fn error_at_key(&mut self, path: &Path, message: impl Into<String>) {
        self.checker.error_at_key(path, shown(&message.into()));
    }

    /// A time such as `2026-11-24T08:00:00Z` or `2026-11-24T16:00:00+08:00`.
    pub(super) fn time(&mut self, path: &Path, text: &str) -> Option<jiff::Timestamp> {
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
    pub(super) fn case(
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
        let body = self.body(at, &label, test);
        let mut headers = self.headers(at, &label, test);
        let source = self.source(config, at, &label, test, &headers, body.as_deref());
        let query = self.query_and_event(at, &label, test, source, &mut headers);
        if let (Some(source), Some(body)) = (source, &body)
            && !headers.contains_key(http::header::CONTENT_TYPE)
        {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(source.kind.default_content_type(body)),
            );
        }
        let expect = self.expect(config, source, at, &label, test);

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

    /// The request body: `payload` (a string is the body byte for byte, anything else is sent
    /// as JSON) or the file `payload_file`.
    fn body(&mut self, at: &Path, label: &str, test: &RawTest) -> Option<Vec<u8>> {
        match (&test.payload, &test.payload_file) {
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
        }
    }

    /// The request headers of `headers`; the invalid ones are errors, and left out.
    fn headers(&mut self, at: &Path, label: &str, test: &RawTest) -> HeaderMap {
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
        headers
    }

    /// The source the payload is posted to: `source`, or the one the payload can go to.
    fn source<'c>(
        &mut self,
        config: &'c Config,
        at: &Path,
        label: &str,
        test: &RawTest,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<&'c Source> {
        match (&test.source, body) {
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
            (None, Some(body)) => match guess_source(config, headers, body) {
                Ok(source) => Some(source),
                Err(message) => {
                    self.error(at, format!("{label}: {message}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// The raw query string of `query`, with `event` where the source kind takes it: the
    /// `event` query parameter of json sources, or GitHub's and GitLab's event header (set in
    /// `headers`).
    fn query_and_event(
        &mut self,
        at: &Path,
        label: &str,
        test: &RawTest,
        source: Option<&Source>,
        headers: &mut HeaderMap,
    ) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &test.query {
            query.append_pair(key, &value.0);
        }
        let (Some(event), Some(source)) = (&test.event, source) else {
            return query.finish();
        };
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
        query.finish()
    }

    /// What the test expects: `expect` (the messages) or `refused` (the status), one of them.
    fn expect(
        &mut self,
        config: &Config,
        source: Option<&Source>,
        at: &Path,
        label: &str,
        test: &RawTest,
    ) -> Option<Expect> {
        match (&test.expect, test.refused) {
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
                    if let Some(one) = self.expected(config, source, &path, label, item) {
                        expected.push(one);
                    }
                }
                Some(Expect::Messages(expected))
            }
        }
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
            to: scalars(&raw.to),
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

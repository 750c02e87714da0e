//! `dingrelay test`: rule tests, in the spirit of `promtool test rules`.
//!
//! A test file is YAML: the config it tests (default `rules.yaml` next to it), the time templates
//! see (`now`), the variables the config's `${...}` see (`env`; nothing else is read from the
//! environment), and a list of tests. Each test is a payload as a sender posts it, and either the
//! exact list of rule → robot messages it must produce, in order, with assertions on each
//! (`expect`), or the status the daemon would refuse it with (`refused`).
//!
//! Payloads take the daemon's path: source parsing, rule routing and DingTalk validation.
//! Authentication is not checked (as in `render`), nothing is queued or sent.
//!
//! A test file that cannot be read, is not valid, or names what the config does not have is
//! reported like a config error, `file:line:col: what is wrong` with the line and a caret, and
//! none of its tests runs.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::config::{Config, ConfigError};
use crate::dingtalk::{Message, MessageBody};
use crate::rules::{Rendered, SkipReason, Skipped};
use crate::source::{Inbound, Rejection, Source, SourceKind};
use crate::text::escape_control as shown;
use crate::yaml::diagnostic::{self, Diagnostic};
use crate::yaml::locate::{Location, Locations, Path};

/// The time templates see when a test file does not set `now`.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// The statuses a test may expect in `refused`: what the daemon answers a payload it refuses.
pub const REFUSAL_STATUSES: [u16; 5] = [400, 401, 413, 415, 422];

/// DingTalk's message types, as `msgtype` names them.
const MSGTYPES: [&str; 5] = ["text", "link", "markdown", "actionCard", "feedCard"];

/// Lines of context shown around each change of a text diff.
const DIFF_CONTEXT: usize = 2;

/// Longest text shown in full when a `text_contains` fails; longer ones are cut.
const SHOWN_TEXT_LINES: usize = 40;

/// Runs every test of every file, writing `ok`/`FAIL` lines, the differences and a summary to
/// `out`. Returns the exit code: 0 when every test passed, 1 when a test failed, 2 when a test
/// file could not be read or is invalid (its tests are not run; the other files still are).
pub fn run(files: &[PathBuf], out: &mut dyn Write) -> u8 {
    if files.is_empty() {
        let _ = writeln!(
            out,
            "error: no test file given (e.g. dingrelay test rules.test.yaml)"
        );
        return 2;
    }
    let mut passed = 0;
    let mut failed = 0;
    let mut invalid = 0;
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out);
        }
        let suite = match Suite::load(file) {
            Ok(suite) => suite,
            Err(error) => {
                let _ = write!(out, "{error}");
                invalid += 1;
                continue;
            }
        };
        let _ = writeln!(
            out,
            "# {}: {} test{} of {}",
            suite.file,
            suite.cases.len(),
            plural(suite.cases.len()),
            suite.config_file
        );
        for case in &suite.cases {
            let outcome = suite.outcome(case);
            let problems = check(&suite, case, &outcome);
            if problems.is_empty() {
                passed += 1;
                let _ = writeln!(out, "ok   {}", shown(&case.name));
            } else {
                failed += 1;
                let _ = writeln!(
                    out,
                    "FAIL {} ({}:{})",
                    shown(&case.name),
                    suite.file,
                    case.location
                );
                for line in problems {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    let _ = writeln!(out);
    let mut summary = format!("{passed} passed, {failed} failed");
    if invalid > 0 {
        summary.push_str(&format!(
            ", {invalid} test file{} invalid (not run)",
            plural(invalid)
        ));
    }
    let _ = writeln!(out, "{summary}");
    if invalid > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

// ---- The file format ----------------------------------------------------------------------

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    env: IndexMap<String, Scalar>,
    tests: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Scalar,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    event: Option<Scalar>,
    #[serde(default)]
    headers: IndexMap<String, Scalar>,
    #[serde(default)]
    query: IndexMap<String, Scalar>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    #[serde(default)]
    payload_file: Option<String>,
    #[serde(default)]
    expect: Option<Vec<RawExpect>>,
    #[serde(default)]
    refused: Option<u16>,
    #[serde(default)]
    error_contains: Option<Texts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    rule: String,
    #[serde(default)]
    robot: Option<String>,
    #[serde(default)]
    msgtype: Option<String>,
    #[serde(default)]
    title: Option<Scalar>,
    #[serde(default)]
    title_contains: Option<Texts>,
    #[serde(default)]
    text: Option<Scalar>,
    #[serde(default)]
    text_contains: Option<Texts>,
    #[serde(default)]
    text_not_contains: Option<Texts>,
    #[serde(default)]
    mentions: Option<Vec<Scalar>>,
    #[serde(default)]
    at_all: Option<bool>,
    #[serde(default)]
    buttons: Option<Vec<Scalar>>,
    #[serde(default)]
    links: Option<usize>,
    #[serde(default)]
    url: Option<Scalar>,
}

/// A string, or a number or boolean taken as the text it is written as (a phone number
/// `13800001111`, a header value `1`).
#[derive(Debug, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// One text or a list of them: `text_contains: "x"` or `text_contains: ["x", "y"]`.
#[derive(Debug, Clone, Default)]
struct Texts(Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_owned()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut texts = Vec::new();
                while let Some(Scalar(text)) = seq.next_element()? {
                    texts.push(text);
                }
                Ok(Texts(texts))
            }
        }
        deserializer.deserialize_any(TextsVisitor)
    }
}

// ---- Validated tests ----------------------------------------------------------------------

/// A test file, validated against its config: every test is ready to run.
struct Suite {
    /// The test file, as given.
    file: String,
    /// The config file, as found from the test file.
    config_file: String,
    config: Config,
    cases: Vec<Case>,
}

/// One test.
struct Case {
    name: String,
    /// Where the test starts in the test file.
    location: Location,
    /// The source (by name) the payload is posted to.
    source: String,
    headers: HeaderMap,
    /// The raw query string.
    query: String,
    body: Vec<u8>,
    now: jiff::Timestamp,
    expect: Expect,
}

enum Expect {
    /// Exactly these messages, in this order.
    Messages(Vec<Expected>),
    /// The daemon refuses the payload with this status, and its reason contains these texts.
    Refused {
        status: u16,
        error_contains: Vec<String>,
    },
}

/// One expected message and what must hold of it.
struct Expected {
    rule: String,
    robot: String,
    location: Option<Location>,
    msgtype: Option<&'static str>,
    title: Option<String>,
    title_contains: Vec<String>,
    text: Option<String>,
    text_contains: Vec<String>,
    text_not_contains: Vec<String>,
    mentions: Option<Vec<String>>,
    at_all: Option<bool>,
    buttons: Option<Vec<String>>,
    links: Option<usize>,
    url: Option<String>,
}

impl Expected {
    fn target(&self) -> String {
        format!("rule `{}` -> robot `{}`", self.rule, self.robot)
    }
}

/// What the daemon would do with a test's payload.
enum Outcome {
    /// Answered with a 4xx and this reason; nothing queued.
    Refused { status: u16, error: String },
    /// Answered 202 without evaluating any rule (GitHub's `ping`).
    Ignored { reason: String },
    /// The rules ran: these messages would be queued (none when no rule matched).
    Routed {
        deliveries: Vec<Rendered>,
        skipped: Vec<Skipped>,
    },
}

impl Suite {
    /// Reads and validates a test file and loads its config. The error is the whole report, ready
    /// to print: every problem found, located.
    fn load(path: &FsPath) -> Result<Suite, String> {
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

        let mut checker = Checker {
            locations: &locations,
            diagnostics: Vec::new(),
        };
        let root = Path::root();
        let base_dir = path.parent().unwrap_or_else(|| FsPath::new(""));

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
        if !checker.diagnostics.is_empty() {
            return Err(invalid(checker.diagnostics));
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
            None => return Err(invalid(checker.diagnostics)),
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
            if let Some(case) = checker.case(&config, base_dir, &at, &name, test, case_now) {
                cases.push(case);
            }
        }
        if !checker.diagnostics.is_empty() {
            checker
                .diagnostics
                .sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
            return Err(invalid(checker.diagnostics));
        }
        Ok(Suite {
            file,
            config_file,
            config,
            cases,
        })
    }

    /// What the daemon would answer, and send, for the test's request.
    fn outcome(&self, case: &Case) -> Outcome {
        let Some(source) = self.config.sources.get(&case.source) else {
            // Checked when the file was loaded.
            return Outcome::Refused {
                status: 404,
                error: format!("no source `{}`", case.source),
            };
        };
        let limit = self.config.intake.body_limit;
        if case.body.len() > limit {
            return Outcome::Refused {
                status: 413,
                error: format!("the body is larger than the limit of {limit} bytes (body_limit)"),
            };
        }
        let inbound = Inbound {
            headers: &case.headers,
            query: &case.query,
            body: &case.body,
        };
        let event = match source.parse(&inbound) {
            Ok(event) => event,
            Err(rejection) => {
                let status = match rejection {
                    Rejection::Unauthorized(_) => 401,
                    Rejection::UnsupportedMediaType(_) => 415,
                    Rejection::Malformed(_) => 400,
                };
                return Outcome::Refused {
                    status,
                    error: rejection.to_string(),
                };
            }
        };
        if let Some(reason) = event.ignored {
            return Outcome::Ignored { reason };
        }
        let routing = self.config.rules.route(&event, case.now);
        if !routing.errors.is_empty() {
            let errors: Vec<String> = routing.errors.iter().map(ToString::to_string).collect();
            return Outcome::Refused {
                status: 422,
                error: errors.join("; "),
            };
        }
        if !routing.messages.is_empty()
            && let Err(error) = self.config.rules.dedup_key(&event, case.now)
        {
            return Outcome::Refused {
                status: 422,
                error: error.to_string(),
            };
        }
        Outcome::Routed {
            deliveries: routing.messages,
            skipped: routing.skipped,
        }
    }
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

/// A serde error as a diagnostic, with this format's struct names spelled out for people.
fn serde_diagnostic(error: &serde_yaml::Error) -> Diagnostic {
    let mut diagnostic = crate::yaml::serde_diagnostic(error);
    for (internal, shown) in [
        ("struct RawFile", "a test file (a mapping with `tests`)"),
        (
            "struct RawTest",
            "a test (a mapping with `name`, a payload and `expect`)",
        ),
        (
            "struct RawExpect",
            "an expected message (a mapping with `rule`)",
        ),
    ] {
        diagnostic.message = diagnostic.message.replace(internal, shown);
    }
    diagnostic
}

/// Collects the problems of a test file, each located at the node it is about.
struct Checker<'a> {
    locations: &'a Locations,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// Records an error about the node at `path`. Messages quote the file's text: control
    /// characters are escaped, so a hostile file cannot send escape sequences to the terminal.
    fn error(&mut self, path: &Path, message: impl Into<String>) {
        let message = shown(&message.into()).into_owned();
        self.diagnostics
            .push(Diagnostic::at_value(self.locations, path, message));
    }

    /// Records an error about the key of the mapping entry at `path`.
    fn error_at_key(&mut self, path: &Path, message: impl Into<String>) {
        let message = shown(&message.into()).into_owned();
        self.diagnostics
            .push(Diagnostic::at_key(self.locations, path, message));
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
        base_dir: &FsPath,
        at: &Path,
        name: &str,
        test: &RawTest,
        now: jiff::Timestamp,
    ) -> Option<Case> {
        let errors_before = self.diagnostics.len();
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
                let full = base_dir.join(file);
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
                if self.locations.key(&at.key("expect")).is_some() {
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

        if self.diagnostics.len() > errors_before {
            return None;
        }
        Some(Case {
            name: name.to_owned(),
            location: self.locations.nearest(at),
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
            location: self.locations.value(path),
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

// ---- Checking the outcome ---------------------------------------------------------------

/// What is wrong with the outcome of a test, one line each (nested lines are indented); empty
/// when the test passes.
fn check(suite: &Suite, case: &Case, outcome: &Outcome) -> Vec<String> {
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

// ---- Line diff ----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Above this many line pairs, the diff does not look for common lines: it shows all expected
/// lines removed and all actual lines added (DingTalk texts are short; this bounds the work).
const DIFF_LIMIT: usize = 4_000_000;

/// A line diff of `expected` and `actual`: `- | ` lines only expected, `+ | ` lines only
/// actual, `  | ` common lines around the changes (at most [`DIFF_CONTEXT`] each side; `  ...`
/// for the rest). The `|` keeps a text's own leading `-` or `+` (a markdown list) apart from the
/// marker. Trailing spaces of changed lines are shown as `·`, so a difference there is visible.
fn line_diff(expected: &str, actual: &str) -> Vec<String> {
    let old: Vec<&str> = expected.split('\n').collect();
    let new: Vec<&str> = actual.split('\n').collect();
    let ops = diff_ops(&old, &new);
    let changed: Vec<bool> = ops.iter().map(|op| !matches!(op, Op::Same(_))).collect();
    let near_change = |i: usize| {
        let from = i.saturating_sub(DIFF_CONTEXT);
        let to = (i + DIFF_CONTEXT).min(ops.len().saturating_sub(1));
        changed[from..=to].iter().any(|c| *c)
    };
    let mut lines = Vec::new();
    let mut skipped = false;
    for (i, op) in ops.iter().enumerate() {
        let line = match op {
            Op::Same(line) if near_change(i) => format!("  | {}", shown(line)),
            Op::Same(_) => {
                if !skipped {
                    lines.push("  ...".to_owned());
                    skipped = true;
                }
                continue;
            }
            Op::Removed(line) => format!("- | {}", visible_end(line)),
            Op::Added(line) => format!("+ | {}", visible_end(line)),
        };
        skipped = false;
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// The line with its trailing spaces and tabs shown as `·` and `→`.
fn visible_end(line: &str) -> String {
    let body = line.trim_end_matches([' ', '\t']);
    let tail: String = line[body.len()..]
        .chars()
        .map(|c| if c == '\t' { '→' } else { '·' })
        .collect();
    format!("{}{tail}", shown(body))
}

/// The longest-common-subsequence edit script from `old` to `new`.
fn diff_ops<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    // Common lines at both ends need no table.
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut ops: Vec<Op<'a>> = old[..prefix].iter().map(|l| Op::Same(l)).collect();
    let (n, m) = (old_mid.len(), new_mid.len());
    if n.saturating_mul(m) > DIFF_LIMIT {
        ops.extend(old_mid.iter().map(|l| Op::Removed(l)));
        ops.extend(new_mid.iter().map(|l| Op::Added(l)));
    } else {
        // lcs[i][j]: the longest common subsequence of old_mid[i..] and new_mid[j..].
        let width = m + 1;
        let mut lcs = vec![0u32; (n + 1) * width];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * width + j] = if old_mid[i] == new_mid[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if old_mid[i] == new_mid[j] {
                ops.push(Op::Same(old_mid[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
                ops.push(Op::Removed(old_mid[i]));
                i += 1;
            } else {
                ops.push(Op::Added(new_mid[j]));
                j += 1;
            }
        }
        ops.extend(old_mid[i..].iter().map(|l| Op::Removed(l)));
        ops.extend(new_mid[j..].iter().map(|l| Op::Added(l)));
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_changes_with_context() {
        let expected = "a\nb\nc\nd\ne\nf\ng\nh";
        let actual = "a\nb\nc\nd\nE\nf\ng\nh";
        assert_eq!(
            line_diff(expected, actual),
            vec![
                "  ...", "  | c", "  | d", "- | e", "+ | E", "  | f", "  | g", "  ..."
            ]
        );
        assert_eq!(line_diff("x", "x\ny"), vec!["  | x", "+ | y"]);
        assert_eq!(line_diff("", "y"), vec!["- |", "+ | y"]);
        assert_eq!(line_diff("a  ", "a"), vec!["- | a··", "+ | a"]);
        assert_eq!(
            line_diff("- a\n- b", "- a\n+ b"),
            vec!["  | - a", "- | - b", "+ | + b"]
        );
    }

    #[test]
    fn large_texts_are_diffed_without_a_table() {
        let old: String = (0..3000).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("new {i}\n")).collect();
        let diff = line_diff(&old, &new);
        assert_eq!(diff.iter().filter(|l| l.starts_with("- ")).count(), 3000);
        assert_eq!(diff.iter().filter(|l| l.starts_with("+ ")).count(), 3000);
    }

    #[test]
    fn msgtypes_in_either_spelling() {
        assert_eq!(msgtype("action_card"), Some("actionCard"));
        assert_eq!(msgtype("actionCard"), Some("actionCard"));
        assert_eq!(msgtype("FeedCard"), Some("feedCard"));
        assert_eq!(msgtype("markdown"), Some("markdown"));
        assert_eq!(msgtype("card"), None);
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(shown("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(visible_end("x\t "), "x→·");
    }
}

//! Loading: the file is parsed into [`RawConfig`], then each part is validated by a
//! [`Checker`] that collects every error, located at its node; a [`Config`] is built only when
//! there is none.
//!
//! Invariant: an error never shows a secret. Known secret keys are masked wherever a line is
//! shown ([`diagnostic`]); an unknown key where secrets live (at the top level, where
//! `reload_token` is, and anywhere under `apps.<name>`, `robots.<name>` or `sources.<name>`) may be a
//! misspelled secret, so its line is shown with the values masked (`secrett: ***`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path as FsPath;

use indexmap::IndexMap;

use super::model::{Config, DEFAULT_LISTEN, DEFAULT_TIMEZONE, DeliverySettings, IntakeSettings};
use super::raw::{self, RawConfig};
use super::robots::{build_app, build_robot, build_robot_delivery};
use super::sources::build_source;
use crate::rules::{DeclaredSource, RuleSet};
use crate::yaml::locate::Segment;
use crate::yaml::{Checker, Diagnostic, Locations, Path, diagnostic, expand, serde_diagnostic};

/// A config that could not be loaded: every problem found, rendered as
/// `rules.yaml:LINE:COL: what is wrong` with the offending line and a caret.
#[derive(Debug, thiserror::Error)]
#[error("{rendered}")]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
    pub rendered: String,
}

impl ConfigError {
    fn io(file_name: &str, error: std::io::Error) -> Self {
        let message = format!("cannot read the file: {error}");
        ConfigError {
            rendered: format!("{file_name}: {message}"),
            diagnostics: vec![Diagnostic::new(message)],
        }
    }
}

impl Config {
    /// Loads and validates a config file, expanding `${VAR}`s from the process environment.
    pub fn load(path: &FsPath) -> Result<Config, ConfigError> {
        let file_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&file_name, e))?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| FsPath::new("."));
        Config::parse(&file_name, &text, base_dir, &expand::env_lookup)
    }

    /// Validates config text. `lookup` resolves `${VAR}`s (the environment, or a map in tests);
    /// `base_dir` anchors relative paths.
    pub fn parse(
        file_name: &str,
        text: &str,
        base_dir: &FsPath,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // Notepad starts a UTF-8 file with a byte order mark; serde would read it as content.
        // Lines and columns are the same without it (the locator does not count it either).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let locations = Locations::index(text);
        let fail = |diagnostics: Vec<Diagnostic>| ConfigError {
            rendered: diagnostic::render(file_name, text, &diagnostics),
            diagnostics,
        };

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
            return Err(fail(duplicates));
        }

        let raw: RawConfig = match serde_yaml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => {
                let mut diagnostic = serde_diagnostic(&error);
                diagnostic.mask_values = may_show_a_secret(&diagnostic, &locations);
                let diagnostic = super::wording::explain(diagnostic, text, &locations);
                return Err(fail(vec![diagnostic]));
            }
        };

        let mut checker = Checker {
            locations: &locations,
            lookup,
            base_dir,
            diagnostics: Vec::new(),
            warnings: Vec::new(),
        };
        let config = build(raw, &mut checker);
        if checker.diagnostics.is_empty() {
            let mut config = config.expect("a config is built when there are no diagnostics");
            config.warnings = checker.warnings;
            config.source_text = super::model::SourceText(text.into());
            Ok(config)
        } else {
            checker
                .diagnostics
                .sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
            Err(fail(checker.diagnostics))
        }
    }
}

/// Whether `diagnostic`, an error of serde's, is about a key nobody recognises where secrets
/// live: its value may be a secret under a misspelled name (`secrett:`, `tokn:`). A key that is
/// not indexed (too deep, inside a complex key) counts as such, to be safe.
fn may_show_a_secret(diagnostic: &Diagnostic, locations: &Locations) -> bool {
    if !diagnostic.message.contains("unknown field `") {
        return false;
    }
    let Some(location) = diagnostic.location else {
        return false;
    };
    let Some(path) = locations.key_at(location) else {
        return true;
    };
    match path.segments() {
        [_] => true,
        [Segment::Key(section), _, _, ..] => {
            section == "robots" || section == "sources" || section == "apps"
        }
        _ => false,
    }
}

/// Validates everything; returns the config only if no error was recorded.
fn build(raw: RawConfig, checker: &mut Checker<'_>) -> Option<Config> {
    let root = Path::root();

    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = checker
        .expand(&root.key("listen"), listen)
        .and_then(|listen| match listen.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                checker.error(
                    &root.key("listen"),
                    format!("listen: `{listen}` is not an address like 127.0.0.1:8060"),
                );
                None
            }
        });

    let state_dir = raw.state_dir.as_deref().unwrap_or("./data");
    let state_dir = checker
        .expand(&root.key("state_dir"), state_dir)
        .map(|dir| checker.resolve(&dir));

    let timezone_name = raw.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE);
    let timezone_name = checker.expand(&root.key("timezone"), timezone_name);
    let timezone = timezone_name.as_deref().and_then(|name| {
        match jiff::tz::TimeZone::get(name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                checker.error(
                    &root.key("timezone"),
                    format!("timezone: unknown time zone `{name}` (use an IANA name like Asia/Shanghai or UTC)"),
                );
                None
            }
        }
    });

    let secs = std::time::Duration::from_secs;
    let body_limit = match &raw.body_limit {
        None => Some(26 * 1024 * 1024),
        Some(size) => body_size(size).or_else(|| {
            checker.error(
                &root.key("body_limit"),
                "body_limit: expected a size like 26MiB, 512KiB or a number of bytes (at least 1KiB)",
            );
            None
        }),
    };
    let request_timeout = checker.duration(
        &root.key("request_timeout"),
        raw.request_timeout.as_deref(),
        secs(10),
    );
    let dedup_window = checker.duration(
        &root.key("dedup_window"),
        raw.dedup_window.as_deref(),
        secs(600),
    );
    let connect_timeout = checker.duration(
        &root.key("connect_timeout"),
        raw.connect_timeout.as_deref(),
        secs(5),
    );
    let send_timeout = checker.duration(
        &root.key("send_timeout"),
        raw.send_timeout.as_deref(),
        secs(15),
    );
    let shutdown_timeout = checker.duration(
        &root.key("shutdown_timeout"),
        raw.shutdown_timeout.as_deref(),
        secs(20),
    );
    let keep_delivered = checker.duration(
        &root.key("keep_delivered"),
        raw.keep_delivered.as_deref(),
        secs(7 * 24 * 3600),
    );

    let keep_events = checker.duration(
        &root.key("keep_events"),
        raw.keep_events.as_deref(),
        secs(7 * 24 * 3600),
    );
    if let (Some(keep), Some(window)) = (keep_events, dedup_window)
        && keep < window
    {
        checker.error(
            &root.key("keep_events"),
            "keep_events must be at least dedup_window: purged events can no longer be recognised as duplicates",
        );
    }

    let reload_token = checker.secret(
        &root,
        "reload_token",
        raw.reload_token.as_deref(),
        raw.reload_token_file.as_deref(),
    );

    let mut apps = IndexMap::new();
    for (name, app) in &raw.apps {
        let at = root.key("apps").key(name);
        if let Some(app) = build_app(name, app, &at, checker) {
            apps.insert(name.clone(), std::sync::Arc::new(app));
        }
    }

    let console = raw
        .console
        .as_ref()
        .and_then(|console| build_console(console, &apps, &root.key("console"), checker));

    let mut robots = IndexMap::new();
    let mut robot_delivery = IndexMap::new();
    for (name, robot) in &raw.robots {
        let at = root.key("robots").key(name);
        if let Some(robot) = build_robot(name, robot, &at, &apps, checker) {
            robots.insert(name.clone(), std::sync::Arc::new(robot));
        }
        if let Some(delivery) = build_robot_delivery(name, robot, &at, checker) {
            robot_delivery.insert(name.clone(), delivery);
        }
    }
    if raw.robots.is_empty() {
        checker.error(&root, "no robots: add at least one under `robots:`");
    }

    if let Some(notify) = console.as_ref().and_then(|c| c.notify.as_deref())
        && !raw.robots.contains_key(notify)
    {
        checker.error(
            &root.key("console").key("notify"),
            format!("console.notify: unknown robot `{notify}`"),
        );
    }

    let mut sources = IndexMap::new();
    let mut paths: HashMap<String, String> = HashMap::new();
    for (name, source) in &raw.sources {
        let at = root.key("sources").key(name);
        if let Some(source) = build_source(name, source, &at, checker) {
            if let Some(other) = paths.insert(source.path.clone(), name.clone()) {
                checker.error(
                    &at.key("path"),
                    format!(
                        "sources.{name}: path `{}` is already used by source `{other}`",
                        source.path
                    ),
                );
            }
            sources.insert(name.clone(), source);
        }
    }
    if raw.sources.is_empty() {
        checker.error(&root, "no sources: add at least one under `sources:`");
    }

    let (templates, template_errors) = crate::rules::templates::Templates::load(checker.base_dir);
    for error in template_errors {
        checker.diagnostics.push(Diagnostic::new(error));
    }
    let declared: IndexMap<String, DeclaredSource> = raw
        .sources
        .iter()
        .map(|(name, source)| {
            let declared = DeclaredSource {
                kind: source.kind,
                dedup: source.dedup.clone(),
            };
            (name.clone(), declared)
        })
        .collect();
    let rules = RuleSet::compile(
        &raw.rules,
        &raw.robots.keys().cloned().collect::<Vec<_>>(),
        &robots,
        &declared,
        &templates,
        timezone.clone().unwrap_or(jiff::tz::TimeZone::UTC),
        silence_buttons(console.as_ref()),
        &root.key("rules"),
        checker,
    );

    if !checker.diagnostics.is_empty() {
        return None;
    }
    Some(Config {
        listen: listen?,
        state_dir: state_dir?,
        timezone_name: timezone_name?,
        timezone: timezone?,
        apps,
        robots,
        sources,
        rules: rules?,
        intake: IntakeSettings {
            body_limit: body_limit?,
            request_timeout: request_timeout?,
            dedup_window: dedup_window?,
            keep_events: keep_events?,
        },
        delivery: DeliverySettings {
            connect_timeout: connect_timeout?,
            send_timeout: send_timeout?,
            shutdown_timeout: shutdown_timeout?,
            keep_delivered: keep_delivered?,
        },
        robot_delivery,
        console,
        reload_token,
        warnings: Vec::new(),
        source_text: Default::default(),
    })
}

/// `26MiB`, `512 KiB`, `1MB`, `2048`: a size in bytes, at least 1 KiB.
fn body_size(size: &raw::BodySize) -> Option<usize> {
    let bytes = match size {
        raw::BodySize::Bytes(n) => *n,
        raw::BodySize::Text(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let number: u64 = number.parse().ok()?;
            let unit = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1000,
                "kib" => 1024,
                "m" | "mb" => 1000 * 1000,
                "mib" => 1024 * 1024,
                _ => return None,
            };
            number.checked_mul(unit)?
        }
    };
    (bytes >= 1024)
        .then(|| usize::try_from(bytes).ok())
        .flatten()
}

/// The console's settings: its app must be declared, with an AgentId (for `dd.config`).
fn build_console(
    raw: &raw::RawConsole,
    apps: &IndexMap<String, std::sync::Arc<crate::dingtalk::App>>,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<super::model::ConsoleSettings> {
    let app = checker.expand(&at.key("app"), &raw.app)?;
    match apps.get(app.trim()) {
        None => {
            checker.error(
                &at.key("app"),
                format!("console.app: unknown app `{app}`: declare it under `apps:`"),
            );
            return None;
        }
        Some(declared) if declared.agent_id.is_none() => {
            checker.error(
                &at.key("app"),
                format!(
                    "console.app: app `{app}` needs its `agent_id` for the console's JSAPI calls"
                ),
            );
            return None;
        }
        Some(_) => {}
    }
    let corp_id = checker
        .expand(&at.key("corp_id"), &raw.corp_id)?
        .trim()
        .to_owned();
    if corp_id.is_empty() {
        checker.error(&at.key("corp_id"), "console.corp_id: is empty");
    }
    let session_ttl = checker.duration(
        &at.key("session"),
        raw.session.as_deref(),
        std::time::Duration::from_secs(8 * 3600),
    )?;
    let signer = match &raw.session_key_file {
        Some(_) => {
            let key = checker.secret(at, "session_key", None, raw.session_key_file.as_deref())?;
            use secrecy::ExposeSecret;
            match crate::links::Signer::new(key.expose_secret().as_bytes().to_vec()) {
                Ok(signer) => Some(signer),
                Err(_) => {
                    checker.error(
                        &at.key("session_key_file"),
                        "console.session_key_file: the key needs at least 32 bytes (e.g. `openssl rand -hex 32`)",
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    let alertmanager = match &raw.alertmanager {
        None => None,
        Some(text) => {
            let text = checker.expand(&at.key("alertmanager"), text)?;
            match url::Url::parse(text.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                _ => {
                    checker.error(
                        &at.key("alertmanager"),
                        format!("console.alertmanager: `{text}` is not an http(s) URL like http://alertmanager:9093"),
                    );
                    return None;
                }
            }
        }
    };
    let url = match &raw.url {
        None => None,
        Some(text) => {
            let text = checker.expand(&at.key("url"), text)?;
            let url = match url::Url::parse(text.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => url,
                _ => {
                    checker.error(
                        &at.key("url"),
                        format!("console.url: `{text}` is not an http(s) URL like https://relay.example.com/"),
                    );
                    return None;
                }
            };
            if raw.session_key_file.is_none() || alertmanager.is_none() {
                checker.error(
                    &at.key("url"),
                    "console.url: Silence buttons need `alertmanager` (where to silence) and `session_key_file` (so their links outlive a restart)",
                );
                return None;
            }
            Some(url)
        }
    };
    Some(super::model::ConsoleSettings {
        app: app.trim().to_owned(),
        corp_id,
        session_ttl,
        alertmanager,
        url,
        notify: raw.notify.clone(),
        signer,
    })
    .filter(|c| !c.corp_id.is_empty())
}

/// What templates need for Silence buttons, when the console has them (`url` set, with its key).
fn silence_buttons(
    console: Option<&super::model::ConsoleSettings>,
) -> Option<crate::links::SilenceButtons> {
    let console = console?;
    Some(crate::links::SilenceButtons {
        signer: console.signer.clone()?,
        console_url: console.url.clone()?,
        link_ttl: std::time::Duration::from_secs(7 * 86400),
    })
}

//! `rules.yaml`: parsed into raw structs ([`raw`]), then validated into [`Config`].
//!
//! Loading happens in two steps. serde reads the file into [`raw::RawConfig`], whose structs deny
//! unknown keys; a structural error there (unknown key, wrong type, bad YAML) stops loading with
//! one located error. Then validation expands `${VAR}`s, reads `*_file` secrets, resolves every
//! reference and compiles every template, collecting *all* its errors, each located at the YAML
//! node it is about (see [`locate`]).
//!
//! A [`Config`] only exists when all of that succeeded: the rest of the code never sees an
//! unexpanded value, a dangling reference or an uncompiled template.
//!
//! Relative paths (`state_dir`, `*_file`) are relative to the directory of the config file, so the
//! meaning of a file does not depend on where the daemon is started from.

pub mod raw;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};

use indexmap::IndexMap;
use secrecy::SecretString;
use url::Url;

use crate::dingtalk::robot::WebhookUrl;
use crate::dingtalk::{Endpoint, Robot};
use crate::rules::RuleSet;
use crate::rules::compile::DeclaredSource;
use crate::source::{Auth, Source, SourceKind, auth::BasicAuth};
use crate::yaml::{Checker, Diagnostic, Locations, Path, diagnostic, expand, serde_diagnostic};
use raw::RawConfig;

/// The default listen address: loopback only, so a fresh install is not reachable from outside.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8060";
/// The default time zone for times shown in messages: DingTalk's home.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";
/// The only host a robot webhook may point at unless the robot names another in `allow_host`.
pub const DINGTALK_HOST: &str = "oapi.dingtalk.com";

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// The IANA name, kept for display.
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    pub robots: IndexMap<String, std::sync::Arc<Robot>>,
    pub sources: IndexMap<String, Source>,
    pub rules: RuleSet,
    pub intake: IntakeSettings,
    pub delivery: DeliverySettings,
    /// Per robot, by name: how its worker delivers.
    pub robot_delivery: IndexMap<String, RobotDelivery>,
    /// The bearer token of `POST /-/reload`; `None` keeps the route off.
    pub reload_token: Option<SecretString>,
    /// Things that work but deserve the operator's attention (an unauthenticated source, ...).
    pub warnings: Vec<String>,
}

/// How webhooks are taken in.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Larger bodies are answered 413. Default 26 MiB: GitHub's cap is 25 MB.
    pub body_limit: usize,
    /// A request that takes longer (reading the body included) is answered 503/408.
    pub request_timeout: std::time::Duration,
    /// A message whose dedup key was accepted within this window is not queued again.
    pub dedup_window: std::time::Duration,
}

/// How messages leave, for every robot.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub connect_timeout: std::time::Duration,
    /// Total time one request to DingTalk may take.
    pub send_timeout: std::time::Duration,
    /// How long shutdown waits for sends in flight before exiting anyway.
    pub shutdown_timeout: std::time::Duration,
    /// Delivered rows are pruned after this long.
    pub keep_delivered: std::time::Duration,
}

/// How one robot's worker delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotDelivery {
    /// DingTalk's limit for the robot per minute; the limiter keeps one below it.
    pub rate_per_minute: u32,
    /// The pause after DingTalk answers "too fast".
    pub throttle_penalty: std::time::Duration,
    /// Transient failures are retried until a message is this old, then dead-lettered.
    pub max_age: std::time::Duration,
    /// Merge the backlog into digests when it would take longer than this to drain; `None`
    /// sends every message on its own.
    pub digest_after: Option<std::time::Duration>,
}

impl Default for RobotDelivery {
    fn default() -> Self {
        RobotDelivery {
            rate_per_minute: 20,
            throttle_penalty: std::time::Duration::from_secs(600),
            max_age: std::time::Duration::from_secs(24 * 3600),
            digest_after: Some(std::time::Duration::from_secs(60)),
        }
    }
}

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
            diagnostics: vec![Diagnostic {
                location: None,
                message,
            }],
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
        let locations = Locations::index(text);
        let fail = |diagnostics: Vec<Diagnostic>| ConfigError {
            rendered: diagnostic::render(file_name, text, &diagnostics),
            diagnostics,
        };

        let duplicates: Vec<Diagnostic> = locations
            .duplicate_keys()
            .into_iter()
            .map(|(path, location)| Diagnostic {
                location: Some(location),
                message: format!("duplicate key `{path}`: each key may appear once"),
            })
            .collect();
        if !duplicates.is_empty() {
            return Err(fail(duplicates));
        }

        let raw: RawConfig = match serde_yaml::from_str(text) {
            Ok(raw) => raw,
            Err(error) => return Err(fail(vec![serde_diagnostic(&error)])),
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
            Ok(config)
        } else {
            checker
                .diagnostics
                .sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
            Err(fail(checker.diagnostics))
        }
    }

    /// The robot of this name.
    pub fn robot(&self, name: &str) -> Option<&std::sync::Arc<Robot>> {
        self.robots.get(name)
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

    if let (Some(keep), Some(window)) = (keep_delivered, dedup_window)
        && keep < window
    {
        checker.error(
            &root.key("keep_delivered"),
            "keep_delivered must be at least dedup_window: pruned messages can no longer be recognised as duplicates",
        );
    }

    let reload_token = checker.secret(
        &root,
        "reload_token",
        raw.reload_token.as_deref(),
        raw.reload_token_file.as_deref(),
    );

    let mut robots = IndexMap::new();
    let mut robot_delivery = IndexMap::new();
    for (name, robot) in &raw.robots {
        let at = root.key("robots").key(name);
        if let Some(robot) = build_robot(name, robot, &at, checker) {
            robots.insert(name.clone(), std::sync::Arc::new(robot));
        }
        if let Some(delivery) = build_robot_delivery(name, robot, &at, checker) {
            robot_delivery.insert(name.clone(), delivery);
        }
    }
    if raw.robots.is_empty() {
        checker.error(&root, "no robots: add at least one under `robots:`");
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
        checker.diagnostics.push(Diagnostic {
            location: None,
            message: error,
        });
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
        robots,
        sources,
        rules: rules?,
        intake: IntakeSettings {
            body_limit: body_limit?,
            request_timeout: request_timeout?,
            dedup_window: dedup_window?,
        },
        delivery: DeliverySettings {
            connect_timeout: connect_timeout?,
            send_timeout: send_timeout?,
            shutdown_timeout: shutdown_timeout?,
            keep_delivered: keep_delivered?,
        },
        robot_delivery,
        reload_token,
        warnings: Vec::new(),
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

fn build_robot_delivery(
    name: &str,
    raw: &raw::RawRobot,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<RobotDelivery> {
    let defaults = RobotDelivery::default();
    let rate_per_minute = raw.rate_per_minute.unwrap_or(defaults.rate_per_minute);
    if rate_per_minute < 2 {
        checker.error(
            &at.key("rate_per_minute"),
            format!(
                "robots.{name}.rate_per_minute: must be at least 2 (dingrelay stays one below it)"
            ),
        );
    }
    let throttle_penalty = checker.duration(
        &at.key("throttle_penalty"),
        raw.throttle_penalty.as_deref(),
        defaults.throttle_penalty,
    );
    let max_age = checker.duration(&at.key("max_age"), raw.max_age.as_deref(), defaults.max_age);
    let digest_after = checker.duration(
        &at.key("digest_after"),
        raw.digest_after.as_deref(),
        std::time::Duration::from_secs(60),
    );
    Some(RobotDelivery {
        rate_per_minute,
        throttle_penalty: throttle_penalty?,
        max_age: max_age?,
        digest_after: if raw.digest.unwrap_or(true) {
            Some(digest_after?)
        } else {
            None
        },
    })
    .filter(|_| rate_per_minute >= 2)
}

fn build_robot(
    name: &str,
    raw: &raw::RawRobot,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<Robot> {
    let secret = checker.secret(
        at,
        "secret",
        raw.secret.as_deref(),
        raw.secret_file.as_deref(),
    );
    if let Some(secret) = &secret {
        use secrecy::ExposeSecret;
        if !secret.expose_secret().starts_with("SEC") {
            checker.warnings.push(format!(
                "robot `{name}`: its 加签 secret does not start with `SEC`; DingTalk's secrets do, check that it is the right value"
            ));
        }
    }

    let mut keywords = Vec::new();
    for (i, keyword) in raw.keywords.iter().enumerate() {
        let path = at.key("keywords").index(i);
        if let Some(keyword) = checker.expand(&path, keyword) {
            if keyword.trim().is_empty() {
                checker.error(&path, format!("robots.{name}.keywords: a keyword is empty"));
            } else {
                keywords.push(keyword.trim().to_owned());
            }
        }
    }
    if keywords.len() > 10 {
        checker.error(
            &at.key("keywords"),
            format!(
                "robots.{name}.keywords: DingTalk allows at most 10 keywords, found {}",
                keywords.len()
            ),
        );
    }

    let allow_host = match &raw.allow_host {
        Some(host) => checker.expand(&at.key("allow_host"), host),
        None => None,
    };

    let webhook = match (&raw.webhook, &raw.webhook_file) {
        (Some(_), Some(_)) => {
            checker.error_at_key(
                &at.key("webhook_file"),
                "`webhook` and `webhook_file` are both set: keep one",
            );
            return None;
        }
        (Some(inline), None) => checker
            .expand(&at.key("webhook"), inline)?
            .trim()
            .to_owned(),
        (None, Some(_)) => {
            use secrecy::ExposeSecret;
            checker
                .secret(at, "webhook", None, raw.webhook_file.as_deref())?
                .expose_secret()
                .to_owned()
        }
        (None, None) => String::new(),
    };

    let endpoint = if webhook.is_empty() || webhook == "log" {
        Endpoint::DryRun { secret }
    } else {
        let path = at.key(if raw.webhook.is_some() {
            "webhook"
        } else {
            "webhook_file"
        });
        // The URL carries the access token: errors describe it without echoing it.
        let url = match Url::parse(&webhook) {
            Ok(url) => url,
            Err(error) => {
                checker.error(
                    &path,
                    format!("robots.{name}.webhook: not a URL ({error}); expected https://oapi.dingtalk.com/robot/send?access_token=... or `log`"),
                );
                return None;
            }
        };
        let host_port = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let allowed = allow_host
            .as_deref()
            .is_some_and(|allowed| allowed == host_port || Some(allowed) == url.host_str());
        if allowed {
            if !matches!(url.scheme(), "http" | "https") {
                checker.error(
                    &path,
                    format!("robots.{name}.webhook: scheme must be http or https"),
                );
                return None;
            }
        } else if url.scheme() != "https" || url.host_str() != Some(DINGTALK_HOST) {
            checker.error(
                &path,
                format!(
                    "robots.{name}.webhook: must be an https URL on {DINGTALK_HOST}, not {}://{host_port}; \
                     to send elsewhere (a proxy or a mock), name that host in `allow_host`",
                    url.scheme()
                ),
            );
            return None;
        } else if !url
            .query_pairs()
            .any(|(k, v)| k == "access_token" && !v.is_empty())
        {
            checker.error(
                &path,
                format!("robots.{name}.webhook: has no access_token; copy the whole webhook URL from the robot's settings"),
            );
            return None;
        }
        Endpoint::Webhook {
            url: WebhookUrl::new(url),
            secret,
        }
    };

    Some(Robot {
        name: name.to_owned(),
        endpoint,
        keywords,
    })
}

fn build_source(
    name: &str,
    raw: &raw::RawSource,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<Source> {
    let errors_before = checker.diagnostics.len();
    let path = match &raw.path {
        Some(path) => checker.expand(&at.key("path"), path),
        None => Some(format!("/hooks/{name}")),
    };
    if let Some(path) = &path
        && (!path.starts_with('/') || path.contains(char::is_whitespace))
    {
        checker.error(
            &at.key("path"),
            format!("sources.{name}.path: `{path}` must start with `/` and contain no spaces"),
        );
    }

    let mut auth = Auth::default();
    if let Some(raw_auth) = &raw.auth {
        let auth_at = at.key("auth");
        auth.bearer = checker.secret(
            &auth_at,
            "bearer",
            raw_auth.bearer.as_deref(),
            raw_auth.bearer_file.as_deref(),
        );
        if let Some(basic) = &raw_auth.basic {
            let basic_at = auth_at.key("basic");
            let username = checker.expand(&basic_at.key("username"), &basic.username);
            let password = checker.secret(
                &basic_at,
                "password",
                basic.password.as_deref(),
                basic.password_file.as_deref(),
            );
            match (username, password) {
                (Some(username), Some(password)) if !username.is_empty() => {
                    auth.basic = Some(BasicAuth { username, password });
                }
                (Some(_), _) => checker.error(
                    &basic_at,
                    format!("sources.{name}.auth.basic: needs a non-empty username and password"),
                ),
                _ => {}
            }
        }
    }

    let secret = checker.secret(
        at,
        "secret",
        raw.secret.as_deref(),
        raw.secret_file.as_deref(),
    );
    let has_secret_key = raw.secret.is_some() || raw.secret_file.is_some();
    if has_secret_key && matches!(raw.kind, SourceKind::Alertmanager | SourceKind::Json) {
        checker.error_at_key(
            &at.key(if raw.secret.is_some() { "secret" } else { "secret_file" }),
            format!(
                "sources.{name}: {} senders do not sign requests; use `auth: {{ bearer: ... }}` or `auth: {{ basic: ... }}`",
                raw.kind
            ),
        );
    }
    if raw.dedup.is_some() && raw.kind != SourceKind::Json {
        checker.error_at_key(
            &at.key("dedup"),
            format!(
                "sources.{name}.dedup: only json sources take a dedup template; {} events carry their own key",
                raw.kind
            ),
        );
    }
    for (key, value) in [
        ("signature_header", &raw.signature_header),
        ("timestamp_header", &raw.timestamp_header),
    ] {
        if value.is_some() && raw.kind != SourceKind::Grafana {
            checker.error_at_key(
                &at.key(key),
                format!("sources.{name}.{key}: only grafana sources have this setting"),
            );
        }
    }
    let signature_header = raw
        .signature_header
        .as_deref()
        .and_then(|h| checker.expand(&at.key("signature_header"), h));
    let timestamp_header = raw
        .timestamp_header
        .as_deref()
        .and_then(|h| checker.expand(&at.key("timestamp_header"), h));
    for (key, header) in [
        ("signature_header", &signature_header),
        ("timestamp_header", &timestamp_header),
    ] {
        if let Some(header) = header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            checker.error(
                &at.key(key),
                format!("sources.{name}.{key}: `{header}` is not a valid header name"),
            );
        }
    }

    if auth.bearer.is_none() && auth.basic.is_none() && secret.is_none() {
        checker.warnings.push(format!(
            "source `{name}` accepts unauthenticated requests: set `auth` (or, for github/gitlab/grafana, `secret`) before exposing it"
        ));
    }

    if checker.diagnostics.len() > errors_before {
        return None;
    }
    Some(Source {
        name: name.to_owned(),
        kind: raw.kind,
        path: path?,
        auth,
        secret,
        signature_header,
        timestamp_header,
    })
}

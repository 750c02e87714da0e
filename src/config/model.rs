//! A validated configuration: what the rest of dingrelay sees of `rules.yaml`. Every value is
//! expanded, every reference resolved and every template compiled.

use std::net::SocketAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use secrecy::SecretString;

use crate::dingtalk::Robot;
use crate::rules::RuleSet;
use crate::source::Source;

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
    /// Enterprise internal apps, by name: their robots hold them too.
    pub apps: IndexMap<String, std::sync::Arc<crate::dingtalk::App>>,
    pub robots: IndexMap<String, std::sync::Arc<Robot>>,
    pub sources: IndexMap<String, Source>,
    pub rules: RuleSet,
    pub intake: IntakeSettings,
    pub delivery: DeliverySettings,
    /// Per robot, by name: how its worker delivers.
    pub robot_delivery: IndexMap<String, RobotDelivery>,
    /// The web console; `None` keeps it off.
    pub console: Option<ConsoleSettings>,
    /// The bearer token of `POST /-/reload`; `None` keeps the route off.
    pub reload_token: Option<SecretString>,
    /// Things that work but deserve the operator's attention (an unauthenticated source, ...).
    pub warnings: Vec<String>,
    /// The file's text, to show the lines later problems are about (`check`'s audit).
    pub source_text: SourceText,
}

/// A config file's text. Its `Debug` shows only its length: the text may hold secrets, and
/// diagnostics show its lines only through [`crate::yaml::diagnostic::render`], which masks them.
#[derive(Clone, Default)]
pub struct SourceText(pub std::sync::Arc<str>);

impl std::fmt::Debug for SourceText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourceText({} bytes)", self.0.len())
    }
}

/// The web console's settings, checked: its app exists and has an AgentId.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The app's name under `apps:`.
    pub app: String,
    pub corp_id: String,
    pub session_ttl: std::time::Duration,
    /// Where silences are created; `None`: the console cannot silence.
    pub alertmanager: Option<url::Url>,
    /// The console's public address: messages carry Silence buttons only when it is set.
    pub url: Option<url::Url>,
    /// The robot told "silenced by <name> until <time>" after a silence (a name under `robots:`,
    /// checked).
    pub notify: Option<String>,
    /// The signing key; `None`: a random one per start.
    pub signer: Option<crate::links::Signer>,
}

/// How webhooks are taken in.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Larger bodies are answered 413. Default 26 MiB: GitHub's cap is 25 MB.
    pub body_limit: usize,
    /// A request that takes longer (reading the body included) is answered 503/408.
    pub request_timeout: std::time::Duration,
    /// An event whose dedup key was stored within this window is not stored again.
    pub dedup_window: std::time::Duration,
    /// Routed events are purged from the event log after this long (at least `dedup_window`).
    pub keep_events: std::time::Duration,
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

impl Config {
    /// The robot of this name.
    pub fn robot(&self, name: &str) -> Option<&std::sync::Arc<Robot>> {
        self.robots.get(name)
    }
}

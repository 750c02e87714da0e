//! A test file validated against its config: every test is ready to run, with what it expects.

use http::HeaderMap;

use crate::config::Config;
use crate::yaml::Location;

/// The time templates see when a test file does not set `now`.
pub const DEFAULT_NOW: &str = "2026-01-01T00:00:00Z";

/// The statuses a test may expect in `refused`: what the daemon answers a payload it refuses.
pub const REFUSAL_STATUSES: [u16; 5] = [400, 401, 413, 415, 422];

/// A test file, validated against its config: every test is ready to run.
pub(super) struct Suite {
    /// The test file, as given.
    pub(super) file: String,
    /// The config file, as found from the test file.
    pub(super) config_file: String,
    /// The config, loaded with the test file's `env` as its variables.
    pub(super) config: Config,
    pub(super) cases: Vec<Case>,
}

/// One test.
pub(super) struct Case {
    pub(super) name: String,
    /// Where the test starts in the test file.
    pub(super) location: Location,
    /// The source (by name) the payload is posted to.
    pub(super) source: String,
    pub(super) headers: HeaderMap,
    /// The raw query string.
    pub(super) query: String,
    /// The request body, byte for byte.
    pub(super) body: Vec<u8>,
    /// The time templates see: the test's `now`, else the file's, else [`DEFAULT_NOW`].
    pub(super) now: jiff::Timestamp,
    pub(super) expect: Expect,
}

/// What a test expects of its payload.
pub(super) enum Expect {
    /// Exactly these messages, in this order.
    Messages(Vec<Expected>),
    /// The daemon refuses the payload with this status, and its reason contains these texts.
    Refused {
        status: u16,
        error_contains: Vec<String>,
    },
}

/// One expected message and what must hold of it.
pub(super) struct Expected {
    pub(super) rule: String,
    /// Named in the test, or the rule's only robot.
    pub(super) robot: String,
    /// Where the expectation is written in the test file.
    pub(super) location: Option<Location>,
    /// DingTalk's spelling (`actionCard`), whichever the test used.
    pub(super) msgtype: Option<&'static str>,
    pub(super) title: Option<String>,
    pub(super) title_contains: Vec<String>,
    pub(super) text: Option<String>,
    pub(super) text_contains: Vec<String>,
    pub(super) text_not_contains: Vec<String>,
    /// `atMobiles` and `atUserIds` together, in any order.
    pub(super) mentions: Option<Vec<String>>,
    /// Whom a robot of an app sends it to (user ids), in order.
    pub(super) to: Option<Vec<String>>,
    pub(super) at_all: Option<bool>,
    /// An actionCard's button titles, in order.
    pub(super) buttons: Option<Vec<String>>,
    /// How many links a feedCard has.
    pub(super) links: Option<usize>,
    /// The message's main link (see [`crate::dingtalk::Message::link`]).
    pub(super) url: Option<String>,
}

impl Expected {
    /// `rule `x` -> robot `y``.
    pub(super) fn target(&self) -> String {
        format!("rule `{}` -> robot `{}`", self.rule, self.robot)
    }
}

/// Which config the test files run against.
#[derive(Debug, Clone, Default)]
pub struct ConfigChoice {
    /// `--config`: this one, whatever the test files name.
    pub given: Option<std::path::PathBuf>,
    /// `DINGRELAY_CONFIG`: this one for a test file that names none (instead of the
    /// `rules.yaml` next to it).
    pub default: Option<std::path::PathBuf>,
}

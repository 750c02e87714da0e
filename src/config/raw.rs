//! The raw shape of `rules.yaml` (its rules' shape is [`crate::rules::raw`]), exactly as written: strings are not yet expanded, references not
//! yet resolved, templates not yet compiled. Unknown keys are errors.
//!
//! Keys use snake_case throughout; DingTalk's own casing (`messageUrl` vs `messageURL`, ...) is
//! applied when messages are built, so users never have to remember it.

use indexmap::IndexMap;
use serde::Deserialize;

use crate::rules::raw::RawRule;
use crate::source::SourceKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address the daemon listens on.
    #[serde(default)]
    pub listen: Option<String>,
    /// Where the outbox lives.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// IANA time zone for times shown in messages.
    #[serde(default)]
    pub timezone: Option<String>,
    /// How long a redelivered event (same delivery id / alert group state) is recognised.
    #[serde(default)]
    pub dedup_window: Option<String>,
    /// The largest request body accepted (`25MiB`, `512KiB`, or bytes).
    #[serde(default)]
    pub body_limit: Option<BodySize>,
    /// How long one webhook request may take, body included.
    #[serde(default)]
    pub request_timeout: Option<String>,
    /// Connect timeout of requests to DingTalk.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// Total timeout of one request to DingTalk.
    #[serde(default)]
    pub send_timeout: Option<String>,
    /// How long shutdown waits for sends in flight.
    #[serde(default)]
    pub shutdown_timeout: Option<String>,
    /// How long delivered messages stay in the outbox (for `outbox list`).
    #[serde(default)]
    pub keep_delivered: Option<String>,
    /// How long routed events stay in the event log (for re-routing, dry runs and dedup).
    #[serde(default)]
    pub keep_events: Option<String>,
    /// Enables `POST /-/reload`, for callers presenting this bearer token. Absent: the route is
    /// off (SIGHUP still reloads).
    #[serde(default)]
    pub reload_token: Option<String>,
    #[serde(default)]
    pub reload_token_file: Option<String>,
    /// Enterprise internal apps whose robots (group, one-to-one, work notifications) send.
    #[serde(default)]
    pub apps: IndexMap<String, RawApp>,
    #[serde(default)]
    pub robots: IndexMap<String, RawRobot>,
    #[serde(default)]
    pub sources: IndexMap<String, RawSource>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// The web console (off when absent).
    #[serde(default)]
    pub console: Option<RawConsole>,
}

/// The web console: which app signs people in (免登), for which organisation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// The app (under `apps:`) whose token signs people in; it needs an `agent_id`.
    pub app: String,
    /// The organisation's corpId (`ding...`), for `requestAuthCode` and `dd.config`.
    pub corp_id: String,
    /// How long a session lasts (default 8h).
    #[serde(default)]
    pub session: Option<String>,
    /// The Alertmanager silences are created in (`http://alertmanager:9093`).
    #[serde(default)]
    pub alertmanager: Option<String>,
    /// The robot that tells the group when someone silences an alert from the console.
    #[serde(default)]
    pub notify: Option<String>,
    /// The console's public address, for the Silence buttons messages carry
    /// (`silence_button(...)` in templates); needs `alertmanager` and `session_key_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the key sessions and links are signed with (at least 32 bytes); without
    /// it, a random key per start (a restart signs everyone out).
    #[serde(default)]
    pub session_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRobot {
    /// `https://oapi.dingtalk.com/robot/send?access_token=...`, or `log` (or unset) for a dry run.
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub webhook_file: Option<String>,
    /// The 加签 secret (`SEC...`).
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// A host (`host` or `host:port`) the webhook may point at instead of oapi.dingtalk.com, over
    /// http or https: for tests, proxies and mocks.
    #[serde(default)]
    pub allow_host: Option<String>,
    /// Messages per minute DingTalk allows this robot (20); dingrelay stays one below.
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
    /// How long the robot pauses after DingTalk answers "too fast" (its block lasts 10 minutes).
    #[serde(default)]
    pub throttle_penalty: Option<String>,
    /// How long a message is retried on transient errors before it is dead-lettered.
    #[serde(default)]
    pub max_age: Option<String>,
    /// Merge a backlog into digests (default true).
    #[serde(default)]
    pub digest: Option<bool>,
    /// Merge when the backlog would take longer than this to drain at the robot's rate.
    #[serde(default)]
    pub digest_after: Option<String>,
    /// The app (under `apps:`) this robot belongs to; instead of `webhook`.
    #[serde(default)]
    pub app: Option<String>,
    /// `group`, `one_to_one` or `work_notification`; `group` when `conversation` is given.
    #[serde(default)]
    pub kind: Option<AppRobotKindName>,
    /// The robotCode; the app's appKey by default (what DingTalk uses for internal apps).
    #[serde(default)]
    pub robot_code: Option<String>,
    /// A group app robot's `openConversationId` (`cid...==`).
    #[serde(default)]
    pub conversation: Option<String>,
    /// User ids, or templates naming them from the event (`{{ labels.owner }}`).
    #[serde(default)]
    pub users: Vec<String>,
    /// Work notifications: department ids.
    #[serde(default)]
    pub departments: Vec<String>,
}

/// An enterprise internal app: the credentials its robots' access token is fetched with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// The AppKey (Client ID), `ding...`.
    pub app_key: String,
    /// The AppSecret (Client Secret): `${ENV}`, or in a file (a systemd credential).
    #[serde(default)]
    pub app_secret: Option<String>,
    #[serde(default)]
    pub app_secret_file: Option<String>,
    /// The AgentId, for work notifications.
    #[serde(default)]
    pub agent_id: Option<u64>,
    /// Where DingTalk's app APIs are, when not at api.dingtalk.com and oapi.dingtalk.com: one
    /// address serving both (a stand-in, a proxy).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// How an app robot reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRobotKindName {
    /// A group the app's robot was added to.
    Group,
    /// The robot's one-to-one chat with each person.
    OneToOne,
    /// The app's work notification (工作通知).
    WorkNotification,
}

/// A size: a number of bytes, or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BodySize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kind: SourceKind,
    /// HTTP path; defaults to `/hooks/<name>`.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// GitHub HMAC key, GitLab token or Grafana HMAC key.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
    #[serde(default)]
    pub signature_header: Option<String>,
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// json sources: a template giving a key that identifies an event across redeliveries.
    #[serde(default)]
    pub dedup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub bearer: Option<String>,
    #[serde(default)]
    pub bearer_file: Option<String>,
    #[serde(default)]
    pub basic: Option<RawBasic>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
}

//! Prometheus metrics of the daemon, exposed in the OpenMetrics text format.
//!
//! One [`Metrics`] is created at start and shared as `Arc<Metrics>` by intake, the delivery workers
//! and the reload code. Every method is infallible and cheap: an atomic add, after a short map
//! look-up under a lock that is only held for writing when a series is created or removed.
//! [`Metrics::encode`] renders everything for a scrape, served with [`Metrics::CONTENT_TYPE`].
//!
//! # The metrics
//!
//! Counters are named here without their `_total` suffix, which the encoder adds (so the output
//! reads `dingrelay_requests_total`, never `_total_total`); units are appended by the encoder too.
//!
//! Intake:
//!
//! - `dingrelay_requests_total{source,status}`: webhook requests answered, by source and the HTTP
//!   status of the answer (`202`, `400`, `401`, `404`, `405`, `413`, `415`, `503`, `408`).
//! - `dingrelay_auth_failures_total{source}`: requests refused because authentication was missing or
//!   wrong (each is also counted in `dingrelay_requests_total` with status `401`).
//! - `dingrelay_events_duplicate_total{source}`: webhooks answered `202` but not stored again,
//!   because the same event (its sender's dedup key) was stored within `dedup_window`.
//!
//! Routing (the stage between the event log and the robots' queues):
//!
//! - `dingrelay_events_routed_total`: stored events routed (a re-route counts again).
//! - `dingrelay_routing_lag_seconds`: how long the last routed event waited in the event log;
//!   growing means routing falls behind intake.
//! - `dingrelay_rule_matches_total{rule}`: events a rule matched.
//! - `dingrelay_rule_failures_total{rule}`: events a rule failed on (its template failed, or its
//!   message could not be made valid for a robot); each sent a fallback message instead.
//! - `dingrelay_messages_queued_total{robot}`: messages committed to the outbox for a robot.
//!
//! Delivery (one worker per robot):
//!
//! - `dingrelay_messages_sent_total{robot}`: messages delivered (DingTalk answered `errcode` 0); a
//!   digest counts every message it merged.
//! - `dingrelay_requests_sent_total{robot,outcome}`: requests DingTalk accepted (`outcome="ok"`); a
//!   digest is one request.
//! - `dingrelay_send_failures_total{robot,class}`: failed sends by class: `throttled` (DingTalk said
//!   "too fast"), `transient` (retried with backoff), `permanent` (dead-lettered at once).
//! - `dingrelay_throttle_pauses_total{robot}`: times the robot paused for `throttle_penalty`.
//! - `dingrelay_retries_total{robot}`: messages scheduled for another attempt.
//! - `dingrelay_dead_letters_total{robot}`: messages dead-lettered (permanent error or `max_age`).
//! - `dingrelay_digests_total{robot}`: digests sent; `dingrelay_digest_merged_messages_total{robot}`:
//!   messages merged into them.
//! - `dingrelay_delivery_latency_seconds{robot}`: histogram of the time from acceptance (the 202) to
//!   DingTalk's `errcode` 0, with buckets from 0.1 s to 24 h (`max_age`), including the 60 s of
//!   `digest_after` and the 10 minutes of `throttle_penalty`.
//! - `dingrelay_outbox_pending{robot}`, `dingrelay_outbox_dead{robot}`,
//!   `dingrelay_outbox_oldest_pending_age_seconds{robot}`: gauges of the outbox, as last reported
//!   by [`Metrics::outbox_report`]: a series for exactly the robots of that report. The scrape
//!   reports every configured robot and every robot with pending or dead messages, so messages
//!   queued for a robot that a reload removed stay visible (and the oldest-pending alert can fire
//!   for them) until they are delivered to it again or purged; then its series go.
//!
//! Apps (enterprise internal apps, whose robots send with the app's access token):
//!
//! - `dingrelay_app_token_fetches_total{app,result}`: access-token fetches, `result="ok"`,
//!   `"refused"` (DingTalk refused the appKey or appSecret: fix the config) or `"unavailable"`
//!   (no usable answer). One per app at start-up, then about one per expiry (7200 s): more means
//!   tokens are refused early (revoked, or fetched elsewhere).
//!
//! Configuration and process:
//!
//! - `dingrelay_config_reloads_total{result}`: reloads, `result="ok"` or `"invalid"` (the running
//!   configuration was kept).
//! - `dingrelay_config_robots`, `dingrelay_config_sources`, `dingrelay_config_rules`: gauges of the
//!   configuration in force.
//! - `dingrelay_build_info{version}`: always 1; `version` is the crate version.
//!
//! A labelled family appears in the output only once it has a series.
//!
//! # Labels are bounded
//!
//! Every series costs memory for the life of the process and storage in Prometheus, so labels
//! only take values from bounded sets: `source`, `robot` and `rule` are names written in the
//! configuration (callers must never pass a name taken from a request, such as an unknown path),
//! or, for the outbox gauges, names of robots that still have messages in the outbox, which a
//! configuration once had;
//! `status` is one of the few statuses intake answers; `class`, `outcome` and `result` are fixed
//! enums. A label never holds a URL, a token, a secret, a payload value or an error message: the
//! webhook URL carries the robot's access token, and scrapes are often less protected than logs.
//!
//! Label values are escaped (`\\`, `\"`, `\n`) as OpenMetrics requires, which prometheus-client
//! does not do by itself, so even an odd name in the configuration keeps the output valid.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::text;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the delivery latency buckets, in seconds: sub-second sends, the wait of a busy
/// robot at 19 messages a minute, `digest_after` (60 s), `throttle_penalty` (10 min), retries with
/// backoff over hours, and `max_age` (24 h).
const LATENCY_BUCKETS: [f64; 20] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
    7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// Why a send to DingTalk failed, as the delivery worker classified DingTalk's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// "Too fast" (`130101`, `410100`): the robot pauses for `throttle_penalty`.
    Throttled,
    /// Retried with backoff until `max_age`.
    Transient,
    /// Dead-lettered at once.
    Permanent,
}

impl FailureClass {
    /// The label value: `throttled`, `transient` or `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Throttled => "throttled",
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
        }
    }
}

impl EncodeLabelValue for FailureClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// How a configuration reload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new configuration is in force.
    Ok,
    /// The new configuration was refused; the running one was kept.
    Invalid,
}

impl ReloadResult {
    /// The label value: `ok` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Invalid => "invalid",
        }
    }
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// One robot's outbox as a scrape reads it: a line of [`Metrics::outbox_report`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutboxState<'a> {
    pub robot: &'a str,
    /// Messages waiting to be sent.
    pub pending: u64,
    /// Dead-lettered messages kept.
    pub dead: u64,
    /// How long the oldest pending message has waited; a negative, NaN or infinite age is
    /// reported as 0.
    pub oldest_pending_age_seconds: f64,
}

/// A name from the configuration used as a label value, escaped as OpenMetrics requires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Name(String);

impl Name {
    fn new(name: &str) -> Name {
        Name(name.to_owned())
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    source: Name,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    rule: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RobotLabels {
    robot: Name,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    robot: Name,
    outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    robot: Name,
    class: FailureClass,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

/// How an access-token fetch ended (`dingrelay_app_token_fetches_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenFetch {
    Ok,
    Refused,
    Unavailable,
}

impl EncodeLabelValue for TokenFetch {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(match self {
            TokenFetch::Ok => "ok",
            TokenFetch::Refused => "refused",
            TokenFetch::Unavailable => "unavailable",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenFetchLabels {
    app: Name,
    result: TokenFetch,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Counters<L> = Family<L, Counter>;
type Gauges = Family<RobotLabels, Gauge>;
type FloatGauges = Family<RobotLabels, Gauge<f64, AtomicU64>>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of the daemon, and the registry that encodes them. Share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Counters<RequestLabels>,
    auth_failures: Counters<SourceLabels>,
    rule_matches: Counters<RuleLabels>,
    rule_failures: Counters<RuleLabels>,
    queued: Counters<RobotLabels>,
    duplicates: Counters<SourceLabels>,
    events_routed: Counter,
    routing_lag: Gauge<f64, AtomicU64>,
    messages_sent: Counters<RobotLabels>,
    requests_sent: Counters<OutcomeLabels>,
    send_failures: Counters<FailureLabels>,
    throttle_pauses: Counters<RobotLabels>,
    retries: Counters<RobotLabels>,
    dead_letters: Counters<RobotLabels>,
    digests: Counters<RobotLabels>,
    digest_merged: Counters<RobotLabels>,
    delivery_latency: Family<RobotLabels, Histogram>,
    outbox_pending: Gauges,
    outbox_dead: Gauges,
    outbox_oldest_pending_age: FloatGauges,
    /// The robots with outbox gauge series: those of the last [`Metrics::outbox_report`]. Held
    /// for the whole of a report, so two scrapes at once leave the series of one of them.
    outbox_robots: Mutex<BTreeSet<String>>,
    reloads: Counters<ReloadLabels>,
    token_fetches: Counters<TokenFetchLabels>,
    config_robots: Gauge,
    config_sources: Gauge,
    config_rules: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// The content type of [`Metrics::encode`]'s output, for the scrape response.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Creates and registers every metric, with `dingrelay_build_info`.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            auth_failures: Family::default(),
            rule_matches: Family::default(),
            rule_failures: Family::default(),
            queued: Family::default(),
            duplicates: Family::default(),
            events_routed: Counter::default(),
            routing_lag: Gauge::default(),
            messages_sent: Family::default(),
            requests_sent: Family::default(),
            send_failures: Family::default(),
            throttle_pauses: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            digests: Family::default(),
            digest_merged: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram),
            outbox_pending: Family::default(),
            outbox_dead: Family::default(),
            outbox_oldest_pending_age: Family::default(),
            outbox_robots: Mutex::new(BTreeSet::new()),
            reloads: Family::default(),
            token_fetches: Family::default(),
            config_robots: Gauge::default(),
            config_sources: Gauge::default(),
            config_rules: Gauge::default(),
        };
        // Both results exist from the start, so `increase()` sees the first invalid reload.
        for result in [ReloadResult::Ok, ReloadResult::Invalid] {
            drop(metrics.reloads.get_or_create(&ReloadLabels { result }));
        }
        metrics.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "dingrelay_build",
            "Build information of dingrelay; the value is always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register(
            "dingrelay_requests",
            "Webhook requests answered, by source and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "dingrelay_auth_failures",
            "Webhook requests refused because authentication was missing or wrong",
            self.auth_failures.clone(),
        );
        r.register(
            "dingrelay_rule_matches",
            "Events matched by a rule",
            self.rule_matches.clone(),
        );
        r.register(
            "dingrelay_rule_failures",
            "Events a rule failed on; a fallback message was sent in its place",
            self.rule_failures.clone(),
        );
        r.register(
            "dingrelay_events_routed",
            "Stored events routed through the rules (a re-route counts again)",
            self.events_routed.clone(),
        );
        r.register_with_unit(
            "dingrelay_routing_lag",
            "How long the last routed event waited in the event log",
            Unit::Seconds,
            self.routing_lag.clone(),
        );
        r.register(
            "dingrelay_messages_queued",
            "Messages committed to the outbox",
            self.queued.clone(),
        );
        r.register(
            "dingrelay_events_duplicate",
            "Webhooks not stored again because the same event was stored within dedup_window",
            self.duplicates.clone(),
        );
        r.register(
            "dingrelay_messages_sent",
            "Messages delivered to DingTalk (errcode 0); a digest counts each message it merged",
            self.messages_sent.clone(),
        );
        r.register(
            "dingrelay_requests_sent",
            "Requests to DingTalk by outcome",
            self.requests_sent.clone(),
        );
        r.register(
            "dingrelay_send_failures",
            "Failed sends to DingTalk by class: throttled, transient (retried) or permanent (dead-lettered)",
            self.send_failures.clone(),
        );
        r.register(
            "dingrelay_throttle_pauses",
            "Pauses for throttle_penalty after DingTalk answered too fast",
            self.throttle_pauses.clone(),
        );
        r.register(
            "dingrelay_retries",
            "Messages scheduled for another attempt after a transient failure",
            self.retries.clone(),
        );
        r.register(
            "dingrelay_dead_letters",
            "Messages dead-lettered after a permanent failure or at max_age",
            self.dead_letters.clone(),
        );
        r.register(
            "dingrelay_digests",
            "Digests sent, each merging a backlog of messages",
            self.digests.clone(),
        );
        r.register(
            "dingrelay_digest_merged_messages",
            "Messages merged into digests",
            self.digest_merged.clone(),
        );
        r.register_with_unit(
            "dingrelay_delivery_latency",
            "Time from the acceptance of a message to DingTalk's errcode 0",
            Unit::Seconds,
            self.delivery_latency.clone(),
        );
        r.register(
            "dingrelay_outbox_pending",
            "Messages waiting in the outbox",
            self.outbox_pending.clone(),
        );
        r.register(
            "dingrelay_outbox_dead",
            "Dead-lettered messages kept in the outbox",
            self.outbox_dead.clone(),
        );
        r.register_with_unit(
            "dingrelay_outbox_oldest_pending_age",
            "Age of the oldest message waiting in the outbox, 0 when none",
            Unit::Seconds,
            self.outbox_oldest_pending_age.clone(),
        );
        r.register(
            "dingrelay_config_reloads",
            "Configuration reloads by result; on invalid the running configuration was kept",
            self.reloads.clone(),
        );
        r.register(
            "dingrelay_app_token_fetches",
            "Access-token fetches of each app, by result",
            self.token_fetches.clone(),
        );
        r.register(
            "dingrelay_config_robots",
            "Robots in the configuration in force",
            self.config_robots.clone(),
        );
        r.register(
            "dingrelay_config_sources",
            "Sources in the configuration in force",
            self.config_sources.clone(),
        );
        r.register(
            "dingrelay_config_rules",
            "Rules in the configuration in force",
            self.config_rules.clone(),
        );
        self
    }

    /// The OpenMetrics text of every metric, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail, nor can any label or value encoding used here.
        if text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    // Intake.

    /// A webhook request to `source` was answered with `status`.
    pub fn request(&self, source: &str, status: u16) {
        let labels = RequestLabels {
            source: Name::new(source),
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// A request to `source` failed authentication.
    pub fn auth_failure(&self, source: &str) {
        let labels = SourceLabels {
            source: Name::new(source),
        };
        self.auth_failures.get_or_create(&labels).inc();
    }

    /// `rule` matched an event.
    pub fn rule_matched(&self, rule: &str) {
        let labels = RuleLabels {
            rule: Name::new(rule),
        };
        self.rule_matches.get_or_create(&labels).inc();
    }

    /// `n` messages for `robot` were committed to the outbox.
    pub fn queued(&self, robot: &str, n: u64) {
        inc_robot(&self.queued, robot, n);
    }

    /// A webhook of `source` was a duplicate of a stored event.
    pub fn duplicate_event(&self, source: &str) {
        let labels = SourceLabels {
            source: Name::new(source),
        };
        self.duplicates.get_or_create(&labels).inc();
    }

    /// A rule failed on an event (a fallback was sent instead).
    pub fn rule_failed(&self, rule: &str) {
        let labels = RuleLabels {
            rule: Name::new(rule),
        };
        self.rule_failures.get_or_create(&labels).inc();
    }

    /// An event was routed after waiting `lag_seconds` in the event log.
    pub fn routed(&self, lag_seconds: f64) {
        self.events_routed.inc();
        self.routing_lag.set(lag_seconds.max(0.0));
    }

    // Delivery.

    /// DingTalk accepted one request for `robot` carrying `messages` messages (more than one for a
    /// digest).
    pub fn sent(&self, robot: &str, messages: u64) {
        inc_robot(&self.messages_sent, robot, messages);
        let labels = OutcomeLabels {
            robot: Name::new(robot),
            outcome: "ok",
        };
        self.requests_sent.get_or_create(&labels).inc();
    }

    /// A send for `robot` failed.
    pub fn failed(&self, robot: &str, class: FailureClass) {
        let labels = FailureLabels {
            robot: Name::new(robot),
            class,
        };
        self.send_failures.get_or_create(&labels).inc();
    }

    /// `robot` paused for its `throttle_penalty`.
    pub fn throttle_pause(&self, robot: &str) {
        inc_robot(&self.throttle_pauses, robot, 1);
    }

    /// `n` messages for `robot` were scheduled for another attempt.
    pub fn retry(&self, robot: &str, n: u64) {
        inc_robot(&self.retries, robot, n);
    }

    /// `n` messages for `robot` were dead-lettered.
    pub fn dead_letter(&self, robot: &str, n: u64) {
        inc_robot(&self.dead_letters, robot, n);
    }

    /// A digest merging `merged` messages was sent to `robot`.
    pub fn digest(&self, robot: &str, merged: u64) {
        inc_robot(&self.digests, robot, 1);
        inc_robot(&self.digest_merged, robot, merged);
    }

    /// A message for `robot` was delivered `seconds` after it was accepted. A negative value (the
    /// clock went back) counts as 0; a NaN or infinite one is ignored.
    pub fn delivery_latency(&self, robot: &str, seconds: f64) {
        if !seconds.is_finite() {
            return;
        }
        let labels = RobotLabels {
            robot: Name::new(robot),
        };
        self.delivery_latency
            .get_or_create(&labels)
            .observe(seconds.max(0.0));
    }

    /// The outbox gauges, all at once: a series for each robot of `states`, set to its state, and
    /// none for any other robot (the series of a robot left out since the last report are
    /// removed). Its counters stay, as counters should (removing them would read as a reset if
    /// the robot came back).
    pub fn outbox_report<'a>(&self, states: impl IntoIterator<Item = OutboxState<'a>>) {
        let mut shown = self
            .outbox_robots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut reported = BTreeSet::new();
        for state in states {
            let labels = RobotLabels {
                robot: Name::new(state.robot),
            };
            let age = state.oldest_pending_age_seconds;
            let age = if age.is_finite() { age.max(0.0) } else { 0.0 };
            self.outbox_pending
                .get_or_create(&labels)
                .set(saturating_i64(state.pending));
            self.outbox_dead
                .get_or_create(&labels)
                .set(saturating_i64(state.dead));
            self.outbox_oldest_pending_age
                .get_or_create(&labels)
                .set(age);
            reported.insert(state.robot.to_owned());
        }
        for gone in shown.difference(&reported) {
            let labels = RobotLabels {
                robot: Name::new(gone),
            };
            self.outbox_pending.remove(&labels);
            self.outbox_dead.remove(&labels);
            self.outbox_oldest_pending_age.remove(&labels);
        }
        *shown = reported;
    }

    // Configuration.

    /// A configuration reload ended with `result`.
    pub fn reload(&self, result: ReloadResult) {
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    // Apps.

    /// An access token of `app` was fetched (or the fetch failed).
    pub fn token_fetch(&self, app: &str, result: TokenFetch) {
        let labels = TokenFetchLabels {
            app: Name::new(app),
            result,
        };
        self.token_fetches.get_or_create(&labels).inc();
    }

    /// The size of the configuration in force.
    pub fn set_config_info(&self, robots: u64, sources: u64, rules: u64) {
        self.config_robots.set(saturating_i64(robots));
        self.config_sources.set(saturating_i64(sources));
        self.config_rules.set(saturating_i64(rules));
    }
}

fn inc_robot(family: &Counters<RobotLabels>, robot: &str, n: u64) {
    let labels = RobotLabels {
        robot: Name::new(robot),
    };
    family.get_or_create(&labels).inc_by(n);
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    /// Asserts that `text` has every line of `expected`.
    #[track_caller]
    fn assert_has(text: &str, expected: &[&str]) {
        let lines = lines(text);
        for line in expected {
            assert!(lines.contains(line), "missing line `{line}` in:\n{text}");
        }
    }

    /// A light check of the OpenMetrics text: every line is a comment or `name{labels} value`,
    /// and the last line is `# EOF`.
    #[track_caller]
    fn assert_well_formed(text: &str) {
        assert!(text.ends_with("# EOF\n"), "no EOF at the end:\n{text}");
        for line in text.lines() {
            if line.starts_with("# ") {
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .unwrap_or_else(|| panic!("bad line `{line}`"));
            let name = &line[..name_end];
            assert!(
                name.starts_with("dingrelay_")
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad metric name in `{line}`"
            );
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value == "+Inf" || value.parse::<f64>().is_ok(),
                "bad value in `{line}`"
            );
        }
    }

    #[test]
    fn empty_metrics_have_build_info_config_and_eof() {
        let m = Metrics::new();
        let text = m.encode();
        assert_well_formed(&text);
        let build = format!(
            "dingrelay_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert_has(
            &text,
            &[
                "# TYPE dingrelay_build info",
                &build,
                "# TYPE dingrelay_config_reloads counter",
                "dingrelay_config_reloads_total{result=\"ok\"} 0",
                "dingrelay_config_reloads_total{result=\"invalid\"} 0",
                "dingrelay_config_robots 0",
            ],
        );
        assert!(text.ends_with("\n# EOF\n"));
        assert!(!text.contains("_total_total"));
        // Families without series are left out.
        assert!(!text.contains("dingrelay_requests_total"), "{text}");
    }

    #[test]
    fn intake_counters() {
        let m = Metrics::new();
        m.request("am", 202);
        m.request("am", 202);
        m.request("am", 401);
        m.auth_failure("am");
        m.rule_matched("alerts-firing");
        m.queued("ops", 3);
        m.duplicate_event("am");
        m.duplicate_event("am");
        m.rule_failed("alerts-firing");
        m.routed(1.5);
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "# HELP dingrelay_requests Webhook requests answered, by source and HTTP status.",
                "# TYPE dingrelay_requests counter",
                "dingrelay_requests_total{source=\"am\",status=\"202\"} 2",
                "dingrelay_requests_total{source=\"am\",status=\"401\"} 1",
                "dingrelay_auth_failures_total{source=\"am\"} 1",
                "dingrelay_rule_matches_total{rule=\"alerts-firing\"} 1",
                "dingrelay_messages_queued_total{robot=\"ops\"} 3",
                "dingrelay_events_duplicate_total{source=\"am\"} 2",
                "dingrelay_rule_failures_total{rule=\"alerts-firing\"} 1",
                "dingrelay_events_routed_total 1",
                "dingrelay_routing_lag_seconds 1.5",
            ],
        );
    }

    #[test]
    fn delivery_counters() {
        let m = Metrics::new();
        m.sent("ops", 1);
        m.sent("ops", 5);
        m.failed("ops", FailureClass::Throttled);
        m.failed("ops", FailureClass::Transient);
        m.failed("ops", FailureClass::Transient);
        m.failed("dev", FailureClass::Permanent);
        m.throttle_pause("ops");
        m.retry("ops", 4);
        m.dead_letter("dev", 1);
        m.digest("ops", 5);
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "dingrelay_messages_sent_total{robot=\"ops\"} 6",
                "dingrelay_requests_sent_total{robot=\"ops\",outcome=\"ok\"} 2",
                "dingrelay_send_failures_total{robot=\"ops\",class=\"throttled\"} 1",
                "dingrelay_send_failures_total{robot=\"ops\",class=\"transient\"} 2",
                "dingrelay_send_failures_total{robot=\"dev\",class=\"permanent\"} 1",
                "dingrelay_throttle_pauses_total{robot=\"ops\"} 1",
                "dingrelay_retries_total{robot=\"ops\"} 4",
                "dingrelay_dead_letters_total{robot=\"dev\"} 1",
                "dingrelay_digests_total{robot=\"ops\"} 1",
                "dingrelay_digest_merged_messages_total{robot=\"ops\"} 5",
            ],
        );
    }

    #[test]
    fn latency_histogram_buckets() {
        let m = Metrics::new();
        m.delivery_latency("ops", 0.05);
        m.delivery_latency("ops", 42.0);
        m.delivery_latency("ops", 100_000.0);
        m.delivery_latency("ops", -1.0); // counts as 0
        m.delivery_latency("ops", f64::NAN); // ignored
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "# TYPE dingrelay_delivery_latency_seconds histogram",
                "# UNIT dingrelay_delivery_latency_seconds seconds",
                "dingrelay_delivery_latency_seconds_count{robot=\"ops\"} 4",
                "dingrelay_delivery_latency_seconds_sum{robot=\"ops\"} 100042.05",
                "dingrelay_delivery_latency_seconds_bucket{le=\"0.1\",robot=\"ops\"} 2",
                "dingrelay_delivery_latency_seconds_bucket{le=\"30.0\",robot=\"ops\"} 2",
                "dingrelay_delivery_latency_seconds_bucket{le=\"60.0\",robot=\"ops\"} 3",
                "dingrelay_delivery_latency_seconds_bucket{le=\"600.0\",robot=\"ops\"} 3",
                "dingrelay_delivery_latency_seconds_bucket{le=\"86400.0\",robot=\"ops\"} 3",
                "dingrelay_delivery_latency_seconds_bucket{le=\"+Inf\",robot=\"ops\"} 4",
            ],
        );
        let buckets = text
            .lines()
            .filter(|l| l.starts_with("dingrelay_delivery_latency_seconds_bucket"))
            .count();
        assert_eq!(buckets, LATENCY_BUCKETS.len() + 1);
    }

    fn state(robot: &str, pending: u64, dead: u64, age: f64) -> OutboxState<'_> {
        OutboxState {
            robot,
            pending,
            dead,
            oldest_pending_age_seconds: age,
        }
    }

    #[test]
    fn outbox_report_shows_exactly_the_robots_reported() {
        let m = Metrics::new();
        m.outbox_report([state("ops", 7, 2, 12.5), state("dev", 0, 0, 0.0)]);
        m.outbox_report([state("ops", 7, 2, 12.5), state("dev", 1, 0, -3.0)]);
        m.sent("ops", 1);
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "# TYPE dingrelay_outbox_pending gauge",
                "dingrelay_outbox_pending{robot=\"ops\"} 7",
                "dingrelay_outbox_dead{robot=\"ops\"} 2",
                "# UNIT dingrelay_outbox_oldest_pending_age_seconds seconds",
                "dingrelay_outbox_oldest_pending_age_seconds{robot=\"ops\"} 12.5",
                "dingrelay_outbox_pending{robot=\"dev\"} 1",
                "dingrelay_outbox_oldest_pending_age_seconds{robot=\"dev\"} 0.0",
            ],
        );

        // A robot left out of the next report loses its gauges.
        m.outbox_report([state("dev", 1, 0, f64::NAN)]);
        let text = m.encode();
        assert_well_formed(&text);
        assert!(!text.contains("dingrelay_outbox_pending{robot=\"ops\"}"));
        assert!(!text.contains("dingrelay_outbox_dead{robot=\"ops\"}"));
        assert!(!text.contains("dingrelay_outbox_oldest_pending_age_seconds{robot=\"ops\"}"));
        assert_has(
            &text,
            &[
                "dingrelay_outbox_pending{robot=\"dev\"} 1",
                "dingrelay_outbox_oldest_pending_age_seconds{robot=\"dev\"} 0.0",
                // Counters stay.
                "dingrelay_messages_sent_total{robot=\"ops\"} 1",
            ],
        );

        // An empty report removes the families from the output; reporting brings them back.
        m.outbox_report([]);
        let text = m.encode();
        assert_well_formed(&text);
        assert!(!text.contains("dingrelay_outbox"), "{text}");
        m.outbox_report([state("ops", 1, 0, 1.0)]);
        assert_has(&m.encode(), &["dingrelay_outbox_pending{robot=\"ops\"} 1"]);
    }

    #[test]
    fn config_metrics() {
        let m = Metrics::new();
        m.reload(ReloadResult::Ok);
        m.reload(ReloadResult::Invalid);
        m.reload(ReloadResult::Ok);
        m.set_config_info(2, 5, 12);
        m.set_config_info(2, 5, u64::MAX);
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "dingrelay_config_reloads_total{result=\"ok\"} 2",
                "dingrelay_config_reloads_total{result=\"invalid\"} 1",
                "# TYPE dingrelay_config_robots gauge",
                "dingrelay_config_robots 2",
                "dingrelay_config_sources 5",
                "dingrelay_config_rules 9223372036854775807",
            ],
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let odd = "a\"b\\c\nd} x 1";
        m.queued(odd, 1);
        m.outbox_report([state(odd, 3, 0, 0.0)]);
        m.request(odd, 202);
        m.rule_matched("规则");
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                r#"dingrelay_messages_queued_total{robot="a\"b\\c\nd} x 1"} 1"#,
                r#"dingrelay_outbox_pending{robot="a\"b\\c\nd} x 1"} 3"#,
                r#"dingrelay_requests_total{source="a\"b\\c\nd} x 1",status="202"} 1"#,
                r#"dingrelay_rule_matches_total{rule="规则"} 1"#,
            ],
        );
        m.outbox_report([]);
        assert!(!m.encode().contains("dingrelay_outbox_pending"));
    }

    #[test]
    fn concurrent_use() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        m.request("am", 202);
                        let robot = if t % 2 == 0 { "ops" } else { "dev" };
                        m.sent(robot, 1);
                        m.delivery_latency(robot, 0.2);
                        m.outbox_report([state("ops", i, 0, 1.0), state("dev", i, 0, 1.0)]);
                        if i % 100 == 0 {
                            let text = m.encode();
                            assert!(text.ends_with("# EOF\n"));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let text = m.encode();
        assert_well_formed(&text);
        assert_has(
            &text,
            &[
                "dingrelay_requests_total{source=\"am\",status=\"202\"} 8000",
                "dingrelay_messages_sent_total{robot=\"ops\"} 4000",
                "dingrelay_messages_sent_total{robot=\"dev\"} 4000",
                "dingrelay_requests_sent_total{robot=\"ops\",outcome=\"ok\"} 4000",
                "dingrelay_delivery_latency_seconds_count{robot=\"dev\"} 4000",
                "dingrelay_outbox_pending{robot=\"ops\"} 999",
            ],
        );
    }

    #[test]
    fn content_type_is_openmetrics() {
        assert_eq!(
            Metrics::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }
}

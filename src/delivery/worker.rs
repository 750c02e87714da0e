//! One worker per robot: takes the robot's due messages from the outbox in order, keeps within
//! DingTalk's rate, signs, sends, classifies the answer, and retries or dead-letters.
//!
//! Invariants:
//! - one worker per robot, so one limiter per robot and messages leave in the order accepted;
//! - every request is counted in the outbox (`record_attempt`) before it is sent, so a restarted
//!   worker knows what DingTalk saw in the last minute;
//! - a message leaves the pending state only by DingTalk answering errcode 0 (delivered), by a
//!   permanent errcode or by exceeding its maximum age (dead letters, logged at ERROR, listed by
//!   `dingrelay outbox list`). Nothing is dropped silently;
//! - a transient failure pauses the whole robot (DingTalk is unreachable for all of its
//!   messages), with exponential backoff and full jitter, so order is kept; "too fast" pauses it
//!   for DingTalk's penalty;
//! - when the backlog would take longer than `digest_after` to drain at the robot's rate, due
//!   messages are merged into one digest; the merged rows count as delivered only when it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, watch};
use url::Url;

use super::backoff::{DEFAULT_BASE, DEFAULT_CAP, retry_delay};
use super::classify::{Outcome, classify};
use super::digest;
use super::dry_run::{self, DryRunTransport};
use super::limiter::RateLimiter;
use super::transport::{Transport, TransportError};
use crate::clock::Clock;
use crate::config::RobotDelivery;
use crate::dingtalk::{Endpoint, Message, Robot, sign};
use crate::metrics::{FailureClass, Metrics};
use crate::outbox::{Due, Outbox, StoredMessage};

/// How many due messages a worker reads at once (a digest merges at most these).
const BATCH: usize = 400;
/// How often an idle worker looks at the outbox anyway, to pick up `outbox retry` from the CLI.
const POLL: Duration = Duration::from_secs(5);
pub use super::dry_run::DryRunOutput;

/// What outlives a robot's worker across config reloads: its pace and its pause, so a reload
/// never lets a robot send faster than its rate or cut a throttle penalty short.
pub struct RobotRuntime {
    pub limiter: RateLimiter,
    pub rate_per_minute: u32,
    /// Wall-clock ms until which the robot sends nothing (throttled, or backing off); 0: none.
    pub paused_until: AtomicI64,
    /// Whether the limiter has been told what the outbox says went out in the last minute.
    counted: AtomicBool,
}

impl RobotRuntime {
    pub fn new(rate_per_minute: u32) -> Arc<RobotRuntime> {
        Arc::new(RobotRuntime {
            limiter: RateLimiter::new(rate_per_minute),
            rate_per_minute,
            paused_until: AtomicI64::new(0),
            counted: AtomicBool::new(false),
        })
    }
}

/// A robot's worker and everything it needs.
pub struct Worker {
    pub robot: Arc<Robot>,
    pub settings: RobotDelivery,
    pub outbox: Outbox,
    /// The transport to DingTalk every worker shares; a dry-run robot's worker posts through a
    /// [`DryRunTransport`] on `dry_run` instead.
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    /// Total time one request may take.
    pub send_timeout: Duration,
    /// Notified when a message for this robot is committed.
    pub wake: Arc<Notify>,
    /// Turns true when the daemon stops: the worker finishes the send in flight and returns.
    pub shutdown: watch::Receiver<bool>,
    pub dry_run: DryRunOutput,
    /// Kept across reloads (see [`RobotRuntime`]).
    pub runtime: Arc<RobotRuntime>,
    pub metrics: Arc<Metrics>,
}

/// Where the robot's requests go, and what carries them (chosen once, when the worker starts).
struct Destination {
    /// The webhook, or for a dry-run robot [`dry_run::URL`]; signed afresh for every attempt.
    url: Url,
    transport: Arc<dyn Transport>,
}

/// What one send did.
enum Sent {
    /// Go on with the next message.
    Continue,
    /// Pause the robot until this wall-clock time.
    PauseUntil(i64),
}

impl Worker {
    /// Runs until shutdown.
    pub async fn run(mut self) {
        let runtime = self.runtime.clone();
        let limiter = &runtime.limiter;
        let mut rng = StdRng::from_os_rng();
        let destination = self.destination();
        // After a restart the limiter is empty: count what the outbox says went out lately.
        if !runtime.counted.swap(true, Ordering::SeqCst) {
            let now = self.clock.now_ms();
            match self
                .outbox
                .attempts_since(&self.robot.name, now - 60_000)
                .await
            {
                Ok(sent) => limiter.preconsume(sent),
                Err(error) => {
                    tracing::warn!(robot = %self.robot.name, "Could not read recent sends; pacing as if the last minute was full: {error}.");
                    limiter.preconsume(runtime.rate_per_minute as usize);
                }
            }
        }
        tracing::debug!(robot = %self.robot.name, "Robot worker started.");

        loop {
            if *self.shutdown.borrow() {
                break;
            }
            let paused_until = runtime.paused_until.load(Ordering::SeqCst);
            if paused_until > 0 {
                if self.clock.now_ms() < paused_until {
                    self.wait(Some(paused_until), false).await;
                    continue;
                }
                runtime.paused_until.store(0, Ordering::SeqCst);
            }
            let now = self.clock.now_ms();
            match self.outbox.due_in_order(&self.robot.name, now, BATCH).await {
                Ok(Due::Messages(_)) => {}
                Ok(Due::NextAt(next)) => {
                    // Nothing pending (`None`), or the oldest pending message is not due yet:
                    // nothing younger may overtake it.
                    self.wait(next, true).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(robot = %self.robot.name, "Could not read the outbox; trying again shortly: {error}.");
                    self.wait(Some(now + 1_000), false).await;
                    continue;
                }
            }

            // Pace first, then choose what to send from the outbox as it is now: the backlog may
            // have grown while waiting, and a digest should take all of it.
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = self.shutdown.changed() => continue,
            }
            let now = self.clock.now_ms();
            let due = match self.outbox.due_in_order(&self.robot.name, now, BATCH).await {
                Ok(Due::Messages(due)) => due,
                // Gone meanwhile (an operator purged it): the permit is spent, nothing is lost.
                Ok(Due::NextAt(_)) | Err(_) => continue,
            };
            let (message, rows) = self.next_message(&due).await;
            match self.send(&destination, message, &rows, &mut rng).await {
                Sent::Continue => {}
                Sent::PauseUntil(until) => runtime.paused_until.store(until, Ordering::SeqCst),
            }
        }
        tracing::debug!(robot = %self.robot.name, "Robot worker stopped.");
    }

    /// The robot's webhook over the shared transport, or for a dry-run robot the placeholder URL
    /// through a [`DryRunTransport`].
    fn destination(&self) -> Destination {
        match &self.robot.endpoint {
            Endpoint::DryRun { .. } => Destination {
                url: Url::parse(dry_run::URL).expect("constant URL"),
                transport: Arc::new(DryRunTransport::new(&self.robot.name, self.dry_run.clone())),
            },
            Endpoint::Webhook { url, .. } => Destination {
                url: url.expose().clone(),
                transport: self.transport.clone(),
            },
        }
    }

    /// Waits until `until` (or the poll interval), a wake-up for new messages, or shutdown.
    async fn wait(&mut self, until: Option<i64>, wake_on_new: bool) {
        let now = self.clock.now_ms();
        let poll_end = now + POLL.as_millis() as i64;
        let until = until.map_or(poll_end, |u| if wake_on_new { u.min(poll_end) } else { u });
        let wake = self.wake.clone();
        tokio::select! {
            _ = self.clock.sleep_until_ms(until) => {}
            _ = wake.notified(), if wake_on_new => {}
            _ = self.shutdown.changed() => {}
        }
    }

    /// The head message, or a digest of the backlog when it would take too long to drain.
    async fn next_message(&self, due: &[StoredMessage]) -> (Message, Vec<StoredMessage>) {
        if let Some(after) = self.settings.digest_after
            && due.len() > 1
        {
            let backlog = self
                .outbox
                .pending_count(&self.robot.name)
                .await
                .unwrap_or(due.len());
            let drain = Duration::from_secs_f64(
                backlog as f64 * 60.0
                    / f64::from(self.settings.rate_per_minute.saturating_sub(1).max(1)),
            );
            if drain > after
                && let Some(digest) = digest::build(due, &self.robot)
                && digest.ids.len() > 1
            {
                let rows: Vec<StoredMessage> = due
                    .iter()
                    .filter(|r| digest.ids.contains(&r.id))
                    .cloned()
                    .collect();
                tracing::info!(
                    robot = %self.robot.name,
                    merged = rows.len(),
                    backlog,
                    "Merged a backlog into one digest to stay within DingTalk's rate."
                );
                self.metrics.digest(&self.robot.name, rows.len() as u64);
                return (digest.message, rows);
            }
        }
        (due[0].message.clone(), vec![due[0].clone()])
    }

    /// Sends one message (or digest) and records the outcome for its rows.
    async fn send(
        &self,
        destination: &Destination,
        message: Message,
        rows: &[StoredMessage],
        rng: &mut StdRng,
    ) -> Sent {
        let robot = &self.robot.name;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let now = self.clock.now_ms();
        let body = match serde_json::to_vec(&message) {
            Ok(body) => body,
            Err(error) => {
                // Cannot happen for a validated message; never lose it silently if it does.
                let reason = format!("the message could not be encoded: {error}");
                let all: Vec<&StoredMessage> = rows.iter().collect();
                self.dead(&all, now, None, &reason).await;
                return Sent::Continue;
            }
        };
        if let Err(error) = self.outbox.record_attempt(robot, now).await {
            tracing::warn!(robot = %robot, "Could not record a send attempt: {error}.");
        }

        // A fresh timestamp and sign for every attempt.
        let url = sign::signed_url(&destination.url, self.robot.endpoint.secret(), now);
        let post = destination.transport.post_messages(&url, body, &ids);
        let answer = tokio::time::timeout(self.send_timeout, post)
            .await
            .unwrap_or(Err(TransportError::Timeout));
        let outcome = classify(answer);

        let now = self.clock.now_ms();
        match outcome {
            Outcome::Delivered => {
                if let Err(error) = self.outbox.mark_delivered(&ids, now).await {
                    // DingTalk has it; the row stays pending and will be sent again with the
                    // same msgUuid, which DingTalk drops.
                    tracing::warn!(robot = %robot, "Delivered, but could not record it: {error}.");
                }
                if matches!(self.robot.endpoint, Endpoint::DryRun { .. }) {
                    tracing::info!(robot = %robot, rules = %rules(rows), messages = ids.len(), first = ids[0], "Dry run: printed the request instead of sending it.");
                } else {
                    tracing::info!(robot = %robot, rules = %rules(rows), messages = ids.len(), first = ids[0], "Delivered to DingTalk.");
                }
                self.metrics.sent(robot, ids.len() as u64);
                for row in rows {
                    let latency = (now - row.accepted_at).max(0) as f64 / 1000.0;
                    self.metrics.delivery_latency(robot, latency);
                }
                Sent::Continue
            }
            Outcome::Throttled { errcode, errmsg } => {
                let until = now + self.settings.throttle_penalty.as_millis() as i64;
                let reason = format!("DingTalk throttled the robot (errcode {errcode}: {errmsg})");
                self.retry(&ids, until, &reason).await;
                self.metrics.failed(robot, FailureClass::Throttled);
                self.metrics.throttle_pause(robot);
                tracing::warn!(
                    robot = %robot,
                    rules = %rules(rows),
                    errcode,
                    errmsg = %errmsg,
                    action = "pause the robot for the penalty, then resume; nothing is lost",
                    pause_secs = self.settings.throttle_penalty.as_secs(),
                    "DingTalk throttled the robot."
                );
                Sent::PauseUntil(until)
            }
            Outcome::Transient { reason } => {
                self.metrics.failed(robot, FailureClass::Transient);
                let max_age = self.settings.max_age.as_millis() as i64;
                let (expired, alive): (Vec<&StoredMessage>, Vec<&StoredMessage>) =
                    rows.iter().partition(|r| now - r.age_from >= max_age);
                if !expired.is_empty() {
                    let reason = format!(
                        "still failing after the maximum age of {}s: {reason}",
                        self.settings.max_age.as_secs()
                    );
                    self.dead(&expired, now, None, &reason).await;
                }
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
                let delay = retry_delay(attempts, DEFAULT_BASE, DEFAULT_CAP, rng);
                let until = now + delay.as_millis() as i64;
                let alive: Vec<i64> = alive.iter().map(|r| r.id).collect();
                if !alive.is_empty() {
                    self.retry(&alive, until, &reason).await;
                    self.metrics.retry(robot, alive.len() as u64);
                    tracing::warn!(
                        robot = %robot,
                        rules = %rules(rows),
                        errcode = "none",
                        errmsg = %reason,
                        attempt = attempts + 1,
                        action = "retry after a backoff",
                        retry_in_ms = delay.as_millis() as u64,
                        "Sending to DingTalk failed."
                    );
                }
                Sent::PauseUntil(until)
            }
            Outcome::Permanent {
                errcode,
                errmsg,
                advice,
            } => {
                self.metrics.failed(robot, FailureClass::Permanent);
                let reason =
                    format!("DingTalk refused the message (errcode {errcode}: {errmsg}); {advice}");
                let all: Vec<&StoredMessage> = rows.iter().collect();
                self.dead(&all, now, Some(errcode), &reason).await;
                Sent::Continue
            }
        }
    }

    async fn retry(&self, ids: &[i64], until: i64, reason: &str) {
        debug_assert!(!ids.is_empty());
        if let Err(error) = self.outbox.mark_retry(ids, until, reason).await {
            tracing::warn!(robot = %self.robot.name, "Could not record a retry: {error}.");
        }
    }

    /// Moves rows to the dead letters: one ERROR line, since an operator must act.
    async fn dead(&self, rows: &[&StoredMessage], now: i64, errcode: Option<i64>, reason: &str) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let ids = ids.as_slice();
        let mut rules: Vec<&str> = rows.iter().map(|r| r.rule.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        self.metrics.dead_letter(&self.robot.name, ids.len() as u64);
        tracing::error!(
            robot = %self.robot.name,
            rules = %rules.join(", "),
            errcode = errcode.map_or_else(|| "none".to_owned(), |c| c.to_string()),
            errmsg = %reason,
            messages = ?ids,
            action = "dead-lettered: see `dingrelay outbox list`, fix the cause, then `dingrelay outbox retry`",
            "DingTalk will not take these messages."
        );
        if let Err(error) = self.outbox.mark_dead(ids, now, reason).await {
            tracing::error!(robot = %self.robot.name, "Could not record dead letters: {error}.");
        }
    }
}

/// The rules of the rows, for log lines: `alerts` or `alerts, deploys`.
fn rules(rows: &[StoredMessage]) -> String {
    let mut rules: Vec<&str> = rows.iter().map(|r| r.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    rules.join(", ")
}

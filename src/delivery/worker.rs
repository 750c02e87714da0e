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

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, watch};

use super::backoff::{DEFAULT_BASE, DEFAULT_CAP, retry_delay};
use super::classify::{Outcome, classify};
use super::digest;
use super::limiter::RateLimiter;
use super::transport::{Transport, TransportError};
use crate::clock::Clock;
use crate::config::RobotDelivery;
use crate::dingtalk::{Endpoint, Message, Robot, sign};
use crate::outbox::{Outbox, StoredMessage};

/// How many due messages a worker reads at once (a digest merges at most these).
const BATCH: usize = 400;
/// How often an idle worker looks at the outbox anyway, to pick up `outbox retry` from the CLI.
const POLL: Duration = Duration::from_secs(5);
/// Where a dry-run robot's requests go.
const DRY_RUN_URL: &str = "https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN";

/// Where dry-run robots print the requests they would send (stdout in the daemon).
pub type DryRunOutput = Arc<Mutex<Box<dyn Write + Send>>>;

/// A robot's worker and everything it needs.
pub struct Worker {
    pub robot: Arc<Robot>,
    pub settings: RobotDelivery,
    pub outbox: Outbox,
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    /// Total time one request may take.
    pub send_timeout: Duration,
    /// Notified when a message for this robot is committed.
    pub wake: Arc<Notify>,
    /// Turns true when the daemon stops: the worker finishes the send in flight and returns.
    pub shutdown: watch::Receiver<bool>,
    pub dry_run: DryRunOutput,
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
        let limiter = RateLimiter::new(self.settings.rate_per_minute);
        let mut rng = StdRng::from_os_rng();
        // After a restart the limiter is empty: count what the outbox says went out lately.
        let now = self.clock.now_ms();
        match self
            .outbox
            .attempts_since(&self.robot.name, now - 60_000)
            .await
        {
            Ok(sent) => limiter.preconsume(sent),
            Err(error) => {
                tracing::warn!(robot = %self.robot.name, "Could not read recent sends; pacing as if the last minute was full: {error}.")
            }
        }
        let mut paused_until: Option<i64> = None;
        tracing::debug!(robot = %self.robot.name, "Robot worker started.");

        loop {
            if *self.shutdown.borrow() {
                break;
            }
            if let Some(until) = paused_until {
                if self.clock.now_ms() < until {
                    self.wait(Some(until), false).await;
                    continue;
                }
                paused_until = None;
            }
            let now = self.clock.now_ms();
            let due = match self.outbox.due(&self.robot.name, now, BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(robot = %self.robot.name, "Could not read the outbox; trying again shortly: {error}.");
                    self.wait(Some(now + 1_000), false).await;
                    continue;
                }
            };
            if due.is_empty() {
                let next = self
                    .outbox
                    .next_due_at(&self.robot.name)
                    .await
                    .ok()
                    .flatten();
                self.wait(next, true).await;
                continue;
            }

            // Pace before choosing what to send: the backlog may grow while waiting.
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = self.shutdown.changed() => continue,
            }
            let (message, rows) = self.next_message(&due).await;
            match self.send(message, &rows, &mut rng).await {
                Sent::Continue => {}
                Sent::PauseUntil(until) => paused_until = Some(until),
            }
        }
        tracing::debug!(robot = %self.robot.name, "Robot worker stopped.");
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
                return (digest.message, rows);
            }
        }
        (due[0].message.clone(), vec![due[0].clone()])
    }

    /// Sends one message (or digest) and records the outcome for its rows.
    async fn send(&self, message: Message, rows: &[StoredMessage], rng: &mut StdRng) -> Sent {
        let robot = &self.robot.name;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let now = self.clock.now_ms();
        let body = match serde_json::to_vec(&message) {
            Ok(body) => body,
            Err(error) => {
                // Cannot happen for a validated message; never lose it silently if it does.
                let reason = format!("the message could not be encoded: {error}");
                self.dead(&ids, now, &reason).await;
                return Sent::Continue;
            }
        };
        if let Err(error) = self.outbox.record_attempt(robot, now).await {
            tracing::warn!(robot = %robot, "Could not record a send attempt: {error}.");
        }

        let outcome = match &self.robot.endpoint {
            Endpoint::DryRun { secret } => {
                let url = url::Url::parse(DRY_RUN_URL).expect("constant URL");
                let url = sign::signed_url(&url, secret.as_ref(), now);
                if let Ok(mut out) = self.dry_run.lock() {
                    let _ = writeln!(
                        out,
                        "# dry run: robot `{robot}` would send (messages {ids:?}):\nPOST {url}\nContent-Type: application/json; charset=utf-8\n\n{}\n",
                        String::from_utf8_lossy(&body)
                    );
                    let _ = out.flush();
                }
                Outcome::Delivered
            }
            Endpoint::Webhook { url, secret } => {
                // A fresh timestamp and sign for every attempt.
                let url = sign::signed_url(url.expose(), secret.as_ref(), now);
                let answer =
                    match tokio::time::timeout(self.send_timeout, self.transport.post(&url, body))
                        .await
                    {
                        Ok(answer) => answer,
                        Err(_) => Err(TransportError::Timeout),
                    };
                classify(answer)
            }
        };

        let now = self.clock.now_ms();
        match outcome {
            Outcome::Delivered => {
                if let Err(error) = self.outbox.mark_delivered(&ids, now).await {
                    // DingTalk has it; the row stays pending and will be sent again with the
                    // same msgUuid, which DingTalk drops.
                    tracing::warn!(robot = %robot, "Delivered, but could not record it: {error}.");
                }
                tracing::info!(robot = %robot, messages = ids.len(), first = ids[0], "Delivered to DingTalk.");
                Sent::Continue
            }
            Outcome::Throttled { errcode, errmsg } => {
                let until = now + self.settings.throttle_penalty.as_millis() as i64;
                let reason = format!("DingTalk throttled the robot (errcode {errcode}: {errmsg})");
                self.retry(&ids, until, &reason).await;
                tracing::warn!(
                    robot = %robot,
                    errcode,
                    pause_secs = self.settings.throttle_penalty.as_secs(),
                    "DingTalk throttled the robot; pausing it for the penalty, nothing is lost."
                );
                Sent::PauseUntil(until)
            }
            Outcome::Transient { reason } => {
                let max_age = self.settings.max_age.as_millis() as i64;
                let (expired, alive): (Vec<&StoredMessage>, Vec<&StoredMessage>) =
                    rows.iter().partition(|r| now - r.age_from >= max_age);
                if !expired.is_empty() {
                    let expired: Vec<i64> = expired.iter().map(|r| r.id).collect();
                    let reason = format!(
                        "still failing after the maximum age of {}s: {reason}",
                        self.settings.max_age.as_secs()
                    );
                    self.dead(&expired, now, &reason).await;
                }
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
                let delay = retry_delay(attempts, DEFAULT_BASE, DEFAULT_CAP, rng);
                let until = now + delay.as_millis() as i64;
                let alive: Vec<i64> = alive.iter().map(|r| r.id).collect();
                if !alive.is_empty() {
                    self.retry(&alive, until, &reason).await;
                    tracing::warn!(
                        robot = %robot,
                        attempt = attempts + 1,
                        retry_in_ms = delay.as_millis() as u64,
                        "Sending to DingTalk failed; will retry: {reason}."
                    );
                }
                Sent::PauseUntil(until)
            }
            Outcome::Permanent {
                errcode,
                errmsg,
                advice,
            } => {
                let reason =
                    format!("DingTalk refused the message (errcode {errcode}: {errmsg}); {advice}");
                self.dead(&ids, now, &reason).await;
                Sent::Continue
            }
        }
    }

    async fn retry(&self, ids: &[i64], until: i64, reason: &str) {
        if let Err(error) = self.outbox.mark_retry(ids, until, reason).await {
            tracing::warn!(robot = %self.robot.name, "Could not record a retry: {error}.");
        }
    }

    async fn dead(&self, ids: &[i64], now: i64, reason: &str) {
        tracing::error!(
            robot = %self.robot.name,
            messages = ?ids,
            "Dead-lettered messages: {reason}. They stay in the outbox: see `dingrelay outbox list`, then `dingrelay outbox retry`."
        );
        if let Err(error) = self.outbox.mark_dead(ids, now, reason).await {
            tracing::error!(robot = %self.robot.name, "Could not record dead letters: {error}.");
        }
    }
}

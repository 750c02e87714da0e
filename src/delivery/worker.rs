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
//!
//! What a send comes to is a [`DeliveryOutcome`], which decides the rows' fate and makes the log
//! line and metrics; the worker writes it to the outbox. A dry-run robot's worker is the same, with
//! a [`DryRunTransport`] printing its requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Notify, watch};
use url::Url;

use super::app_send::AppClient;
use super::classify::{Verdict, classify};
use super::digest;
use super::dry_run::{self, DryRunTransport};
use super::limiter::RateLimiter;
use super::outcome::{DeadLetter, DeliveryOutcome, Next};
use super::transport::{Transport, TransportError};
use crate::clock::Clock;
use crate::config::RobotDelivery;
use crate::dingtalk::{AppRobotKind, Endpoint, Message, Robot, sign};
use crate::metrics::Metrics;
use crate::outbox::{Due, Outbox, StoredMessage};

pub use super::dry_run::DryRunOutput;

/// How many due messages a worker reads at once (a digest merges at most these).
const BATCH: usize = 400;
/// How often an idle worker looks at the outbox anyway, to pick up `outbox retry` from the CLI.
const POLL: Duration = Duration::from_secs(5);

/// What outlives a robot's worker across config reloads: its pace and its pause, so a reload
/// never lets a robot send faster than its rate or cut a throttle penalty short.
pub struct RobotRuntime {
    pub limiter: RateLimiter,
    pub rate_per_minute: u32,
    /// Wall-clock ms until which the robot sends nothing (throttled, or backing off); 0: none.
    pub paused_until: AtomicI64,
    /// Whether the limiter has been told what the outbox says went out in the last minute.
    counted: AtomicBool,
    /// Rows DingTalk has (errcode 0) whose delivery the outbox could not record yet, and when they
    /// were delivered. Kept here, across a reload's worker restart, so that they are recorded
    /// before the robot sends anything else, and never sent again by this process.
    unrecorded: std::sync::Mutex<Option<(Vec<i64>, i64)>>,
}

impl RobotRuntime {
    pub fn new(rate_per_minute: u32) -> Arc<RobotRuntime> {
        Arc::new(RobotRuntime {
            limiter: RateLimiter::new(rate_per_minute),
            rate_per_minute,
            paused_until: AtomicI64::new(0),
            counted: AtomicBool::new(false),
            unrecorded: std::sync::Mutex::new(None),
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
    /// Where a dry-run robot prints its requests.
    pub dry_run: DryRunOutput,
    /// Kept across reloads (see [`RobotRuntime`]).
    pub runtime: Arc<RobotRuntime>,
    pub metrics: Arc<Metrics>,
    /// For a robot of an app: the app's token cache and pace, shared with its other robots.
    pub app: Option<Arc<AppClient>>,
}

/// Where the robot's requests go, and what carries them (chosen once, when the worker starts).
enum Destination {
    Webhook {
        /// The webhook, or for a dry-run robot [`dry_run::URL`]; signed afresh for every attempt.
        url: Url,
        transport: Arc<dyn Transport>,
    },
    /// A robot of an app, through the app's client.
    App {
        kind: AppRobotKind,
        client: Arc<AppClient>,
    },
    /// A robot of an app whose client the daemon did not provide (which it always does): every
    /// send fails, retried, and says why.
    Unwired,
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
            // A delivery not recorded yet comes first: nothing is sent until it is.
            if !self.record_unrecorded().await {
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
            let Some((message, rows)) = self.choose(&due).await else {
                self.wait(Some(self.clock.now_ms() + 1_000), false).await;
                continue;
            };
            match self.send(&destination, message, &rows, &mut rng).await {
                Next::Continue => {}
                Next::PauseUntil(until) => runtime.paused_until.store(until, Ordering::SeqCst),
            }
            if let Err(error) = self.outbox.settle_in_flight(&self.robot.name).await {
                tracing::debug!(robot = %self.robot.name, "Could not settle the message in flight: {error}.");
            }
        }
        tracing::debug!(robot = %self.robot.name, "Robot worker stopped.");
    }

    /// The robot's webhook over the shared transport, or for a dry-run robot the placeholder URL
    /// through a [`DryRunTransport`].
    fn destination(&self) -> Destination {
        match &self.robot.endpoint {
            Endpoint::DryRun { .. } => Destination::Webhook {
                url: Url::parse(dry_run::URL).expect("constant URL"),
                transport: Arc::new(DryRunTransport::new(&self.robot.name, self.dry_run.clone())),
            },
            Endpoint::Webhook { url, .. } => Destination::Webhook {
                url: url.expose().clone(),
                transport: self.transport.clone(),
            },
            Endpoint::App(robot) => match &self.app {
                Some(client) => Destination::App {
                    kind: robot.kind.clone(),
                    client: client.clone(),
                },
                None => Destination::Unwired,
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

    /// What to send now, recorded as in flight before it goes: the message in flight from before
    /// (a crash, a failed attempt) exactly as it was, with the same msgUuid; else the head
    /// message or a digest. `None` when it cannot be recorded: nothing is sent unrecorded.
    async fn choose(&self, due: &[StoredMessage]) -> Option<(Message, Vec<StoredMessage>)> {
        let robot = &self.robot.name;
        match self.outbox.in_flight(robot).await {
            Ok(Some((ids, message))) => {
                let rows: Vec<StoredMessage> = due
                    .iter()
                    .filter(|r| ids.contains(&r.id))
                    .cloned()
                    .collect();
                if !rows.is_empty() {
                    return Some((message, rows));
                }
                // Its rows are not due now (none pending, or waiting for a retry): settle it,
                // and choose afresh only if nothing of it is pending.
                let _ = self.outbox.settle_in_flight(robot).await;
                if let Ok(Some(_)) = self.outbox.in_flight(robot).await {
                    return None;
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(robot = %robot, "Could not read the message in flight; sending nothing until it can: {error}.");
                return None;
            }
        }
        let (message, rows) = self.next_message(due).await;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if let Err(error) = self
            .outbox
            .set_in_flight(robot, ids, message.clone(), self.clock.now_ms())
            .await
        {
            tracing::warn!(robot = %robot, "Could not record the message before sending it; sending nothing until it can: {error}.");
            return None;
        }
        Some((message, rows))
    }

    /// The head message, or a digest of the backlog when it would take too long to drain.
    async fn next_message(&self, due: &[StoredMessage]) -> (Message, Vec<StoredMessage>) {
        // A digest merges messages to the same people only (one-to-one chats: one person).
        let same_people: Vec<StoredMessage>;
        let due = if due.iter().any(|r| r.recipients != due[0].recipients) {
            same_people = due
                .iter()
                .filter(|r| r.recipients == due[0].recipients)
                .cloned()
                .collect();
            &same_people[..]
        } else {
            due
        };
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
    ) -> Next {
        let outcome = match destination {
            Destination::Webhook { url, transport } => match serde_json::to_vec(&message) {
                Ok(body) => {
                    let answer = self.post(url, transport, body, rows).await;
                    let dry_run = matches!(self.robot.endpoint, Endpoint::DryRun { .. });
                    let now = self.clock.now_ms();
                    DeliveryOutcome::of(answer, rows, &self.settings, dry_run, now, rng)
                }
                // Cannot happen for a validated message; never lose it silently if it does.
                Err(error) => DeliveryOutcome::unencodable(&error, rows, self.clock.now_ms()),
            },
            Destination::App { kind, client } => {
                let recipients = &rows[0].recipients;
                if let Some(reason) = kind.no_recipient(recipients) {
                    DeliveryOutcome::undeliverable(reason.to_owned(), rows, self.clock.now_ms())
                } else {
                    self.record_attempt().await;
                    let answer = client
                        .send(kind, &message, recipients, self.send_timeout)
                        .await;
                    let now = self.clock.now_ms();
                    DeliveryOutcome::of_app(answer, rows, &self.settings, now, rng)
                }
            }
            Destination::Unwired => DeliveryOutcome::of(
                Verdict::Transient {
                    reason: "the app robot has no app client (a bug: please report it)".into(),
                },
                rows,
                &self.settings,
                false,
                self.clock.now_ms(),
                rng,
            ),
        };
        self.apply(&outcome, rows).await;
        outcome.record(&self.metrics, &self.robot.name, rows);
        outcome.log(&self.robot.name, rows);
        outcome.next()
    }

    /// Counts a request in the outbox before it is sent, so a restarted worker knows what
    /// DingTalk saw in the last minute.
    async fn record_attempt(&self) {
        let robot = &self.robot.name;
        if let Err(error) = self.outbox.record_attempt(robot, self.clock.now_ms()).await {
            tracing::warn!(robot = %robot, "Could not record a send attempt: {error}.");
        }
    }

    /// Records the attempt, signs a fresh URL and posts `body`; classifies the answer.
    async fn post(
        &self,
        url: &Url,
        transport: &Arc<dyn Transport>,
        body: Vec<u8>,
        rows: &[StoredMessage],
    ) -> Verdict {
        self.record_attempt().await;
        // A fresh timestamp and sign for every attempt.
        let now = self.clock.now_ms();
        let url = sign::signed_url(url, self.robot.endpoint.secret(), now);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let post = transport.post_messages(&url, body, &ids);
        let answer = tokio::time::timeout(self.send_timeout, post)
            .await
            .unwrap_or(Err(TransportError::Timeout));
        classify(answer)
    }

    /// Writes an outcome to the outbox: the rows delivered, dead-lettered or retried.
    async fn apply(&self, outcome: &DeliveryOutcome<'_>, rows: &[StoredMessage]) {
        if let DeliveryOutcome::Delivered { at, .. } = outcome {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            if let Err(error) = self.outbox.mark_delivered(&ids, *at).await {
                // DingTalk has it. Keep that in memory and pause the robot until the outbox
                // takes the record (`record_unrecorded`): sending the row again, or anything
                // after it, while it cannot be written would repeat it in a loop.
                tracing::error!(
                    robot = %self.robot.name,
                    messages = ids.len(),
                    "Delivered, but the outbox cannot record it; the robot pauses until it can, and sends nothing meanwhile: {error}."
                );
                if let Ok(mut unrecorded) = self.runtime.unrecorded.lock() {
                    *unrecorded = Some((ids, *at));
                }
            }
        }
        if let Some(dead) = outcome.dead_letter() {
            self.dead(dead).await;
        }
        if let Some(retry) = outcome.retry(rows)
            && let Err(error) = self
                .outbox
                .mark_retry(&retry.ids, retry.at, &retry.reason)
                .await
        {
            tracing::warn!(robot = %self.robot.name, "Could not record a retry: {error}.");
        }
    }

    /// Records a delivery the outbox could not record before, retrying with a growing pause
    /// (at most 30 s) until it succeeds. Returns false when shutdown came first: then the rows
    /// stay pending and go again after a restart, with the same msgUuid, which DingTalk drops.
    async fn record_unrecorded(&mut self) -> bool {
        let Some((ids, at)) = self
            .runtime
            .unrecorded
            .lock()
            .ok()
            .and_then(|unrecorded| unrecorded.clone())
        else {
            return true;
        };
        let mut pause = Duration::from_millis(200);
        loop {
            match self.outbox.mark_delivered(&ids, at).await {
                Ok(()) => {
                    if let Ok(mut unrecorded) = self.runtime.unrecorded.lock() {
                        *unrecorded = None;
                    }
                    tracing::info!(
                        robot = %self.robot.name,
                        messages = ids.len(),
                        "Recorded the delivery the outbox could not take before; the robot sends again."
                    );
                    return true;
                }
                Err(error) => {
                    tracing::debug!(robot = %self.robot.name, "Still cannot record a delivery: {error}.");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = self.shutdown.changed() => return false,
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// Moves rows to the dead letters: counted and logged (at ERROR, since an operator must act)
    /// before they are written.
    async fn dead(&self, dead: &DeadLetter<'_>) {
        dead.record(&self.metrics, &self.robot.name);
        dead.log(&self.robot.name);
        if let Err(error) = self
            .outbox
            .mark_dead(&dead.ids(), dead.at, &dead.reason)
            .await
        {
            tracing::error!(robot = %self.robot.name, "Could not record dead letters: {error}.");
        }
    }
}

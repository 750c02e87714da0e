//! Routing: the stage between the event log and the robots' queues.
//!
//! Intake appends every accepted webhook to the event log and answers `202`; no rule runs on
//! the request path. The [`EventRouter`] takes the stored events in the order they came, parses
//! each again with its source, runs the rules in force ([`route_event`]), and then, in one
//! transaction, stores the messages and marks the event routed with its outcome.
//!
//! Invariants:
//! - **Exactly once.** An event is either waiting with no message, or routed with all of its
//!   messages: a crash at any point before the commit leaves it waiting, and it is routed again
//!   after the restart; after the commit it is never routed again on its own. Only an operator's
//!   `dingrelay outbox reroute` routes it again, on purpose, into new messages.
//! - **Degrade, never drop.** A rule whose `when` or template fails, or whose message cannot be
//!   made valid for a robot, still sends that robot a message: a fallback built without the
//!   rule's templates ([`fallback`]) from the plain facts of the event and the failure. A failing
//!   rule never touches the other rules' messages. Each failure is counted by rule, logged at
//!   most once a minute per rule ([`failures`]), and kept with the event.
//! - **Which rules.** An event is routed by the rules in force when the router reaches it, not
//!   when it came: an event that waits across a reload gets the new rules. Templates see the
//!   time it was received as `now`.
//! - **Intake first.** The router renders on a thread of its own at a lower CPU priority
//!   ([`Renderer`]) and commits in batches of at most 64 events: on a busy machine intake gets the
//!   CPU first and routing falls behind (`dingrelay_routing_lag_seconds`), then catches up.

pub mod failures;
pub mod fallback;
mod renderer;
mod route;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
pub use failures::FailureLog;
pub use renderer::Renderer;
pub use route::{route_event, rows_of};

/// What a reload swaps at once: the config, and the wake-ups of the workers serving its robots.
pub struct Live {
    pub config: Arc<Config>,
    /// Per robot: notified when a message for it is committed, so its worker sends at once.
    pub wake: HashMap<String, Arc<Notify>>,
}

/// At most this many events are routed into one transaction...
const BATCH: usize = 64;
/// ...and no more once their bodies weigh this much (a body may be up to `body_limit`, 26 MiB).
const BATCH_BYTES: usize = 4 << 20;
/// With nothing waiting, the log is looked at this often anyway (for `dingrelay outbox reroute`,
/// which marks events waiting from another process).
const POLL: Duration = Duration::from_secs(2);
/// The longest pause after the outbox failed to give or take events.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a failing rule may write a WARN line.
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// The routing stage: one task, taking stored events in order.
pub struct EventRouter {
    pub outbox: Outbox,
    pub live: Arc<ArcSwap<Live>>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Notified by intake when an event is stored.
    pub wake: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
}

impl EventRouter {
    /// Routes until shutdown. An event being routed when shutdown comes is left waiting (nothing
    /// of it is stored) and routed at the next start.
    pub async fn run(mut self) {
        let mut failures = FailureLog::new(FAILURE_LOG_PERIOD);
        let mut renderer = Renderer::start();
        let mut backoff = Duration::from_millis(500);
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let batch = match self.outbox.waiting_events(BATCH, BATCH_BYTES).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(
                        "Cannot read the events waiting to be routed; trying again in {} s: {error}.",
                        backoff.as_secs_f64()
                    );
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                    _ = self.shutdown.changed() => return,
                }
                continue;
            }
            let live = self.live.load_full();
            let now_ms = self.clock.now_ms();
            let config = live.config.clone();
            let Some((batch, routed)) = renderer
                .run(move || {
                    let routed: Vec<_> = batch
                        .iter()
                        .map(|event| route_event(&config, event, now_ms))
                        .collect();
                    (batch, routed)
                })
                .await
            else {
                continue;
            };
            let robots: BTreeSet<String> = routed
                .iter()
                .flat_map(|r| r.messages.iter().map(|m| m.robot.clone()))
                .collect();
            let report: Vec<_> = routed
                .iter()
                .map(|r| {
                    let robots: Vec<String> = r.messages.iter().map(|m| m.robot.clone()).collect();
                    (r.event_id, r.outcome.clone(), robots)
                })
                .collect();
            match self.outbox.commit_routing(routed).await {
                Ok(_) => {
                    backoff = Duration::from_millis(500);
                    for robot in &robots {
                        if let Some(wake) = live.wake.get(robot) {
                            wake.notify_one();
                        }
                    }
                    for ((event_id, outcome, robots), event) in report.into_iter().zip(&batch) {
                        self.record(&mut failures, now_ms, event_id, event, &outcome, &robots);
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        events = batch.len(),
                        "Could not store routed messages; the events stay waiting and are routed again in {} s: {error}.",
                        backoff.as_secs_f64()
                    );
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Metrics and log lines of one routed event.
    fn record(
        &self,
        failures: &mut FailureLog,
        now_ms: i64,
        event_id: i64,
        event: &crate::outbox::StoredEvent,
        outcome: &crate::outbox::Outcome,
        robots: &[String],
    ) {
        self.metrics
            .routed((now_ms - event.received_at) as f64 / 1000.0);
        for rule in &outcome.rules {
            self.metrics.rule_matched(rule);
        }
        for robot in robots {
            self.metrics.queued(robot, 1);
        }
        for failure in &outcome.failures {
            self.metrics.rule_failed(&failure.rule);
            failures.failed(now_ms, &failure.rule, event_id, &failure.reason);
        }
        if let Some(note) = &outcome.note {
            if robots.is_empty() && outcome.failures.is_empty() && note.starts_with("source") {
                tracing::warn!(
                    event = event_id,
                    source = %event.source,
                    "A stored event could not be routed; it is kept for `dingrelay outbox reroute`: {note}."
                );
            } else {
                tracing::debug!(event = event_id, source = %event.source, "Routed an event: {note}.");
            }
        } else {
            tracing::debug!(
                event = event_id,
                source = %event.source,
                messages = robots.len(),
                "Routed an event."
            );
        }
    }

    /// Sleeps `pause`; true when shutdown came meanwhile.
    async fn pause(&mut self, pause: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(pause) => false,
            _ = self.shutdown.changed() => true,
        }
    }
}

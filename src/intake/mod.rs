//! HTTP intake: a `POST` route per source, answering once the request's messages are durable;
//! plus the operator's routes (`/-/healthy`, `/-/ready`, `/metrics`, `POST /-/reload`).
//!
//! The path of a webhook through here, and what each step answers:
//!
//! 1. the source is found by the request path in the *current* config (a reload can add, move or
//!    remove sources without a restart): `404` when none, `405` for another method than POST;
//! 2. the body is read up to `body_limit` (`413` beyond it), all within `request_timeout` (`408`);
//! 3. the source verifies the request over the raw bytes (`401`), then parses it (`400`, `415`);
//! 4. an ignored event (GitHub `ping`) or one that matches no rule is answered `202` with
//!    `matched: 0` — never a 4xx, which would make GitLab disable the hook;
//! 5. every matching rule renders and validates its messages; if any fails, nothing of the
//!    request is queued and the answer is `422` naming the rule and the reason;
//! 6. all messages of the request go into the outbox in one transaction; `202` is sent only after
//!    it is committed. If the outbox cannot take them, `503`: Alertmanager, Grafana and GitLab
//!    retry on 5xx, so a relay problem never loses an alert.
//!
//! Every answer is a short JSON object with a `status` and, for refusals, an `error` saying why.
//! A request cut off by the timeout after its commit is answered 408 although its messages are
//! queued; the sender's retry is then recognised as a duplicate within `dedup_window`.
//!
//! What a webhook comes to is one value, a [`Refusal`] or an [`Acceptance`], which makes its
//! answer, its log line and its metrics; the handler only decides which it is, and every answer is
//! counted in `dingrelay_requests_total` in one place. Refusals are logged through
//! [`refusals::RefusalLog`]: a flood of bad requests gives a line a minute per source and status,
//! not a line each.

mod acceptance;
mod answer;
mod refusal;
pub mod refusals;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::{Enqueued, NewMessage, Outbox};
use crate::rules::Rendered;
use crate::source::{Inbound, Source};
pub use acceptance::{Acceptance, QueuedMessage};
pub use refusal::Refusal;

use answer::{answer, refused};
use refusals::RefusalLog;

/// What a reload swaps at once: the config, and the wake-ups of the workers serving its robots.
pub struct Live {
    pub config: Arc<Config>,
    /// Per robot: notified when a message for it is committed, so its worker sends at once.
    pub wake: HashMap<String, Arc<Notify>>,
}

/// A request to reload the config, answered with the outcome (`Err` holds why it was refused).
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What request handlers share.
pub struct Intake {
    pub live: Arc<ArcSwap<Live>>,
    pub outbox: Outbox,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Where `POST /-/reload` sends its requests (to the daemon's supervisor).
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Refused webhooks, logged without flooding the journal.
    pub refusals: RefusalLog,
}

/// The router.
pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload))
        .method_not_allowed_fallback(operator_method_not_allowed)
        .fallback(webhook)
        .with_state(intake)
}

/// An operator route asked with the wrong method: 405 with a JSON reason, like every answer
/// (axum keeps its `Allow` header).
async fn operator_method_not_allowed(request: Request) -> Response {
    let path = request.uri().path();
    let allowed = if path == "/-/reload" { "POST" } else { "GET" };
    refused(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} answers {allowed} only"),
    )
}

/// `/-/healthy`: the process answers.
async fn healthy() -> Response {
    answer(StatusCode::OK, json!({ "status": "ok" }))
}

/// `/-/ready`: a config is loaded and the outbox can be written.
async fn ready(State(intake): State<Arc<Intake>>) -> Response {
    match intake.outbox.check_writable().await {
        Ok(()) => answer(StatusCode::OK, json!({ "status": "ready" })),
        Err(error) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "error": error.to_string() }),
        ),
    }
}

/// `/metrics`: OpenMetrics text; the outbox gauges are read at scrape time.
async fn metrics(State(intake): State<Arc<Intake>>) -> Response {
    let live = intake.live.load();
    let now = intake.clock.now_ms();
    if let Ok(stats) = intake.outbox.robot_stats().await {
        for robot in live.config.robots.keys() {
            let (pending, dead, age) = stats
                .iter()
                .find(|s| &s.robot == robot)
                .map(|s| {
                    let age = s
                        .oldest_pending_at
                        .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
                    (s.pending as u64, s.dead as u64, age)
                })
                .unwrap_or((0, 0, 0.0));
            intake.metrics.outbox(robot, pending, dead, age);
        }
    }
    (
        [(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        intake.metrics.encode(),
    )
        .into_response()
}

/// `POST /-/reload`: off unless `reload_token` is set; then the same reload as SIGHUP.
async fn reload(State(intake): State<Arc<Intake>>, headers: HeaderMap) -> Response {
    let live = intake.live.load();
    let Some(token) = &live.config.reload_token else {
        return refused(
            StatusCode::NOT_FOUND,
            "reloading over HTTP is off: set reload_token in the config (SIGHUP always reloads)",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        tracing::warn!("Refused a reload request: wrong or missing bearer token.");
        return refused(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
    }
    let (tx, rx) = oneshot::channel();
    if intake.reload.send(tx).await.is_err() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    match rx.await {
        Ok(Ok(())) => answer(StatusCode::OK, json!({ "status": "reloaded" })),
        Ok(Err(errors)) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "status": "refused", "error": "the new config is invalid; the running one stays", "errors": errors }),
        ),
        Err(_) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// Every other request: a webhook for the source at this path.
async fn webhook(State(intake): State<Arc<Intake>>, request: Request) -> Response {
    let live = intake.live.load_full();
    let path = request.uri().path().to_owned();
    let Some(source) = live.config.sources.values().find(|s| s.path == path) else {
        return intake.conclude("-", Err(Refusal::UnknownPath { path }));
    };
    let outcome = if request.method() == Method::POST {
        let timeout = live.config.intake.request_timeout;
        tokio::time::timeout(timeout, handle(&intake, &live, source, request))
            .await
            .unwrap_or(Err(Refusal::TimedOut { after: timeout }))
    } else {
        Err(Refusal::NotPost)
    };
    intake.conclude(&source.name, outcome)
}

impl Intake {
    /// Records, logs and answers a webhook's outcome; every answer is counted in
    /// `dingrelay_requests_total` under `source` (`-` when no source is served at the path).
    fn conclude(&self, source: &str, outcome: Result<Acceptance, Refusal>) -> Response {
        let response = match outcome {
            Ok(acceptance) => {
                acceptance.record(&self.metrics);
                acceptance.log(source);
                acceptance.into_response()
            }
            Err(refusal) => {
                refusal.record(&self.metrics, source);
                refusal.log(&self.refusals, self.clock.now_ms(), source);
                refusal.into_response()
            }
        };
        self.metrics.request(source, response.status().as_u16());
        response
    }
}

/// Reads the body, up to the limit.
async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, String, Bytes), Refusal> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    let limited = http_body_util::Limited::new(body, limit);
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::TooLarge { limit });
        }
        Err(error) => {
            return Err(Refusal::Unreadable {
                reason: error.to_string(),
            });
        }
    };
    let query = parts.uri.query().unwrap_or("").to_owned();
    Ok((parts.headers, query, bytes))
}

/// A POSTed webhook: verify, parse, route, store; what it comes to is answered by the caller.
async fn handle(
    intake: &Intake,
    live: &Live,
    source: &Source,
    request: Request,
) -> Result<Acceptance, Refusal> {
    let config = &live.config;
    let (headers, query, body) = read_body(request, config.intake.body_limit).await?;
    let inbound = Inbound {
        headers: &headers,
        query: &query,
        body: &body,
    };
    source.verify(&inbound).map_err(Refusal::Unauthenticated)?;
    let event = source.parse(&inbound).map_err(Refusal::Rejected)?;
    if let Some(reason) = &event.ignored {
        return Ok(Acceptance::Ignored {
            event: event.name.clone(),
            reason: reason.clone(),
        });
    }

    let now = intake.clock.timestamp();
    let routing = config.rules.route(&event, now);
    if !routing.errors.is_empty() {
        return Err(Refusal::RulesFailed {
            event: event.name,
            errors: routing.errors,
        });
    }
    if routing.messages.is_empty() {
        return Ok(Acceptance::NoMatch {
            event: event.name,
            skipped: routing.skipped.iter().map(|s| s.to_string()).collect(),
        });
    }
    let event_key = config
        .rules
        .dedup_key(&event, now)
        .map_err(Refusal::DedupFailed)?;
    let matched: BTreeSet<&str> = routing.messages.iter().map(|d| d.rule.as_str()).collect();
    for rule in &matched {
        intake.metrics.rule_matched(rule);
    }

    let batch = new_messages(&source.name, &routing.messages, event_key.as_deref());
    let window = config.intake.dedup_window.as_millis() as i64;
    let results = intake
        .outbox
        .enqueue(batch, intake.clock.now_ms(), window)
        .await
        .map_err(|error| Refusal::Unavailable {
            event: event.name.clone(),
            error,
        })?;
    Ok(queued(
        live,
        event.name,
        matched.len(),
        &routing.messages,
        &results,
    ))
}

/// The outbox rows of a request's rendered messages, each with its dedup key.
fn new_messages(source: &str, rendered: &[Rendered], event_key: Option<&str>) -> Vec<NewMessage> {
    rendered
        .iter()
        .map(|r| NewMessage {
            robot: r.robot.name.clone(),
            rule: r.rule.clone(),
            source: source.to_owned(),
            dedup_key: r.dedup_key(event_key),
            message: r.message.clone(),
        })
        .collect()
}

/// What the outbox took: wakes the worker of every robot with a new message.
fn queued(
    live: &Live,
    event: String,
    matched: usize,
    rendered: &[Rendered],
    results: &[Enqueued],
) -> Acceptance {
    let mut messages = Vec::new();
    let mut duplicates = Vec::new();
    for (delivery, result) in rendered.iter().zip(results) {
        let robot = delivery.robot.name.clone();
        match result {
            Enqueued::Accepted { id } => {
                if let Some(wake) = live.wake.get(&robot) {
                    wake.notify_one();
                }
                messages.push(QueuedMessage {
                    id: *id,
                    rule: delivery.rule.clone(),
                    robot,
                });
            }
            Enqueued::Duplicate { .. } => duplicates.push(robot),
        }
    }
    Acceptance::Queued {
        event,
        matched,
        messages,
        duplicates,
    }
}

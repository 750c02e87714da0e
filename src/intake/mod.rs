//! HTTP intake: a `POST` route per source, answering once the request's messages are durable;
//! plus the operator's routes (`/-/healthy`, `/-/ready`, `/metrics`, `POST /-/reload`).
//!
//! The path of a webhook through here, and what each step answers:
//!
//! 1. the source is found by the request path in the *current* config (a reload can add, move or
//!    remove sources without a restart): `404` when none, `405` for another method than POST;
//! 2. credentials carried in headers (bearer, basic, GitLab's token) are checked before the body
//!    is read (`401`), so a wrong token never makes the daemon buffer a large body;
//! 3. the body is read up to `body_limit` (`413` beyond it), all within `request_timeout` (`408`);
//! 4. the source verifies the request over the raw bytes (`401`), at the intake's clock (a
//!    signed Grafana timestamp must be within ±5 minutes of it), then parses it (`400`, `415`);
//! 5. an ignored event (GitHub `ping`) is answered `202` and not stored;
//! 6. the event is appended to the event log, with its dedup key, in one durable transaction
//!    (group commit), and only then answered `202` with its id; a repeat of an event stored
//!    within `dedup_window` is answered `202` as a duplicate and not stored again. If the log
//!    cannot take it, `503`: Alertmanager, Grafana and GitLab retry on 5xx, so a relay problem
//!    never loses an alert.
//!
//! No rule runs here: routing ([`crate::routing`]) turns stored events into messages, so the
//! answer never depends on the rules, and a 4xx only ever says what is wrong with the request.
//! Every answer is a short JSON object with a `status` and, for refusals, an `error` saying why.
//! A 408 always means "not stored": a request whose `request_timeout` passes before its turn in
//! the event log's writer is taken back and never stored, so the sender's retry is no duplicate;
//! one whose commit has begun is answered by that commit's outcome (`202` or `503`), a little past
//! the timeout (at most SQLite's 5 s busy timeout when another process holds a write lock).
//!
//! What a webhook comes to is one value, a [`Refusal`] or an [`Acceptance`], which makes its
//! answer, its log line and its metrics; the handler only decides which it is, and every answer is
//! counted in `dingrelay_requests_total` in one place. Refusals are logged through
//! [`refusals::RefusalLog`]: a flood of bad requests gives a line a minute per source and status,
//! not a line each; so do reload requests with a wrong or missing token.

mod acceptance;
mod answer;
mod refusal;
pub mod refusals;

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
use crate::metrics::{Metrics, OutboxState};
use crate::outbox::{Appended, NewEvent, Outbox};
use crate::routing::Live;
use crate::source::{Inbound, Source};
pub use acceptance::Acceptance;
pub use refusal::Refusal;

use answer::{answer, refused};
use refusals::RefusalLog;

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
    /// Refused webhooks and reload requests, logged without flooding the journal.
    pub refusals: RefusalLog,
    /// Wakes the router when an event is stored.
    pub router: Arc<Notify>,
    /// Bytes of request bodies being read and held at once, across every request, in KiB
    /// (see [`BODY_BUDGET`]).
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

/// What all requests' bodies may hold in memory at once: a flood of large bodies is answered 503
/// (the senders retry) instead of taking the daemon's memory. A request reserves its declared
/// length (or `body_limit` when it declares none) before its body is read.
pub const BODY_BUDGET: usize = 256 << 20;

/// The budget as a semaphore of KiB permits.
pub fn body_budget(bytes: usize) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(bytes.div_ceil(1024)))
}

/// Reserves what a body may take of the budget: its declared length, else `limit`, in KiB; `None`
/// when the budget cannot hold it now.
fn reserve_body(
    budget: &Arc<tokio::sync::Semaphore>,
    declared: Option<u64>,
    limit: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let bytes = declared.map_or(limit as u64, |d| d.min(limit as u64));
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    budget.clone().try_acquire_many_owned(kib).ok()
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

/// `/-/ready`: a config is loaded, the outbox can be written, and the last append of an event did
/// not fail (a full disk fails appends while a bare write lock still succeeds).
async fn ready(State(intake): State<Arc<Intake>>) -> Response {
    if let Some(reason) = intake.outbox.failing() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "error": format!("the last webhook could not be stored: {reason}") }),
        );
    }
    match intake.outbox.check_writable().await {
        Ok(()) => answer(StatusCode::OK, json!({ "status": "ready" })),
        Err(error) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "error": error.to_string() }),
        ),
    }
}

/// `/metrics`: OpenMetrics text; the outbox gauges are read at scrape time, for every robot of
/// the config and every robot with pending or dead messages: a robot that a reload removed keeps
/// its gauges while messages wait for it, so the oldest-pending alert still sees them.
async fn metrics(State(intake): State<Arc<Intake>>) -> Response {
    let live = intake.live.load();
    let now = intake.clock.now_ms();
    match intake.outbox.robot_stats().await {
        Ok(stats) => {
            let waiting = stats.iter().map(|s| OutboxState {
                robot: &s.robot,
                pending: s.pending as u64,
                dead: s.dead as u64,
                oldest_pending_age_seconds: s
                    .oldest_pending_at
                    .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0),
            });
            let idle = live
                .config
                .robots
                .keys()
                .filter(|robot| !stats.iter().any(|s| &s.robot == *robot))
                .map(|robot| OutboxState {
                    robot,
                    pending: 0,
                    dead: 0,
                    oldest_pending_age_seconds: 0.0,
                });
            intake.metrics.outbox_report(waiting.chain(idle));
        }
        Err(error) => tracing::debug!(
            %error,
            "Served the metrics with the outbox gauges of the last scrape: the outbox could not be read."
        ),
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
        // Through the refusal log: a flood of wrong tokens is a WARN line a minute, not a line
        // each.
        let told = "a valid bearer token is needed";
        intake.refusals.refused_reload(
            intake.clock.now_ms(),
            StatusCode::UNAUTHORIZED,
            "Refused a reload request: wrong or missing bearer token.",
            &told,
        );
        return refused(StatusCode::UNAUTHORIZED, told);
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
        let deadline = tokio::time::Instant::now() + live.config.intake.request_timeout;
        handle(&intake, &live, source, request, deadline).await
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
                acceptance.record(&self.metrics, source);
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

/// The body length the request declares (`Content-Length`), if it declares a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body, up to the limit; `declared` is its [`declared_length`].
async fn read_body(
    request: Request,
    declared: Option<u64>,
    limit: usize,
) -> Result<(HeaderMap, String, Bytes), Refusal> {
    let (parts, body) = request.into_parts();
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

/// A POSTed webhook: verify, parse, store; what it comes to is answered by the caller. Past
/// `deadline` it is answered 408, unless the event log's writer has begun committing it: then
/// the commit's outcome is the answer (see [`crate::outbox::Outbox::append_before`]).
async fn handle(
    intake: &Intake,
    live: &Live,
    source: &Source,
    request: Request,
    deadline: tokio::time::Instant,
) -> Result<Acceptance, Refusal> {
    let config = &live.config;
    let timed_out = || Refusal::TimedOut {
        after: config.intake.request_timeout,
    };
    // Credentials carried in headers are checked before a byte of the body is read.
    source
        .verify_headers(request.headers())
        .map_err(Refusal::Unauthenticated)?;
    let declared = declared_length(request.headers());
    // Held until the request is answered, with its body.
    let _reserved = reserve_body(&intake.body_budget, declared, config.intake.body_limit)
        .ok_or(Refusal::Busy)?;
    let (headers, query, body) = tokio::time::timeout_at(
        deadline,
        read_body(request, declared, config.intake.body_limit),
    )
    .await
    .map_err(|_| timed_out())??;
    let inbound = Inbound {
        headers: &headers,
        query: &query,
        body: &body,
    };
    // The headers' credentials were checked before the body was read; now its signatures.
    source
        .verify_body(&inbound, intake.clock.timestamp())
        .map_err(Refusal::Unauthenticated)?;
    let event = source.parse(&inbound).map_err(Refusal::Rejected)?;
    if let Some(reason) = &event.ignored {
        return Ok(Acceptance::Ignored {
            event: event.name.clone(),
            reason: reason.clone(),
        });
    }
    let received_at = intake.clock.now_ms();
    let dedup_key = match config.rules.dedup_key(&event, intake.clock.timestamp()) {
        Ok(key) => key,
        Err(error) => {
            // The source's `dedup` template is config, not the request: the event is kept.
            tracing::warn!(
                source = %source.name,
                "The source's dedup template failed; the event is stored without a dedup key: {error}."
            );
            None
        }
    };
    let new = NewEvent {
        source: source.name.clone(),
        name: event.name.clone(),
        dedup_key,
        query: event.query_string(),
        headers: event.headers,
        body: body.to_vec(),
        received_at,
    };
    let window = config.intake.dedup_window.as_millis() as i64;
    let appended = intake
        .outbox
        .append_before(new, window, deadline)
        .await
        .map_err(|error| Refusal::Unavailable {
            event: event.name.clone(),
            error,
        })?
        .ok_or_else(timed_out)?;
    Ok(match appended {
        Appended::Stored { id } => {
            intake.router.notify_one();
            Acceptance::Stored {
                event: event.name,
                id,
            }
        }
        Appended::Duplicate { id } => Acceptance::Duplicate {
            event: event.name,
            id,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_reserve_their_declared_length_or_the_limit_within_the_budget() {
        let budget = body_budget(100 * 1024);
        let a = reserve_body(&budget, Some(60 * 1024), 1 << 20).expect("60 KiB of 100");
        assert!(
            reserve_body(&budget, Some(50 * 1024), 1 << 20).is_none(),
            "110 KiB > 100"
        );
        let b = reserve_body(&budget, Some(10), 1 << 20).expect("a small one still fits");
        assert!(
            reserve_body(&budget, None, 64 * 1024).is_none(),
            "undeclared: the limit"
        );
        drop(a);
        let c = reserve_body(&budget, None, 64 * 1024).expect("room again");
        drop((b, c));
        assert_eq!(budget.available_permits(), 100);
    }
}

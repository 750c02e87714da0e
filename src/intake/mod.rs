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
//! Refusals are logged through [`refusals::RefusalLog`]: a flood of bad requests gives a line a
//! minute per source and status, not a line each.

pub mod refusals;

use std::collections::HashMap;
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
use crate::source::{Inbound, Rejection, Source};
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

/// An answer: status and a JSON body.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    }
    response
}

fn refused(status: StatusCode, error: impl std::fmt::Display) -> Response {
    answer(
        status,
        json!({ "status": "rejected", "error": error.to_string() }),
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
        intake.metrics.request("-", 404);
        return refused(
            StatusCode::NOT_FOUND,
            format!("no source is served at {path}"),
        );
    };
    if request.method() != Method::POST {
        intake.metrics.request(&source.name, 405);
        let mut response = refused(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let timeout = live.config.intake.request_timeout;
    let response =
        match tokio::time::timeout(timeout, handle(&intake, &live, source, request)).await {
            Ok(response) => response,
            Err(_) => {
                intake.refusals.refused(
                    intake.clock.now_ms(),
                    &source.name,
                    StatusCode::REQUEST_TIMEOUT,
                    "A webhook request took longer than request_timeout; answered 408.",
                    &format_args!("{} s", timeout.as_secs()),
                );
                refused(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request took longer than {} s (request_timeout)",
                        timeout.as_secs()
                    ),
                )
            }
        };
    intake
        .metrics
        .request(&source.name, response.status().as_u16());
    response
}

/// Reads the body, up to the limit.
async fn read_body(request: Request, limit: usize) -> Result<(HeaderMap, String, Bytes), Response> {
    let (parts, body) = request.into_parts();
    let too_large = || {
        refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes (body_limit)"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(error) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            ));
        }
    };
    let query = parts.uri.query().unwrap_or("").to_owned();
    Ok((parts.headers, query, bytes))
}

async fn handle(intake: &Intake, live: &Live, source: &Source, request: Request) -> Response {
    let config = &live.config;
    let source_name = source.name.as_str();
    let (headers, query, body) = match read_body(request, config.intake.body_limit).await {
        Ok(read) => read,
        Err(response) => {
            intake.refusals.refused(
                intake.clock.now_ms(),
                source_name,
                response.status(),
                "Refused a webhook whose body could not be read.",
                &response.status(),
            );
            return response;
        }
    };
    let inbound = Inbound {
        headers: &headers,
        query: &query,
        body: &body,
    };

    if let Err(rejection) = source.verify(&inbound) {
        intake.metrics.auth_failure(source_name);
        intake.refusals.refused(
            intake.clock.now_ms(),
            source_name,
            StatusCode::UNAUTHORIZED,
            "Refused an unauthenticated webhook.",
            &rejection,
        );
        return refused(StatusCode::UNAUTHORIZED, rejection);
    }
    let event = match source.parse(&inbound) {
        Ok(event) => event,
        Err(rejection) => {
            let status = match rejection {
                Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            };
            intake.refusals.refused(
                intake.clock.now_ms(),
                source_name,
                status,
                "Refused a webhook.",
                &rejection,
            );
            return refused(status, rejection);
        }
    };
    if let Some(reason) = &event.ignored {
        tracing::info!(source = source_name, event = %event.name, "Ignored a webhook: {reason}.");
        return answer(
            StatusCode::ACCEPTED,
            json!({ "status": "ignored", "matched": 0, "queued": 0, "reason": reason }),
        );
    }

    let now = intake.clock.timestamp();
    let routing = config.rules.route(&event, now);
    if !routing.errors.is_empty() {
        let errors: Vec<_> = routing
            .errors
            .iter()
            .map(|e| json!({ "rule": e.rule, "robot": e.robot, "field": e.field, "reason": e.reason }))
            .collect();
        for error in &routing.errors {
            tracing::error!(
                source = source_name,
                event = %event.name,
                rule = %error.rule,
                "A rule failed for this webhook; nothing of it was queued: {error}. Fix the rule (dingrelay render reproduces it)."
            );
        }
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "status": "rejected",
                "error": format!("{} rule(s) failed to render or validate; nothing was queued", errors.len()),
                "errors": errors,
            }),
        );
    }
    if routing.messages.is_empty() {
        let skipped: Vec<String> = routing.skipped.iter().map(|s| s.to_string()).collect();
        tracing::info!(source = source_name, event = %event.name, "No rule matched a webhook.");
        return answer(
            StatusCode::ACCEPTED,
            json!({ "status": "ignored", "matched": 0, "queued": 0, "reason": "no rule matched", "rules": skipped }),
        );
    }

    let event_key = match config.rules.dedup_key(&event, now) {
        Ok(key) => key,
        Err(error) => {
            tracing::error!(
                source = source_name,
                "The source's dedup template failed: {error}."
            );
            return refused(StatusCode::UNPROCESSABLE_ENTITY, error);
        }
    };
    let batch: Vec<NewMessage> = routing
        .messages
        .iter()
        .map(|d| NewMessage {
            robot: d.robot.name.clone(),
            rule: d.rule.clone(),
            source: source_name.to_owned(),
            dedup_key: event_key.as_ref().map(|k| match &d.part {
                Some(part) => format!("{k}/{}/{part}", d.rule),
                None => format!("{k}/{}", d.rule),
            }),
            message: d.message.clone(),
        })
        .collect();
    let matched: std::collections::BTreeSet<&str> =
        routing.messages.iter().map(|d| d.rule.as_str()).collect();
    for rule in &matched {
        intake.metrics.rule_matched(rule);
    }
    let window = config.intake.dedup_window.as_millis() as i64;
    let results = match intake
        .outbox
        .enqueue(batch, intake.clock.now_ms(), window)
        .await
    {
        Ok(results) => results,
        Err(error) => {
            tracing::error!(
                source = source_name,
                event = %event.name,
                "Could not queue a webhook's messages; answered 503 so the sender retries: {error}. Check the disk and the state directory."
            );
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "unavailable", "error": error.to_string() }),
            );
        }
    };

    let mut queued = Vec::new();
    let mut duplicates = 0;
    for (delivery, result) in routing.messages.iter().zip(&results) {
        let robot = delivery.robot.name.as_str();
        match result {
            Enqueued::Accepted { id } => {
                intake.metrics.queued(robot, 1);
                if let Some(wake) = live.wake.get(robot) {
                    wake.notify_one();
                }
                queued.push(json!({ "id": id, "rule": delivery.rule, "robot": robot }));
            }
            Enqueued::Duplicate { .. } => {
                intake.metrics.duplicates(robot, 1);
                duplicates += 1;
            }
        }
    }
    tracing::info!(
        source = source_name,
        event = %event.name,
        matched = matched.len(),
        queued = queued.len(),
        duplicates,
        "Accepted a webhook."
    );
    answer(
        StatusCode::ACCEPTED,
        json!({
            "status": "accepted",
            "matched": matched.len(),
            "queued": queued.len(),
            "duplicates": duplicates,
            "messages": queued,
        }),
    )
}

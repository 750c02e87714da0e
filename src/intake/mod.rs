//! HTTP intake: one `POST` route per source, answering once the request's messages are durable.
//!
//! The path of a request through here, and what each step answers:
//!
//! 1. the body is read up to the configured limit (`413` beyond it), within the request timeout;
//! 2. the source verifies the request over the raw bytes (`401`), then parses it (`400`, `415`);
//! 3. an ignored event (GitHub `ping`) or one that matches no rule is answered `202` with
//!    `matched: 0` — never a 4xx, which would make GitLab disable the hook;
//! 4. every matching rule renders and validates its messages; if any fails, nothing of the
//!    request is queued and the answer is `422` naming the rule and the reason;
//! 5. all messages of the request go into the outbox in one transaction; `202` is sent only after
//!    it is committed. If the outbox cannot take them, `503`: Alertmanager, Grafana and GitLab
//!    retry on 5xx, so a relay problem never loses an alert.
//!
//! Every answer is a short JSON object with a `status` and, for refusals, an `error` saying why.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::outbox::{Enqueued, NewMessage, Outbox};
use crate::source::{Inbound, Rejection};

/// What request handlers share.
pub struct Intake {
    pub config: Arc<Config>,
    pub outbox: Outbox,
    /// Per robot: woken when a message for it is committed, so its worker sends at once.
    pub wake: HashMap<String, Arc<Notify>>,
    pub clock: Clock,
}

/// The router: `POST <source.path>` for every source.
pub fn router(intake: Arc<Intake>) -> Router {
    let mut router = Router::new();
    for source in intake.config.sources.values() {
        let name = source.name.clone();
        router = router.route(
            &source.path,
            post(
                move |State(intake): State<Arc<Intake>>,
                      uri: Uri,
                      headers: HeaderMap,
                      body: Result<Bytes, axum::extract::rejection::BytesRejection>| {
                    let name = name.clone();
                    async move { handle(&intake, &name, uri, headers, body).await }
                },
            ),
        );
    }
    let limit = intake.config.intake.body_limit;
    let timeout = intake.config.intake.request_timeout;
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(intake)
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

async fn handle(
    intake: &Intake,
    source_name: &str,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let config = &intake.config;
    let Some(source) = config.sources.get(source_name) else {
        return refused(StatusCode::NOT_FOUND, "no such source");
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than the limit of {} bytes (body_limit)",
                    config.intake.body_limit
                )
            } else {
                format!("the body could not be read: {rejection}")
            };
            tracing::warn!(source = source_name, %status, "Refused a webhook: {error}.");
            return refused(status, error);
        }
    };
    let inbound = Inbound {
        headers: &headers,
        query: uri.query().unwrap_or(""),
        body: &body,
    };

    if let Err(rejection) = source.verify(&inbound) {
        tracing::warn!(source = source_name, reason = %rejection, "Refused an unauthenticated webhook.");
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
            tracing::warn!(source = source_name, %status, reason = %rejection, "Refused a webhook.");
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
    if routing.deliveries.is_empty() {
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
        .deliveries
        .iter()
        .map(|d| NewMessage {
            robot: d.robot.name.clone(),
            rule: d.rule.clone(),
            source: source_name.to_owned(),
            dedup_key: event_key.as_ref().map(|k| format!("{k}/{}", d.rule)),
            message: d.message.clone(),
        })
        .collect();
    let matched: std::collections::BTreeSet<&str> =
        routing.deliveries.iter().map(|d| d.rule.as_str()).collect();
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
    for (delivery, result) in routing.deliveries.iter().zip(&results) {
        match result {
            Enqueued::Accepted { id } => {
                if let Some(wake) = intake.wake.get(&delivery.robot.name) {
                    wake.notify_one();
                }
                queued
                    .push(json!({ "id": id, "rule": delivery.rule, "robot": delivery.robot.name }));
            }
            Enqueued::Duplicate { .. } => duplicates += 1,
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

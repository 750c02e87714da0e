//! Routing one stored event: parse it again with its source, run the rules in force, and put a
//! fallback message in place of every rule that fails. Pure: the router, `dingrelay outbox
//! reroute` and the dry run over stored events all call [`route_event`].

use http::{HeaderMap, HeaderName, HeaderValue};

use super::fallback::fallback;
use crate::config::Config;
use crate::dingtalk::{AppRobotKind, Message, Robot, prepare, work_notice};
use crate::outbox::{Failure, NewMessage, Outcome, RoutedEvent, StoredEvent};
use crate::source::{Event, Inbound};

/// What routing makes of a stored event at `now_ms`: its messages (rendered, or a fallback for
/// each failing rule and robot) and its outcome. Templates see the time the event was received
/// as `now`, so an event routed late, or again, reads as it did when it came.
pub fn route_event(config: &Config, stored: &StoredEvent, now_ms: i64) -> RoutedEvent {
    let mut routed = RoutedEvent {
        event_id: stored.id,
        messages: Vec::new(),
        outcome: Outcome::default(),
        routed_at: now_ms,
    };
    let Some(source) = config.sources.get(&stored.source) else {
        routed.outcome.note = Some(format!(
            "source `{}` is not in the config any more; re-route the event once it is",
            stored.source
        ));
        return routed;
    };
    let headers = header_map(stored);
    let inbound = Inbound {
        headers: &headers,
        query: &stored.query,
        body: &stored.body,
    };
    let event = match source.parse(&inbound) {
        Ok(event) => event,
        Err(rejection) => {
            routed.outcome.note = Some(format!(
                "source `{}` cannot read the event any more: {rejection}",
                stored.source
            ));
            return routed;
        }
    };
    if let Some(reason) = &event.ignored {
        routed.outcome.note = Some(format!("ignored: {reason}"));
        return routed;
    }
    let received = jiff::Timestamp::from_millisecond(stored.received_at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let routing = config.rules.route(&event, received);
    for rendered in &routing.messages {
        if !routed.outcome.rules.contains(&rendered.rule) {
            routed.outcome.rules.push(rendered.rule.clone());
        }
        for recipients in rows_of(&rendered.robot, &rendered.recipients) {
            routed.messages.push(NewMessage {
                robot: rendered.robot.name.clone(),
                rule: rendered.rule.clone(),
                source: stored.source.clone(),
                dedup_key: rendered.dedup_key(stored.dedup_key.as_deref()),
                message: rendered.message.clone(),
                recipients,
            });
        }
    }
    for error in &routing.errors {
        let reason = format!("{}: {}", error.field, error.reason);
        let robots: Vec<&std::sync::Arc<Robot>> = match &error.robot {
            Some(name) => config.robot(name).into_iter().collect(),
            None => config
                .rules
                .rules()
                .iter()
                .find(|rule| rule.name == error.rule)
                .map(|rule| rule.robots.iter().collect())
                .unwrap_or_default(),
        };
        for robot in robots {
            routed.messages.push(NewMessage {
                robot: robot.name.clone(),
                rule: error.rule.clone(),
                source: stored.source.clone(),
                dedup_key: None,
                message: fallback_for(&event, robot, &error.rule, &reason),
                // A robot that addresses people gets the fallback with no one to send it to:
                // its worker dead-letters it, saying why, rather than guess a person.
                recipients: Vec::new(),
            });
        }
        if !routed.outcome.rules.contains(&error.rule) {
            routed.outcome.rules.push(error.rule.clone());
        }
        routed.outcome.failures.push(Failure {
            rule: error.rule.clone(),
            robot: error.robot.clone(),
            reason,
        });
    }
    if routed.messages.is_empty() {
        routed.outcome.note = Some(if routing.skipped.is_empty() {
            format!("no rule of source `{}` matched", stored.source)
        } else {
            let skipped: Vec<String> = routing.skipped.iter().map(ToString::to_string).collect();
            // The count first: a listing shortens the note to its start.
            format!(
                "no rule matched ({} rule{} skipped): {}",
                skipped.len(),
                crate::text::plural(skipped.len()),
                skipped.join("; ")
            )
        });
    }
    routed
}

/// The rows a message for `robot` becomes: one per person for an app robot's one-to-one chats
/// (each person's delivery is retried or dead-lettered on its own), one per hundred people for
/// work notifications (DingTalk's limit per call), one for a group. A message for people that
/// names none is still one row, which the worker dead-letters with the reason.
pub fn rows_of(robot: &Robot, recipients: &[String]) -> Vec<Vec<String>> {
    let per_row = match robot.endpoint.app().map(|app| &app.kind) {
        Some(AppRobotKind::OneToOne { .. }) => 1,
        Some(AppRobotKind::WorkNotice { .. }) => work_notice::MAX_USERS,
        _ => return vec![Vec::new()],
    };
    if recipients.is_empty() {
        return vec![Vec::new()];
    }
    recipients.chunks(per_row).map(<[String]>::to_vec).collect()
}

/// The fallback for a failed rule, validated for the robot. [`fallback`] always validates; should
/// it ever not, a bare text naming the rule and the robot's keywords goes instead.
fn fallback_for(event: &Event, robot: &Robot, rule: &str, reason: &str) -> Message {
    let message = fallback(event, robot, rule, reason);
    match prepare(message, robot) {
        Ok(prepared) => prepared.message,
        Err(invalid) => {
            tracing::error!(
                rule,
                robot = %robot.name,
                "The fallback message for a failed rule was invalid ({invalid}); a bare one goes instead."
            );
            let mut text = format!(
                "dingrelay: rule `{rule}` failed on a `{}` event of source `{}`.",
                event.name, event.source
            );
            if !robot.keywords.is_empty() {
                text.push_str(&format!("\nKeywords: {}", robot.keywords.join(" ")));
            }
            Message::text(text)
        }
    }
}

/// The stored headers as a request's, for the source to parse again.
fn header_map(stored: &StoredEvent) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(stored.headers.len());
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

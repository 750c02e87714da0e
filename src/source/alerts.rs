//! What Alertmanager and Grafana payloads share: an alert group (`status`, `groupKey`, `alerts`).
//!
//! Invariants:
//! - every alert is classified as firing or resolved: its own `status` when that is one of the
//!   two (any case), else firing when `endsAt` is missing or the zero time
//!   (`0001-01-01T00:00:00Z`, what Alertmanager sends for firing alerts), resolved otherwise;
//! - a group's status is its `status` field when present, else derived: firing when any alert is
//!   firing;
//! - the dedup key depends only on `groupKey`, the group status and the sorted (fingerprint,
//!   startsAt, status) of the alerts, so a redelivery of the same notification (a retry, or
//!   the other replica of an HA pair) gets the same key.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Rejection, SourceKind, describe};

/// Whether an alert (or a group) is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    /// Parses `firing`/`resolved`, in any case.
    pub(super) fn from_value(value: &Value) -> Option<Status> {
        let s = value.as_str()?.trim();
        if s.eq_ignore_ascii_case("firing") {
            Some(Status::Firing)
        } else if s.eq_ignore_ascii_case("resolved") {
            Some(Status::Resolved)
        } else {
            None
        }
    }
}

/// The `alerts` list, when it is an array.
pub(super) fn list(payload: &Value) -> Option<&[Value]> {
    payload.get("alerts")?.as_array().map(Vec::as_slice)
}

/// Checks that `alerts` is an array of objects and returns it.
pub(super) fn validate(payload: &Map<String, Value>) -> Result<&[Value], Rejection> {
    let alerts = match payload.get("alerts") {
        None => {
            return Err(Rejection::Malformed(
                "`alerts` is missing; expected an array of alerts".into(),
            ));
        }
        Some(Value::Array(alerts)) => alerts,
        Some(other) => {
            return Err(Rejection::Malformed(format!(
                "`alerts` must be an array of alerts, got {}",
                describe(other)
            )));
        }
    };
    if let Some((i, bad)) = alerts.iter().enumerate().find(|(_, a)| !a.is_object()) {
        return Err(Rejection::Malformed(format!(
            "`alerts[{i}]` must be an object, got {}",
            describe(bad)
        )));
    }
    Ok(alerts)
}

/// Whether one alert is firing or resolved.
pub(super) fn alert_status(alert: &Value) -> Status {
    if let Some(status) = alert.get("status").and_then(Status::from_value) {
        return status;
    }
    match alert.get("endsAt").and_then(Value::as_str).map(str::trim) {
        None | Some("") => Status::Firing,
        Some(ends_at) if ends_at.starts_with("0001-01-01") => Status::Firing,
        Some(_) => Status::Resolved,
    }
}

/// The group status derived from the alerts: firing when any is firing.
pub(super) fn derived_status(alerts: &[Value]) -> Status {
    if alerts.iter().any(|a| alert_status(a) == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    }
}

/// The group's `status` field: `Ok(None)` when missing or null, an error when it is something
/// other than `firing`/`resolved`.
pub(super) fn status_field(payload: &Map<String, Value>) -> Result<Option<Status>, Rejection> {
    match payload.get("status") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Status::from_value(value).map(Some).ok_or_else(|| {
            Rejection::Malformed(format!(
                "`status` must be \"firing\" or \"resolved\", got {}",
                describe(value)
            ))
        }),
    }
}

/// A short, stable key for one notification of an alert group: the SHA-256 (hex) of
/// `groupKey`, the group status and the sorted (fingerprint, startsAt, status) of its alerts.
/// An alert without a fingerprint is identified by its labels instead.
pub(super) fn dedup_key(payload: &Map<String, Value>, status: Status, alerts: &[Value]) -> String {
    let mut items: Vec<[String; 3]> = alerts
        .iter()
        .map(|alert| {
            let fingerprint = match alert.get("fingerprint").and_then(Value::as_str) {
                Some(fp) if !fp.is_empty() => fp.to_owned(),
                _ => canonical_labels(alert.get("labels")),
            };
            let starts_at = alert
                .get("startsAt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            [
                fingerprint,
                starts_at,
                alert_status(alert).as_str().to_owned(),
            ]
        })
        .collect();
    items.sort();
    let group_key = payload.get("groupKey").cloned().unwrap_or(Value::Null);
    let material = json!([group_key, status.as_str(), items]).to_string();
    hex::encode(Sha256::digest(material.as_bytes()))
}

/// Labels as JSON with sorted keys, so that the same label set always gives the same text.
fn canonical_labels(labels: Option<&Value>) -> String {
    match labels {
        Some(Value::Object(map)) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            json!(pairs).to_string()
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Fills in group fields templates rely on, when missing or null.
pub(super) fn fill_group_defaults(context: &mut Map<String, Value>, kind: SourceKind, name: &str) {
    let status = if name.is_empty() {
        derived_status(list_of(context)).as_str().to_owned()
    } else {
        name.to_owned()
    };
    let mut defaults: Vec<(&str, Value)> = vec![
        ("status", Value::String(status)),
        ("receiver", Value::String(String::new())),
        ("groupKey", Value::String(String::new())),
        ("externalURL", Value::String(String::new())),
        ("groupLabels", Value::Object(Map::new())),
        ("commonLabels", Value::Object(Map::new())),
        ("commonAnnotations", Value::Object(Map::new())),
        ("truncatedAlerts", Value::from(0)),
    ];
    if kind == SourceKind::Grafana {
        defaults.push(("title", Value::String(String::new())));
        defaults.push(("message", Value::String(String::new())));
    }
    for (key, value) in defaults {
        match context.get(key) {
            None | Some(Value::Null) => {
                context.insert(key.to_owned(), value);
            }
            Some(_) => {}
        }
    }
}

fn list_of(map: &Map<String, Value>) -> &[Value] {
    map.get("alerts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// One alert as templates see it: a copy with `status` set to `firing`/`resolved` and
/// `labels`/`annotations` present (`{}` when missing or null).
fn normalized(alert: &Value, status: Status) -> Value {
    let mut alert = match alert {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    alert.insert("status".into(), Value::String(status.as_str().into()));
    for key in ["labels", "annotations"] {
        if matches!(alert.get(key), None | Some(Value::Null)) {
            alert.insert(key.into(), Value::Object(Map::new()));
        }
    }
    Value::Object(alert)
}

/// The alerts shown in a template context.
pub(super) struct Shown {
    pub(super) alerts: Vec<Value>,
    pub(super) firing: Vec<Value>,
    pub(super) resolved: Vec<Value>,
    pub(super) omitted: usize,
}

/// Picks the alerts to show under `limit`: firing ones first, then resolved ones, each in their
/// original order; `alerts` lists the chosen ones in payload order.
pub(super) fn select(payload: &Value, limit: Option<usize>) -> Shown {
    let all = list(payload).unwrap_or_default();
    let statuses: Vec<Status> = all.iter().map(alert_status).collect();
    let limit = limit.unwrap_or(usize::MAX);
    let firing_total = statuses.iter().filter(|s| **s == Status::Firing).count();
    let resolved_total = statuses.len() - firing_total;
    let firing_quota = firing_total.min(limit);
    let resolved_quota = resolved_total.min(limit - firing_quota);

    let mut shown = Shown {
        alerts: Vec::new(),
        firing: Vec::new(),
        resolved: Vec::new(),
        omitted: 0,
    };
    for (alert, status) in all.iter().zip(statuses) {
        let (list, quota) = match status {
            Status::Firing => (&mut shown.firing, firing_quota),
            Status::Resolved => (&mut shown.resolved, resolved_quota),
        };
        if list.len() < quota {
            let alert = normalized(alert, status);
            list.push(alert.clone());
            shown.alerts.push(alert);
        }
    }
    shown.omitted = all.len() - shown.alerts.len();
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_status_prefers_the_field_then_ends_at() {
        let cases = [
            (
                json!({"status": "firing", "endsAt": "2025-01-01T00:00:00Z"}),
                Status::Firing,
            ),
            (json!({"status": "Resolved"}), Status::Resolved),
            (
                json!({"status": "pending", "endsAt": "2025-01-01T00:00:00Z"}),
                Status::Resolved,
            ),
            (json!({"endsAt": "0001-01-01T00:00:00Z"}), Status::Firing),
            (json!({"endsAt": ""}), Status::Firing),
            (json!({"endsAt": 5}), Status::Firing),
            (json!({}), Status::Firing),
            (json!("not an object"), Status::Firing),
        ];
        for (alert, expected) in cases {
            assert_eq!(alert_status(&alert), expected, "{alert}");
        }
    }

    #[test]
    fn dedup_key_uses_labels_without_fingerprint() {
        let payload = Map::new();
        let a = [json!({"labels": {"a": "1", "b": "2"}})];
        let b = [json!({"labels": {"b": "2", "a": "1"}})];
        let c = [json!({"labels": {"a": "1", "b": "3"}})];
        let key = |alerts: &[Value]| dedup_key(&payload, Status::Firing, alerts);
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
    }

    #[test]
    fn select_without_alerts_is_empty() {
        let shown = select(&json!({"alerts": "nope"}), Some(3));
        assert!(shown.alerts.is_empty() && shown.firing.is_empty() && shown.resolved.is_empty());
        assert_eq!(shown.omitted, 0);
    }
}

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

use super::request::{Rejection, describe};

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
    derived_status_of(alerts.iter().map(alert_status))
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

/// Which alerts a template context shows under `limit` (all when `None`), by position: firing
/// alerts are kept before resolved ones, each in their original order.
pub(super) fn choose(statuses: &[Status], limit: Option<usize>) -> Vec<bool> {
    let limit = limit.unwrap_or(usize::MAX);
    let firing_total = statuses.iter().filter(|s| **s == Status::Firing).count();
    let resolved_total = statuses.len() - firing_total;
    let firing_quota = firing_total.min(limit);
    let resolved_quota = resolved_total.min(limit - firing_quota);
    let (mut firing, mut resolved) = (0, 0);
    statuses
        .iter()
        .map(|status| {
            let (taken, quota) = match status {
                Status::Firing => (&mut firing, firing_quota),
                Status::Resolved => (&mut resolved, resolved_quota),
            };
            *taken += 1;
            *taken <= quota
        })
        .collect()
}

/// The group status derived from alert statuses: firing when any is firing.
pub(super) fn derived_status_of(mut statuses: impl Iterator<Item = Status>) -> Status {
    if statuses.any(|s| s == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    }
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
    fn choose_keeps_firing_alerts_first_in_order() {
        use Status::{Firing as F, Resolved as R};
        assert_eq!(choose(&[R, F, R, F], None), [true; 4]);
        assert_eq!(choose(&[R, F, R, F], Some(3)), [true, true, false, true]);
        assert_eq!(choose(&[R, F, R, F], Some(2)), [false, true, false, true]);
        assert_eq!(choose(&[R, F, R, F], Some(1)), [false, true, false, false]);
        assert_eq!(choose(&[R, F], Some(0)), [false, false]);
        assert!(choose(&[], Some(3)).is_empty());
    }
}

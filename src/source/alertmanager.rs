//! Prometheus Alertmanager `webhook_config` payloads, version 4.
//!
//! Alertmanager does not sign its requests: authenticate it with `auth` (bearer or basic, which
//! Alertmanager sends from `http_config`). A `secret` cannot be checked for this kind.
//!
//! Invariants:
//! - `version` is the string `"4"`; legacy version 3 payloads (numeric `groupKey`), hand-made
//!   ones without a version, and Grafana's version `"1"` are refused with a reason;
//! - `alerts` is an array of objects; every other field is optional (missing group fields get
//!   defaults in the template context, see [`Event::context`](super::Event::context));
//! - the event name is the group status, `firing` or `resolved` (derived from the alerts when the
//!   payload has no `status`: firing when any alert is firing);
//! - the dedup key is a SHA-256 over `groupKey`, the status and the sorted (fingerprint,
//!   startsAt, status) of the alerts: Alertmanager has no delivery id, and an HA pair delivers the
//!   same notification from each replica.

use serde_json::{Map, Value};

use super::alerts;
use super::request::{Parsed, Rejection, describe};

/// The payload version this module reads.
pub const PAYLOAD_VERSION: &str = "4";

pub(super) fn parse(payload: &Map<String, Value>) -> Result<Parsed, Rejection> {
    check_version(payload)?;
    let alerts = alerts::validate(payload)?;
    let status = match alerts::status_field(payload)? {
        Some(status) => status,
        None => alerts::derived_status(alerts),
    };
    Ok(Parsed {
        name: status.as_str().to_owned(),
        ignored: None,
        dedup_key: Some(alerts::dedup_key(payload, status, alerts)),
    })
}

fn check_version(payload: &Map<String, Value>) -> Result<(), Rejection> {
    let got = match payload.get("version") {
        Some(Value::String(v)) if v.trim() == PAYLOAD_VERSION => return Ok(()),
        None => "no `version` field".to_owned(),
        Some(other) => describe(other),
    };
    let hint = if payload.contains_key("orgId") || payload.contains_key("state") {
        "; this looks like a Grafana payload: use a source of kind `grafana`"
    } else if payload.get("version").and_then(Value::as_str) == Some("3") {
        " (a legacy payload from an old Alertmanager)"
    } else {
        ""
    };
    Err(Rejection::Malformed(format!(
        "Alertmanager webhook payload version {PAYLOAD_VERSION} expected, got {got}{hint}"
    )))
}

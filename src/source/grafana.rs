//! Grafana unified alerting webhook contact points.
//!
//! Authentication: `auth` (Grafana's basic auth or `Authorization` header), and/or `secret` for
//! the contact point's HMAC signing: the header (`signature_header`, default
//! `X-Grafana-Alerting-Signature`) carries hex HMAC-SHA256(secret, body), or, when the contact
//! point has a timestamp header (`timestamp_header`), HMAC-SHA256(secret, `<timestamp>:<body>`).
//!
//! Invariants:
//! - the signature is checked over the raw bytes, in constant time ([`hmac::Mac::verify_slice`]);
//!   with `timestamp_header` configured, a request without that header is refused;
//! - with `timestamp_header` configured, a correctly signed request is accepted only while its
//!   timestamp is within [`TIMESTAMP_WINDOW`] of `now` (either way, bounds included), so a
//!   captured request cannot be replayed later; `now` is the caller's clock (the intake's
//!   [`crate::clock::Clock`]), never read here. A replay inside the window is the same event
//!   again, which the intake's dedup window recognises;
//! - without `signature_header`, `X-Grafana-Alerting-Signature` is read and, only when it is
//!   absent, `X-Grafana-Alert-Signature` (the name grafana/alerting's signer falls back to when
//!   the contact point's header field is left empty);
//! - `alerts` is an array of objects; the event name is `status` (`firing`/`resolved`), else
//!   derived from `state` (`alerting` → firing, `ok` → resolved), else from the alerts;
//! - the dedup key is built like Alertmanager's (`groupKey`, status, sorted alerts).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::alerts::{self, Status};
use super::request::{Inbound, Parsed, Rejection, describe, single_header};

/// The signature header Grafana's UI suggests and documents.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";
/// The header grafana/alerting's HMAC signer uses when the contact point leaves it empty.
pub const LEGACY_SIGNATURE_HEADER: &str = "X-Grafana-Alert-Signature";

/// How far a signed timestamp may be from the receiver's clock, into the past or the future
/// (clocks drift, and Grafana signs when it sends, not when the alert fired).
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(5 * 60);

pub(super) const DEFAULT_SIGNATURE_HEADER_LOWER: &str = "x-grafana-alerting-signature";
pub(super) const LEGACY_SIGNATURE_HEADER_LOWER: &str = "x-grafana-alert-signature";

pub(super) fn verify(
    secret: &[u8],
    signature_header: Option<&str>,
    timestamp_header: Option<&str>,
    inbound: &Inbound<'_>,
    now: jiff::Timestamp,
) -> Result<(), Rejection> {
    let (header, signature) = match signature_header {
        Some(name) => (name, single_header(inbound.headers, name)?),
        None => match single_header(inbound.headers, DEFAULT_SIGNATURE_HEADER)? {
            Some(sig) => (DEFAULT_SIGNATURE_HEADER, Some(sig)),
            None => (
                LEGACY_SIGNATURE_HEADER,
                single_header(inbound.headers, LEGACY_SIGNATURE_HEADER)?,
            ),
        },
    };
    let Some(signature) = signature else {
        let shown = signature_header.unwrap_or(DEFAULT_SIGNATURE_HEADER);
        return Err(Rejection::Unauthorized(format!(
            "missing {shown} header (is HMAC signing enabled on the Grafana contact point?)"
        )));
    };
    let hex_part = signature
        .strip_prefix("sha256=")
        .unwrap_or(signature)
        .trim();
    let tag = match hex::decode(hex_part) {
        Ok(tag) if tag.len() == 32 => tag,
        _ => {
            return Err(Rejection::Unauthorized(format!(
                "malformed {header} header: expected 64 hex digits"
            )));
        }
    };

    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Err(Rejection::Unauthorized("cannot check the signature".into()));
    };
    let mut signed_at = None;
    if let Some(ts_header) = timestamp_header {
        let Some(timestamp) = single_header(inbound.headers, ts_header)? else {
            return Err(Rejection::Unauthorized(format!(
                "missing {ts_header} header (the signature covers it)"
            )));
        };
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::Unauthorized(format!(
                "malformed {ts_header} header: expected Unix seconds"
            )));
        }
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        signed_at = Some((ts_header, timestamp));
    }
    mac.update(inbound.body);
    mac.verify_slice(&tag).map_err(|_| {
        Rejection::Unauthorized(format!(
            "{header} does not match the body (wrong secret, or a modified body)"
        ))
    })?;
    // Only a request that is correctly signed gets this far: the window is about replays of
    // genuine requests (and clock skew), and its refusal says how far off the timestamp is.
    match signed_at {
        Some((ts_header, timestamp)) => within_window(ts_header, timestamp, now),
        None => Ok(()),
    }
}

/// Whether `timestamp` (Unix seconds, ASCII digits) is within [`TIMESTAMP_WINDOW`] of `now`.
fn within_window(ts_header: &str, timestamp: &str, now: jiff::Timestamp) -> Result<(), Rejection> {
    let window = TIMESTAMP_WINDOW.as_secs() as i64;
    let accepted = format!(
        "signed requests are accepted within ±{window} s ({} min) of this server's clock",
        window / 60
    );
    // More digits than an i64 holds is further in the future than any window.
    let offset = timestamp
        .parse::<i64>()
        .ok()
        .map(|t| t.saturating_sub(now.as_second()));
    match offset {
        Some(offset) if (-window..=window).contains(&offset) => Ok(()),
        Some(offset) if offset < 0 => Err(Rejection::Unauthorized(format!(
            "{ts_header} is {} s in the past; {accepted} (a replayed request, or clocks out of sync)",
            offset.unsigned_abs()
        ))),
        Some(offset) => Err(Rejection::Unauthorized(format!(
            "{ts_header} is {offset} s in the future; {accepted} (clocks out of sync)"
        ))),
        None => Err(Rejection::Unauthorized(format!(
            "{ts_header} is too far in the future; {accepted}"
        ))),
    }
}

pub(super) fn parse(payload: &Map<String, Value>) -> Result<Parsed, Rejection> {
    let alerts = alerts::validate(payload)?;
    let status = match alerts::status_field(payload)? {
        Some(status) => status,
        None => match payload.get("state") {
            None | Some(Value::Null) => alerts::derived_status(alerts),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("alerting") => Status::Firing,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("ok") => Status::Resolved,
            Some(Value::String(_)) => alerts::derived_status(alerts),
            Some(other) => {
                return Err(Rejection::Malformed(format!(
                    "`state` must be a string such as \"alerting\" or \"ok\", got {}",
                    describe(other)
                )));
            }
        },
    };
    Ok(Parsed {
        name: status.as_str().to_owned(),
        ignored: None,
        dedup_key: Some(alerts::dedup_key(payload, status, alerts)),
    })
}

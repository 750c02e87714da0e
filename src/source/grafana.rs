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
//! - without `signature_header`, `X-Grafana-Alerting-Signature` is read and, only when it is
//!   absent, `X-Grafana-Alert-Signature` (the name grafana/alerting's signer falls back to when
//!   the contact point's header field is left empty);
//! - `alerts` is an array of objects; the event name is `status` (`firing`/`resolved`), else
//!   derived from `state` (`alerting` → firing, `ok` → resolved), else from the alerts;
//! - the dedup key is built like Alertmanager's (`groupKey`, status, sorted alerts).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::alerts::{self, Status};
use super::request::{Inbound, Parsed, Rejection, describe, single_header};

/// The signature header Grafana's UI suggests and documents.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";
/// The header grafana/alerting's HMAC signer uses when the contact point leaves it empty.
pub const LEGACY_SIGNATURE_HEADER: &str = "X-Grafana-Alert-Signature";

pub(super) const DEFAULT_SIGNATURE_HEADER_LOWER: &str = "x-grafana-alerting-signature";
pub(super) const LEGACY_SIGNATURE_HEADER_LOWER: &str = "x-grafana-alert-signature";

pub(super) fn verify(
    secret: &[u8],
    signature_header: Option<&str>,
    timestamp_header: Option<&str>,
    inbound: &Inbound<'_>,
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
    }
    mac.update(inbound.body);
    mac.verify_slice(&tag).map_err(|_| {
        Rejection::Unauthorized(format!(
            "{header} does not match the body (wrong secret, or a modified body)"
        ))
    })
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

//! GitHub repository, organization and app webhooks.
//!
//! Authentication: `secret` (the webhook's secret) checks `X-Hub-Signature-256:
//! sha256=<hex HMAC-SHA256(secret, raw body)>`; `auth` (bearer/basic) works too.
//!
//! Invariants:
//! - the signature is checked over the raw body bytes, so JSON and form-encoded deliveries
//!   (`payload=<urlencoded JSON>`) verify alike; the comparison is constant-time
//!   ([`hmac::Mac::verify_slice`]); the legacy SHA-1 `X-Hub-Signature` alone is not accepted;
//! - the event name is the `X-GitHub-Event` header (refused when missing), the action is the
//!   body's `action`;
//! - `ping` (sent when a hook is created) is parsed and verified like any event, but marked
//!   ignored, so it is answered without posting anything;
//! - the dedup key is `X-GitHub-Delivery`, which a redelivery keeps.

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::request::{Inbound, Parsed, Rejection, header_text, quote, single_header};

/// The header carrying the event name.
pub const EVENT_HEADER: &str = "X-GitHub-Event";
/// The header carrying the delivery id, kept on redelivery.
pub const DELIVERY_HEADER: &str = "X-GitHub-Delivery";
/// The header carrying `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

pub(super) fn verify(secret: &[u8], inbound: &Inbound<'_>) -> Result<(), Rejection> {
    let Some(signature) = single_header(inbound.headers, SIGNATURE_HEADER)? else {
        let reason = if inbound.headers.contains_key("x-hub-signature") {
            "missing X-Hub-Signature-256 header (only the legacy SHA-1 X-Hub-Signature was sent, \
             which is not accepted)"
        } else {
            "missing X-Hub-Signature-256 header (is the secret set on the GitHub webhook?)"
        };
        return Err(Rejection::Unauthorized(reason.into()));
    };
    let tag = signature
        .split_once('=')
        .filter(|(algorithm, _)| algorithm.trim().eq_ignore_ascii_case("sha256"))
        .and_then(|(_, hex_part)| hex::decode(hex_part.trim()).ok())
        .filter(|tag| tag.len() == 32);
    let Some(tag) = tag else {
        return Err(Rejection::Unauthorized(
            "malformed X-Hub-Signature-256 header: expected `sha256=` and 64 hex digits".into(),
        ));
    };
    let Ok(mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Err(Rejection::Unauthorized("cannot check the signature".into()));
    };
    mac.chain_update(inbound.body)
        .verify_slice(&tag)
        .map_err(|_| {
            Rejection::Unauthorized(
                "X-Hub-Signature-256 does not match the body (wrong secret, or a modified body)"
                    .into(),
            )
        })
}

pub(super) fn parse(
    payload: &Map<String, Value>,
    headers: &HeaderMap,
) -> Result<Parsed, Rejection> {
    let Some(value) = headers.get(EVENT_HEADER) else {
        return Err(Rejection::Malformed(
            "missing X-GitHub-Event header; GitHub always sends it".into(),
        ));
    };
    let Some(name) = value.to_str().ok().map(str::trim).filter(|n| !n.is_empty()) else {
        return Err(Rejection::Malformed(
            "X-GitHub-Event header is empty or not plain text".into(),
        ));
    };
    let ignored = (name == "ping").then(|| match payload.get("zen").and_then(Value::as_str) {
        Some(zen) => format!("GitHub ping (zen: {})", quote(zen)),
        None => "GitHub ping".to_owned(),
    });
    Ok(Parsed {
        name: name.to_owned(),
        ignored,
        dedup_key: header_text(headers, DELIVERY_HEADER).map(str::to_owned),
    })
}

//! Sources: the senders that may call in, how each proves who it is, and what its events look like.
//!
//! A request is verified over its raw bytes *before* anything parses it ([`Source::verify`]), then
//! parsed into an [`Event`] ([`Source::parse`]). Each kind is a module of its own that knows its
//! signature scheme, its event discriminator and the template context it offers; [`Facts`] are
//! the plain facts of any kind's event, for a message built without templates.
//!
//! Invariants:
//! - secrets are compared in constant time and never appear in a [`Rejection`], a log or an
//!   [`Event`] (authentication headers are stripped from [`Event::headers`]);
//! - a parse failure is a [`Rejection::Malformed`] with a reason, never a panic.

pub mod alertmanager;
mod alerts;
pub mod auth;
mod context;
mod event;
pub mod examples;
pub mod facts;
pub mod github;
pub mod gitlab;
pub mod grafana;
pub mod json;
mod kind;
mod request;

use std::collections::BTreeMap;

use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use auth::Auth;
pub use event::Event;
pub use facts::{AlertFacts, Facts};
pub use kind::SourceKind;
pub use request::{Inbound, Rejection};

use request::{contains, read_object};

/// A configured source, validated.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// The HTTP path it is served on (`/hooks/<name>` unless configured).
    pub path: String,
    /// Bearer or basic authentication, accepted for any kind.
    pub auth: Auth,
    /// The kind's own shared secret: GitHub's HMAC key, GitLab's `X-Gitlab-Token`, Grafana's
    /// HMAC key. `None` accepts requests without it.
    pub secret: Option<SecretString>,
    /// Grafana only: the header carrying the HMAC (default `X-Grafana-Alerting-Signature`).
    pub signature_header: Option<String>,
    /// Grafana only: the header carrying the Unix timestamp that prefixes the signed bytes, when
    /// the contact point is configured with one.
    pub timestamp_header: Option<String>,
}

impl Source {
    /// Checks that the request comes from who it claims, over the raw bytes, before parsing.
    ///
    /// Bearer/basic authentication (when configured, any kind) is checked first, then the kind's
    /// own `secret`: GitHub's `X-Hub-Signature-256`, GitLab's `X-Gitlab-Token`, Grafana's HMAC
    /// header. A source with nothing configured accepts every request. Every comparison is
    /// constant-time and no rejection message contains a presented or configured secret.
    ///
    /// `now` is the receiver's wall-clock time: a Grafana source with a `timestamp_header`
    /// accepts only timestamps within [`grafana::TIMESTAMP_WINDOW`] of it.
    pub fn verify(&self, inbound: &Inbound<'_>, now: jiff::Timestamp) -> Result<(), Rejection> {
        self.verify_headers(inbound.headers)?;
        self.verify_body(inbound, now)
    }

    /// Checks what a request proves in its headers alone, before its body is read: bearer or
    /// basic authentication, and GitLab's `X-Gitlab-Token`. A request that fails here is refused
    /// without reading (and buffering) a body of up to `body_limit`; [`Source::verify_body`]
    /// checks the rest once the body is read.
    pub fn verify_headers(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        self.auth.verify(headers)?;
        if let (SourceKind::Gitlab, Some(secret)) = (self.kind, &self.secret) {
            let inbound = Inbound {
                headers,
                query: "",
                body: &[],
            };
            gitlab::verify(secret.expose_secret().as_bytes(), &inbound)?;
        }
        Ok(())
    }

    /// What [`Source::verify_headers`] leaves to check, over the raw body: GitHub's and Grafana's
    /// signatures (Grafana's timestamp within its window of `now`).
    pub fn verify_body(
        &self,
        inbound: &Inbound<'_>,
        now: jiff::Timestamp,
    ) -> Result<(), Rejection> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let secret = secret.expose_secret().as_bytes();
        match self.kind {
            SourceKind::Github => github::verify(secret, inbound),
            // X-Gitlab-Token is a header: checked by `verify_headers`.
            SourceKind::Gitlab => Ok(()),
            SourceKind::Grafana => grafana::verify(
                secret,
                self.signature_header.as_deref(),
                self.timestamp_header.as_deref(),
                inbound,
                now,
            ),
            // The config loader refuses a `secret` on these kinds; should one get here anyway,
            // refuse everything rather than silently accept unsigned requests.
            SourceKind::Alertmanager | SourceKind::Json => Err(Rejection::Unauthorized(format!(
                "{} sources cannot check a `secret`; configure bearer or basic authentication",
                self.kind
            ))),
        }
    }

    /// Parses a verified request into an event.
    ///
    /// The body must be a JSON object (`application/json`, `*/*+json` or no content type; GitHub
    /// also sends `application/x-www-form-urlencoded` with the JSON in the `payload` field). Each
    /// kind then checks the shape it needs and names the event; see the kind's module.
    pub fn parse(&self, inbound: &Inbound<'_>) -> Result<Event, Rejection> {
        let payload = read_object(self.kind, inbound)?;
        let query = self.visible_query(inbound.query);
        let parsed = match self.kind {
            SourceKind::Alertmanager => alertmanager::parse(&payload)?,
            SourceKind::Grafana => grafana::parse(&payload)?,
            SourceKind::Github => github::parse(&payload, inbound.headers)?,
            SourceKind::Gitlab => gitlab::parse(&payload, inbound.headers)?,
            SourceKind::Json => json::parse(&query),
        };
        Ok(Event {
            source: self.name.clone(),
            kind: self.kind,
            name: parsed.name,
            ignored: parsed.ignored,
            payload: Value::Object(payload),
            headers: self.visible_headers(inbound.headers),
            query,
            dedup_key: parsed.dedup_key,
        })
    }

    /// The request headers templates may see: names lower-cased, values lossy UTF-8 (repeated
    /// headers joined with `, `), without authentication headers, signatures, cookies, or any
    /// header whose value contains one of this source's secrets.
    fn visible_headers(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        let secrets = self.secret_values();
        let signature_header = self
            .signature_header
            .as_deref()
            .map(str::to_ascii_lowercase);
        let mut visible: BTreeMap<String, String> = BTreeMap::new();
        let mut hidden: Vec<&str> = Vec::new();
        for (name, value) in headers {
            let name = name.as_str();
            if SENSITIVE_HEADERS.contains(&name) || signature_header.as_deref() == Some(name) {
                continue;
            }
            if secrets.iter().any(|s| contains(value.as_bytes(), s)) {
                hidden.push(name);
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            visible
                .entry(name.to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        // A repeated header with one secret-bearing value is dropped entirely.
        for name in hidden {
            visible.remove(name);
        }
        visible
    }

    /// The query parameters (first occurrence wins), without any whose value contains one of
    /// this source's secrets.
    fn visible_query(&self, query: &str) -> BTreeMap<String, String> {
        let secrets = self.secret_values();
        let mut params = BTreeMap::new();
        let mut hidden = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if secrets.iter().any(|s| contains(value.as_bytes(), s)) {
                hidden.push(key.into_owned());
                continue;
            }
            params
                .entry(key.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        for key in hidden {
            params.remove(&key);
        }
        params
    }

    /// Every non-empty secret configured on this source, for redaction.
    fn secret_values(&self) -> Vec<&[u8]> {
        let basic = self.auth.basic.as_ref().map(|b| &b.password);
        [self.secret.as_ref(), self.auth.bearer.as_ref(), basic]
            .into_iter()
            .flatten()
            .map(|s| s.expose_secret().as_bytes())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Header names (lower case) never copied into [`Event::headers`].
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-gitlab-token",
    "x-hub-signature",
    "x-hub-signature-256",
    grafana::DEFAULT_SIGNATURE_HEADER_LOWER,
    grafana::LEGACY_SIGNATURE_HEADER_LOWER,
    // GitLab's Standard-Webhooks signature (signing token).
    "webhook-signature",
];

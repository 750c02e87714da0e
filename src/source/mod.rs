//! Sources: the senders that may call in, how each proves who it is, and what its events look like.
//!
//! A request is verified over its raw bytes *before* anything parses it ([`Source::verify`]), then
//! parsed into an [`Event`] ([`Source::parse`]). Each kind is a module of its own that knows its
//! signature scheme, its event discriminator and the template context it offers.
//!
//! Invariants:
//! - secrets are compared in constant time and never appear in a [`Rejection`], a log or an
//!   [`Event`] (authentication headers are stripped from [`Event::headers`]);
//! - a parse failure is a [`Rejection::Malformed`] with a reason, never a panic.

pub mod alertmanager;
pub mod auth;
pub mod github;
pub mod gitlab;
pub mod grafana;
pub mod json;

use std::collections::BTreeMap;

use http::HeaderMap;
use secrecy::SecretString;
use serde::Deserialize;

pub use auth::Auth;

/// The kinds of sender dingrelay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Prometheus Alertmanager, webhook payload version 4.
    Alertmanager,
    /// Grafana unified alerting webhook contact point.
    Grafana,
    Github,
    Gitlab,
    /// Any JSON object.
    Json,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Alertmanager,
        SourceKind::Grafana,
        SourceKind::Github,
        SourceKind::Gitlab,
        SourceKind::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Grafana => "grafana",
            SourceKind::Github => "github",
            SourceKind::Gitlab => "gitlab",
            SourceKind::Json => "json",
        }
    }

    /// Whether events of this kind carry an alert list (`alerts`, `firing`, `resolved`), which
    /// is shortened with an "...and N more alerts" marker when a message would be too long.
    pub fn has_alerts(self) -> bool {
        matches!(self, SourceKind::Alertmanager | SourceKind::Grafana)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of an HTTP request a source looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?` (empty when there is none).
    pub query: &'a str,
    /// The body exactly as received: signatures are computed over these bytes.
    pub body: &'a [u8],
}

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

/// Why a request was refused. Each maps to one HTTP status; the message is safe to return to
/// the caller and to log (it never contains a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 401: missing or wrong authentication.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 415: a content type the source cannot read.
    #[error("unsupported content type: {0}")]
    UnsupportedMediaType(String),
    /// 400: the body is not what this kind of source sends.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// One incoming event, parsed.
#[derive(Debug, Clone)]
pub struct Event {
    /// The configured source name.
    pub source: String,
    pub kind: SourceKind,
    /// The event name: `X-GitHub-Event`, GitLab's `object_kind`, `firing`/`resolved` for alerts,
    /// the `event` query parameter for json sources (empty when absent).
    pub name: String,
    /// Set when the event is answered without matching rules (GitHub `ping`), with the reason.
    pub ignored: Option<String>,
    /// The parsed body (a JSON object).
    pub payload: serde_json::Value,
    /// Request headers, names lower-cased, authentication headers removed.
    pub headers: BTreeMap<String, String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// A key identifying this delivery, so a redelivery is not posted twice.
    pub dedup_key: Option<String>,
}

impl Source {
    /// Checks that the request comes from who it claims, over the raw bytes, before parsing.
    pub fn verify(&self, inbound: &Inbound<'_>) -> Result<(), Rejection> {
        let _ = inbound;
        Ok(())
    }

    /// Parses a verified request into an event.
    pub fn parse(&self, inbound: &Inbound<'_>) -> Result<Event, Rejection> {
        let _ = inbound;
        Err(Rejection::Malformed("not implemented".into()))
    }
}

impl Event {
    /// What templates see. For alert kinds, `alerts`, `firing` and `resolved` keep at most
    /// `alert_limit` alerts (all when `None`); the second value is how many were left out.
    pub fn context(&self, alert_limit: Option<usize>) -> (serde_json::Value, usize) {
        let _ = alert_limit;
        (self.payload.clone(), 0)
    }

    /// How many alerts the event carries, for alert kinds.
    pub fn alert_count(&self) -> Option<usize> {
        None
    }
}

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
mod alerts;
pub mod auth;
mod context;
pub mod examples;
pub mod github;
pub mod gitlab;
pub mod grafana;
pub mod json;

use std::collections::BTreeMap;

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

    /// The request header that names the event, for kinds that have one.
    pub fn event_header(self) -> Option<&'static str> {
        match self {
            SourceKind::Github => Some("x-github-event"),
            SourceKind::Gitlab => Some("x-gitlab-event"),
            _ => None,
        }
    }

    /// The content type a sender of this kind uses for `body` when none is given (commands that
    /// replay a payload from a file): GitHub's form encoding for a `payload=` body, else JSON.
    pub fn default_content_type(self, body: &[u8]) -> &'static str {
        if self == SourceKind::Github && body.starts_with(b"payload=") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
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
    ///
    /// Bearer/basic authentication (when configured, any kind) is checked first, then the kind's
    /// own `secret`: GitHub's `X-Hub-Signature-256`, GitLab's `X-Gitlab-Token`, Grafana's HMAC
    /// header. A source with nothing configured accepts every request. Every comparison is
    /// constant-time and no rejection message contains a presented or configured secret.
    pub fn verify(&self, inbound: &Inbound<'_>) -> Result<(), Rejection> {
        self.auth.verify(inbound.headers)?;
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let secret = secret.expose_secret().as_bytes();
        match self.kind {
            SourceKind::Github => github::verify(secret, inbound),
            SourceKind::Gitlab => gitlab::verify(secret, inbound),
            SourceKind::Grafana => grafana::verify(
                secret,
                self.signature_header.as_deref(),
                self.timestamp_header.as_deref(),
                inbound,
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

impl Event {
    /// [`Event::template_context`] as JSON (without `now`), for `check` and tests.
    pub fn context(&self, alert_limit: Option<usize>) -> (serde_json::Value, usize) {
        let (context, omitted) = self.template_context(alert_limit, None);
        (serde_json::to_value(&context).unwrap_or_default(), omitted)
    }

    /// How many alerts the event carries, for alert kinds.
    pub fn alert_count(&self) -> Option<usize> {
        self.kind
            .has_alerts()
            .then(|| alerts::list(&self.payload).map_or(0, <[Value]>::len))
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

/// What a kind module learned from a body, beyond the body itself.
struct Parsed {
    name: String,
    ignored: Option<String>,
    dedup_key: Option<String>,
}

/// How a body is encoded.
enum BodyFormat {
    Json,
    /// `application/x-www-form-urlencoded` with the JSON in the `payload` field (GitHub).
    Form,
}

/// Longest piece of a received value quoted back in a rejection.
const QUOTE_LIMIT: usize = 80;

/// Decides how to read the body from its `Content-Type`.
fn body_format(kind: SourceKind, headers: &HeaderMap) -> Result<BodyFormat, Rejection> {
    let accepted = if kind == SourceKind::Github {
        "application/json or application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    let Ok(value) = value.to_str() else {
        return Err(Rejection::UnsupportedMediaType(format!(
            "a Content-Type that is not plain text; this source accepts {accepted}"
        )));
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || essence == "application/json" {
        return Ok(BodyFormat::Json);
    }
    if let Some((kind_part, subtype)) = essence.split_once('/')
        && !kind_part.is_empty()
        && subtype.ends_with("+json")
    {
        return Ok(BodyFormat::Json);
    }
    if kind == SourceKind::Github && essence == "application/x-www-form-urlencoded" {
        return Ok(BodyFormat::Form);
    }
    Err(Rejection::UnsupportedMediaType(format!(
        "`{}`; this source accepts {accepted}",
        quote(value.trim())
    )))
}

/// Reads the body as a JSON object, according to its content type.
fn read_object(kind: SourceKind, inbound: &Inbound<'_>) -> Result<Map<String, Value>, Rejection> {
    match body_format(kind, inbound.headers)? {
        BodyFormat::Json => json_object(inbound.body, "body"),
        BodyFormat::Form => {
            let mut payload = None;
            for (key, value) in form_urlencoded::parse(inbound.body) {
                if key == "payload" {
                    if payload.is_some() {
                        return Err(Rejection::Malformed(
                            "form body has more than one `payload` field".into(),
                        ));
                    }
                    payload = Some(value);
                }
            }
            let Some(payload) = payload else {
                return Err(Rejection::Malformed(
                    "form body has no `payload` field (GitHub sends the JSON there)".into(),
                ));
            };
            json_object(payload.as_bytes(), "`payload` form field")
        }
    }
}

/// Parses `bytes` as a JSON object; `what` names them in the rejection.
fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::Malformed(format!(
            "{what} is empty; expected a JSON object"
        )));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Rejection::Malformed(format!(
            "{what} must be a JSON object, got {}",
            describe(&other)
        ))),
        Err(err) => Err(Rejection::Malformed(format!(
            "{what} is not valid JSON: {err}"
        ))),
    }
}

/// A short description of a JSON value for rejection messages ("the string \"3\"", "an array").
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {}", quote(&n.to_string())),
        Value::String(s) => format!("the string \"{}\"", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `s`, cut to [`QUOTE_LIMIT`] characters (with `...`) and with control characters escaped.
fn quote(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == QUOTE_LIMIT {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of a header that must appear at most once, as text. `Ok(None)` when absent.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::Unauthorized(format!(
            "more than one {name} header"
        )));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| Rejection::Unauthorized(format!("malformed {name} header: not plain text")))
}

/// A header's value as text, for event names and delivery ids (`None` when absent, empty or not
/// text).
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Constant-time equality that does not reveal the length of either side: both sides are hashed
/// first, then the digests are compared with [`ConstantTimeEq`].
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let a = Sha256::digest(a);
    let b = Sha256::digest(b);
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_str(value).expect("header"),
        );
        map
    }

    #[test]
    fn body_formats() {
        let json =
            |kind, ct: &str| matches!(body_format(kind, &content_type(ct)), Ok(BodyFormat::Json));
        assert!(json(SourceKind::Json, "application/json"));
        assert!(json(SourceKind::Json, " APPLICATION/JSON ; charset=utf-8"));
        assert!(json(SourceKind::Json, "application/problem+json"));
        assert!(json(SourceKind::Json, ""));
        assert!(!json(SourceKind::Json, "+json"));
        assert!(!json(SourceKind::Json, "text/json5"));
        assert!(matches!(
            body_format(
                SourceKind::Github,
                &content_type("application/x-www-form-urlencoded")
            ),
            Ok(BodyFormat::Form)
        ));
        match body_format(
            SourceKind::Gitlab,
            &content_type("application/x-www-form-urlencoded"),
        ) {
            Err(Rejection::UnsupportedMediaType(reason)) => {
                assert_eq!(
                    reason,
                    "`application/x-www-form-urlencoded`; this source accepts application/json"
                );
            }
            other => panic!("{:?}", other.is_ok()),
        }
        let mut odd = HeaderMap::new();
        odd.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_bytes(b"text/\xfftype").expect("obs-text is a valid value"),
        );
        assert!(matches!(
            body_format(SourceKind::Json, &odd),
            Err(Rejection::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn quotes_are_short_and_printable() {
        assert_eq!(quote("a\nb"), "a\\nb");
        let long = "x".repeat(200);
        assert_eq!(quote(&long).len(), QUOTE_LIMIT + 3);
        assert_eq!(describe(&Value::from(0)), "the number 0");
        assert_eq!(describe(&Value::from("3")), "the string \"3\"");
    }

    #[test]
    fn ct_eq_compares_contents() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn contains_finds_substrings() {
        assert!(contains(b"Bearer token", b"token"));
        assert!(!contains(b"tok", b"token"));
        assert!(!contains(b"anything", b""));
    }
}

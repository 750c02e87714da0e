//! A request as a source sees it ([`Inbound`]), why one is refused ([`Rejection`]), and the
//! helpers every kind reads bodies and headers with: content types, JSON objects, single-valued
//! headers, constant-time comparison, and short printable quotes of what was received.

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::kind::SourceKind;
use crate::text::escape_control;

/// The parts of an HTTP request a source looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?` (empty when there is none).
    pub query: &'a str,
    /// The body exactly as received: signatures are computed over these bytes.
    pub body: &'a [u8],
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

/// What a kind module learned from a body, beyond the body itself.
pub(super) struct Parsed {
    pub(super) name: String,
    pub(super) ignored: Option<String>,
    pub(super) dedup_key: Option<String>,
}

/// How a body is encoded.
pub(super) enum BodyFormat {
    Json,
    /// `application/x-www-form-urlencoded` with the JSON in the `payload` field (GitHub).
    Form,
}

/// Longest piece of a received value quoted back in a rejection.
const QUOTE_LIMIT: usize = 80;

/// Decides how to read the body from its `Content-Type`.
pub(super) fn body_format(kind: SourceKind, headers: &HeaderMap) -> Result<BodyFormat, Rejection> {
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
pub(super) fn read_object(
    kind: SourceKind,
    inbound: &Inbound<'_>,
) -> Result<Map<String, Value>, Rejection> {
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
pub(super) fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Rejection> {
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
pub(super) fn describe(value: &Value) -> String {
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
pub(super) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", escape_control(&s[..cut])),
        None => escape_control(s).into_owned(),
    }
}

/// The value of a header that must appear at most once, as text. `Ok(None)` when absent.
pub(super) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, Rejection> {
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
pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Constant-time equality that does not reveal the length of either side: both sides are hashed
/// first, then the digests are compared with [`ConstantTimeEq`].
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let a = Sha256::digest(a);
    let b = Sha256::digest(b);
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Whether `needle` occurs in `haystack`.
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
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

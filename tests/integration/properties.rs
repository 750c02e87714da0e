//! Property tests (fuzzing with proptest) for everything that reads untrusted input: the source
//! parsers and signature checks, the `rules.yaml` loader and `${VAR}` expansion, the DingTalk
//! message validator, and the template filters as a rule set renders arbitrary payloads.
//!
//! Each property runs a modest number of cases in a normal `cargo test` (256 for the cheap ones,
//! fewer for those that load a whole config). Run them long with `PROPTEST_CASES`, which sets the
//! case count of every property here, e.g.
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release --test integration properties::
//! ```
//!
//! Failures are not persisted to `proptest-regressions/`: a minimal failing input found by a long
//! run belongs in the regression tests at the end of this file.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine as _;
use dingrelay::config::Config;
use dingrelay::dingtalk::message::{
    ActionCard, BtnOrientation, Button, CardAction, FeedCard, FeedLink, Link, Markdown, Text,
};
use dingrelay::dingtalk::validate::{MAX_TITLE_BYTES, MSG_UUID_RESERVE, encoded_len};
use dingrelay::dingtalk::{At, Endpoint, MAX_BODY_BYTES, Message, MessageBody, Robot, prepare};
use dingrelay::source::auth::BasicAuth;
use dingrelay::source::{Auth, Inbound, Rejection, Source, SourceKind, examples};
use dingrelay::yaml::diagnostic;
use dingrelay::yaml::expand::{ExpandError, expand};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// What `prepare` lets an accepted message weigh, encoded.
const BUDGET: usize = MAX_BODY_BYTES - MSG_UUID_RESERVE;

/// `default_cases` cases, or `PROPTEST_CASES` when set; failures are not written to disk.
fn cases(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// =============================================================================================
// Shared strategies: strings and JSON

/// Strings that matter somewhere: statuses, times, event names, markup, expansions.
const INTERESTING: &[&str] = &[
    "",
    " ",
    "\t",
    "firing",
    "resolved",
    "FIRING",
    " Resolved ",
    "pending",
    "alerting",
    "ok",
    "4",
    "3",
    "1",
    "0001-01-01T00:00:00Z",
    "2026-11-24T04:48:00Z",
    "2026-11-24T04:48:00.123456789+08:00",
    "2015-04-20 14:31:42 UTC",
    "2015-04-20 14:31:42 +0200",
    "1732425600",
    "1732425600000",
    "-62135596800",
    "99999999999999999999999999999",
    "9999-12-31T23:59:59Z",
    "refs/heads/main",
    "refs/tags/v1.2.3",
    "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "push",
    "ping",
    "pull_request",
    "issues",
    "release",
    "workflow_run",
    "merge_request",
    "pipeline",
    "tag_push",
    "Push Hook",
    "opened",
    "closed",
    "published",
    "completed",
    "failure",
    "failed",
    "https://example.com/a?b=c",
    "dingtalk://dingtalkclient/page/link?url=x",
    "@13800001111",
    "告警",
    "alert",
    "磁盘告警 😀🚨",
    "# heading",
    "- item",
    "1. item",
    "**bold** _it_ `code` [l](u) <b>",
    "{{ x }}",
    "{% if %}",
    "${X}",
    "${X:-y}",
    "$$",
    "\u{0}",
    "\u{1b}[31m",
    "\u{202e}",
    "\u{feff}",
    "\r\n",
    "a\nb\n",
    "null",
    "true",
    "[]",
    "{}",
];

fn interesting() -> BoxedStrategy<String> {
    prop::sample::select(INTERESTING)
        .prop_map(str::to_owned)
        .boxed()
}

/// Short text of every kind: ASCII, any Unicode, control characters, interesting values.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 _.:/@#*-]{0,16}",
        2 => any::<String>(),
        1 => "[\\x00-\\x1f\\x7f\"\\\\]{0,6}",
        1 => "[一-龥😀-🙏é]{0,8}",
        3 => interesting(),
    ]
    .boxed()
}

/// A JSON object key: the fields senders use, or anything.
fn key() -> BoxedStrategy<String> {
    const KEYS: &[&str] = &[
        "version",
        "status",
        "state",
        "alerts",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "fingerprint",
        "groupKey",
        "orgId",
        "title",
        "text",
        "message",
        "url",
        "event",
        "action",
        "object_kind",
        "event_name",
        "zen",
        "payload",
        "ref",
        "commits",
        "repository",
        "sender",
        "alertname",
        "severity",
        "description",
        "summary",
        "now",
    ];
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            any::<f64>(),
            Just(1e300),
            Just(-0.0),
            Just(1.5e11),
            Just(1_732_425_600.5),
        ]
        // JSON has no NaN or infinity.
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-200_000i64..4_000_000_000_000).prop_map(Value::from),
        text().prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

fn json_object() -> BoxedStrategy<Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..8)
        .prop_map(|kv| kv.into_iter().collect())
        .boxed()
}

/// A field as a sender would set it (`typical`), missing, or of a random type.
fn field<S>(typical: S) -> BoxedStrategy<Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![
        6 => typical.prop_map(Some),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

fn string_value() -> BoxedStrategy<Value> {
    text().prop_map(Value::from).boxed()
}

fn labels() -> BoxedStrategy<Value> {
    prop::collection::vec((key(), text()), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k, Value::from(v))).collect()))
        .boxed()
}

fn object_of(fields: Vec<(&'static str, Option<Value>)>, extra: Map<String, Value>) -> Value {
    let mut map = extra;
    for (name, value) in fields {
        match value {
            Some(value) => {
                map.insert(name.to_owned(), value);
            }
            None => {
                map.remove(name);
            }
        }
    }
    Value::Object(map)
}

/// One Alertmanager or Grafana alert, with random values, types and missing fields.
fn alert() -> BoxedStrategy<Value> {
    (
        field(string_value()),
        field(labels()),
        field(labels()),
        field(string_value()),
        field(string_value()),
        field(prop_oneof![
            "[0-9a-f]{16}".prop_map(Value::from),
            string_value()
        ]),
        field(string_value()),
        prop::collection::vec((key(), json_leaf()), 0..2),
    )
        .prop_map(
            |(status, labels, annotations, starts, ends, fingerprint, url, extra)| {
                object_of(
                    vec![
                        ("status", status),
                        ("labels", labels),
                        ("annotations", annotations),
                        ("startsAt", starts),
                        ("endsAt", ends),
                        ("fingerprint", fingerprint),
                        ("generatorURL", url),
                    ],
                    extra.into_iter().collect(),
                )
            },
        )
        .boxed()
}

/// An alert group shaped like an Alertmanager (`grafana == false`) or Grafana payload.
fn alert_group(grafana: bool) -> BoxedStrategy<Value> {
    let version = if grafana { "1" } else { "4" };
    (
        field(prop_oneof![
            8 => Just(Value::from(version)),
            1 => Just(Value::from(" 4 ")),
            1 => Just(Value::from(4)),
            1 => string_value(),
        ]),
        field(string_value()),
        field(string_value()),
        field(labels()),
        field(labels()),
        field(labels()),
        field(string_value()),
        prop_oneof![
            8 => prop::collection::vec(alert(), 0..24).prop_map(|a| Some(Value::Array(a))),
            1 => Just(None),
            1 => json_value().prop_map(Some),
        ],
        field(string_value()),
        field(any::<i32>().prop_map(Value::from)),
        prop::collection::vec((key(), json_leaf()), 0..2),
    )
        .prop_map(
            move |(
                version,
                status,
                group_key,
                group_labels,
                common_labels,
                common_annotations,
                receiver,
                alerts,
                state,
                org,
                extra,
            )| {
                let mut fields = vec![
                    ("version", version),
                    ("status", status),
                    ("groupKey", group_key),
                    ("groupLabels", group_labels),
                    ("commonLabels", common_labels),
                    ("commonAnnotations", common_annotations),
                    ("receiver", receiver),
                    ("alerts", alerts),
                ];
                if grafana {
                    fields.push(("state", state));
                    fields.push(("orgId", org));
                }
                object_of(fields, extra.into_iter().collect())
            },
        )
        .boxed()
}

/// One change to a JSON document, at the `n`th node (pre-order, modulo the node count).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Delete(usize),
    Insert(usize, String, Value),
    /// Grows an array to this many elements by repeating it (more alerts, commits, ...).
    Repeat(usize, usize),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        2 => any::<usize>().prop_map(Mutation::Delete),
        1 => (any::<usize>(), key(), json_value()).prop_map(|(n, k, v)| Mutation::Insert(n, k, v)),
        1 => (any::<usize>(), 0usize..80).prop_map(|(n, len)| Mutation::Repeat(n, len)),
    ]
    .boxed()
}

fn pointers(value: &Value, prefix: &str, out: &mut Vec<String>) {
    out.push(prefix.to_owned());
    match value {
        Value::Object(map) => {
            for (k, child) in map {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                pointers(child, &format!("{prefix}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, &format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, mutation: &Mutation) {
    let mut all = Vec::new();
    pointers(doc, "", &mut all);
    let at = |n: usize| all[n % all.len()].clone();
    match mutation {
        Mutation::Replace(n, value) => {
            let pointer = at(*n);
            if pointer.is_empty() {
                return; // keep the document an object
            }
            if let Some(node) = doc.pointer_mut(&pointer) {
                *node = value.clone();
            }
        }
        Mutation::Delete(n) => {
            let pointer = at(*n);
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.shift_remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Mutation::Insert(n, k, value) => match doc.pointer_mut(&at(*n)) {
            Some(Value::Object(map)) => {
                map.insert(k.clone(), value.clone());
            }
            Some(Value::Array(items)) => items.push(value.clone()),
            _ => {}
        },
        Mutation::Repeat(n, len) => {
            if let Some(Value::Array(items)) = doc.pointer_mut(&at(*n))
                && !items.is_empty()
            {
                let grown: Vec<Value> = items.iter().cycle().take(*len).cloned().collect();
                *items = grown;
            }
        }
    }
}

/// A built-in example body of `kind`, with a few random changes.
fn mutated_example(kind: SourceKind) -> BoxedStrategy<(usize, Value)> {
    let count = examples::for_kind(kind).len();
    (0..count, prop::collection::vec(mutation(), 0..6))
        .prop_map(move |(i, mutations)| {
            let mut doc: Value =
                serde_json::from_str(examples::for_kind(kind)[i].body).expect("examples are JSON");
            for m in &mutations {
                apply(&mut doc, m);
            }
            (i, doc)
        })
        .boxed()
}

/// A JSON object shaped like what `kind` sends, with random values, types and missing fields.
fn shaped_payload(kind: SourceKind) -> BoxedStrategy<Value> {
    let examples = mutated_example(kind).prop_map(|(_, doc)| doc);
    match kind {
        SourceKind::Alertmanager => prop_oneof![alert_group(false), examples].boxed(),
        SourceKind::Grafana => prop_oneof![alert_group(true), examples].boxed(),
        _ => prop_oneof![
            3 => examples,
            1 => json_object().prop_map(Value::Object),
        ]
        .boxed(),
    }
}

// =============================================================================================
// 1. Sources: verify and parse

const KINDS: [SourceKind; 5] = SourceKind::ALL;

fn kind() -> BoxedStrategy<SourceKind> {
    prop::sample::select(&KINDS[..]).boxed()
}

fn header_names() -> BoxedStrategy<HeaderName> {
    const NAMES: &[&str] = &[
        "content-type",
        "authorization",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-github-event",
        "x-github-delivery",
        "x-gitlab-token",
        "x-gitlab-event",
        "idempotency-key",
        "x-grafana-alerting-signature",
        "x-grafana-alert-signature",
        "x-grafana-alerting-timestamp",
        "x-signature",
        "x-timestamp",
        "cookie",
        "webhook-signature",
        "user-agent",
    ];
    prop_oneof![
        6 => prop::sample::select(NAMES).prop_map(HeaderName::from_static),
        1 => "[a-z0-9-]{1,24}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).expect("token")),
    ]
    .boxed()
}

/// Any bytes a header value may hold (visible ASCII, space, tab, obs-text).
fn header_bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
        .prop_map(|bytes| {
            bytes
                .into_iter()
                .filter(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
                .collect()
        })
        .boxed()
}

/// Header values: content types, credentials and signatures, well-formed or not, and garbage.
fn header_value() -> BoxedStrategy<HeaderValue> {
    const VALUES: &[&str] = &[
        "application/json",
        "APPLICATION/JSON ; charset=utf-8",
        "application/x-www-form-urlencoded",
        "application/vnd.github+json",
        "+json",
        "/+json",
        "text/plain",
        "multipart/form-data; boundary=x",
        ";",
        "Bearer",
        "Bearer ",
        "bearer\ttoken",
        "Basic",
        "Basic !!!",
        "Basic Og==",
        "Basic YTpi",
        "Basic OmE6Yjo=",
        "token",
        "sha256=",
        "sha256",
        "=",
        "sha1=0123",
        "SHA256 = 00",
        "1732425600",
        "-1",
        "push",
        "Push Hook",
        " Hook",
        "ping",
    ];
    prop_oneof![
        3 => prop::sample::select(VALUES).prop_map(HeaderValue::from_static),
        1 => prop::collection::vec(any::<u8>(), 32).prop_map(|tag| {
            HeaderValue::from_str(&format!("sha256={}", hex::encode(tag))).expect("hex")
        }),
        1 => prop::collection::vec(any::<u8>(), 0..24).prop_map(|raw| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
            HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64")
        }),
        3 => header_bytes().prop_map(|b| HeaderValue::from_bytes(&b).expect("filtered")),
    ]
    .boxed()
}

fn content_type() -> BoxedStrategy<Option<HeaderValue>> {
    prop_oneof![
        2 => Just(None),
        4 => Just(Some(HeaderValue::from_static("application/json"))),
        1 => Just(Some(HeaderValue::from_static("application/x-www-form-urlencoded"))),
        1 => header_value().prop_map(Some),
    ]
    .boxed()
}

fn event_header() -> BoxedStrategy<Option<(HeaderName, HeaderValue)>> {
    prop_oneof![
        1 => Just(None),
        2 => (
            prop::sample::select(&["x-github-event", "x-gitlab-event"][..]),
            prop_oneof![
                interesting().prop_map(|v| {
                    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("push"))
                }),
                header_value(),
            ],
        )
            .prop_map(|(n, v)| Some((HeaderName::from_static(n), v))),
    ]
    .boxed()
}

fn headers() -> BoxedStrategy<HeaderMap> {
    (
        content_type(),
        event_header(),
        prop::collection::vec((header_names(), header_value()), 0..6),
    )
        .prop_map(|(content_type, event, pairs)| {
            let mut map = HeaderMap::new();
            if let Some(ct) = content_type {
                map.append(http::header::CONTENT_TYPE, ct);
            }
            if let Some((name, value)) = event {
                map.append(name, value);
            }
            for (name, value) in pairs {
                map.append(name, value);
            }
            map
        })
        .boxed()
}

fn query() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z=&%0-9A-F+;]{0,40}",
        any::<String>(),
        (text(), text()).prop_map(|(event, other)| {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("event", &event)
                .append_pair("token", &other)
                .append_pair("event", "second")
                .finish()
        }),
    ]
    .boxed()
}

/// A credential or secret: printable ASCII, sometimes empty or padded.
fn secret_text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[!-~]{1,32}",
        1 => "[ -~]{0,8}",
        1 => text(),
    ]
    .boxed()
}

fn source_of(kind: SourceKind) -> BoxedStrategy<Source> {
    let auth = prop_oneof![
        3 => Just(Auth::default()),
        1 => secret_text().prop_map(|t| Auth { bearer: Some(SecretString::from(t)), basic: None }),
        1 => ("[^:]{0,12}", secret_text()).prop_map(|(username, password)| Auth {
            bearer: None,
            basic: Some(BasicAuth { username, password: SecretString::from(password) }),
        }),
        1 => (secret_text(), "[a-z]{1,8}", secret_text()).prop_map(|(t, username, password)| Auth {
            bearer: Some(SecretString::from(t)),
            basic: Some(BasicAuth { username, password: SecretString::from(password) }),
        }),
    ];
    let header_name = prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(
            &["X-Signature", "x-grafana-alerting-signature", "X-Grafana-Alert-Signature", "bad name", ""][..],
        )
        .prop_map(|s| Some(s.to_owned())),
    ];
    let timestamp = prop_oneof![
        3 => Just(None),
        1 => prop::sample::select(&["X-Grafana-Alerting-Timestamp", "x-timestamp", "bad name"][..])
            .prop_map(|s| Some(s.to_owned())),
    ];
    (
        auth,
        prop::option::weighted(0.5, secret_text()),
        header_name,
        timestamp,
    )
        .prop_map(
            move |(auth, secret, signature_header, timestamp_header)| Source {
                name: format!("fuzz-{kind}"),
                kind,
                path: format!("/hooks/fuzz-{kind}"),
                auth,
                secret: secret.map(SecretString::from),
                signature_header,
                timestamp_header,
            },
        )
        .boxed()
}

/// Byte-level damage to a body: flips, truncations, insertions.
fn damage(mut body: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        if body.is_empty() {
            body.push(byte);
            continue;
        }
        let at = at % body.len();
        match op % 3 {
            0 => body[at] ^= byte.max(1),
            1 => body.truncate(at),
            _ => body.insert(at, byte),
        }
    }
    body
}

fn form_encode(payload: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &text)
        .finish()
        .into_bytes()
}

fn body_for(kind: SourceKind) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => "[ \\[\\]{}\":,0-9a-z.\\\\-]{0,64}".prop_map(String::into_bytes),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
        6 => shaped_payload(kind).prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
        2 => shaped_payload(kind)
            .prop_map(|v| form_encode(&serde_json::to_vec(&v).expect("serializes"))),
        2 => (
            shaped_payload(kind),
            prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)
        )
            .prop_map(|(v, edits)| damage(serde_json::to_vec(&v).expect("serializes"), &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
            let mut body = b"\xEF\xBB\xBF".to_vec();
            body.extend(b"payload=");
            body.extend(b);
            body
        }),
    ]
    .boxed()
}

/// An arbitrary request to an arbitrary source.
fn request() -> BoxedStrategy<(Source, HeaderMap, String, Vec<u8>)> {
    kind()
        .prop_flat_map(|kind| (source_of(kind), headers(), query(), body_for(kind)))
        .boxed()
}

fn secrets_of(source: &Source) -> Vec<String> {
    use secrecy::ExposeSecret;
    let basic = source.auth.basic.as_ref().map(|b| &b.password);
    [source.secret.as_ref(), source.auth.bearer.as_ref(), basic]
        .into_iter()
        .flatten()
        .map(|s| s.expose_secret().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-gitlab-token",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-grafana-alerting-signature",
    "x-grafana-alert-signature",
    "webhook-signature",
];

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything an [`Event`](dingrelay::source::Event) promises, for an accepted request.
fn check_event(source: &Source, headers: &HeaderMap, query: &str, body: &[u8]) {
    let inbound = Inbound {
        headers,
        query,
        body,
    };
    let Ok(event) = source.parse(&inbound) else {
        return;
    };
    assert_eq!(event.kind, source.kind);
    assert_eq!(event.source, source.name);
    assert!(event.payload.is_object());

    // No authentication header, and no header or query value holding a secret, is visible.
    let secrets = secrets_of(source);
    for name in event.headers.keys() {
        assert!(!SENSITIVE.contains(&name.as_str()), "{name} is visible");
        assert_eq!(name, &name.to_ascii_lowercase());
    }
    for (name, value) in headers {
        // Compared as bytes, like the source does: an obs-text byte is not the secret U+FFFD.
        if secrets
            .iter()
            .any(|s| contains_bytes(value.as_bytes(), s.as_bytes()))
        {
            assert!(
                !event.headers.contains_key(name.as_str()),
                "header {name} carries a secret and is visible"
            );
        }
    }
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if secrets.iter().any(|s| value.contains(s.as_str())) {
            assert!(
                !event.query.contains_key(key.as_ref()),
                "query parameter {key} carries a secret and is visible"
            );
        }
    }

    match source.kind {
        SourceKind::Alertmanager | SourceKind::Grafana => {
            assert!(
                event.name == "firing" || event.name == "resolved",
                "{}",
                event.name
            );
            let key = event.dedup_key.as_deref().expect("alert groups have a key");
            assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(event.ignored.is_none());
        }
        SourceKind::Github => {
            let header = headers
                .get("x-github-event")
                .and_then(|v| v.to_str().ok())
                .expect("the event header is required");
            assert_eq!(event.name, header.trim());
            assert_eq!(event.ignored.is_some(), event.name == "ping");
        }
        SourceKind::Gitlab => assert!(!event.name.is_empty()),
        SourceKind::Json => {
            assert_eq!(
                event.name,
                event.query.get("event").cloned().unwrap_or_default()
            );
            assert!(event.dedup_key.is_none());
        }
    }
    check_context(&event);
}

/// Whether the refusal of `inbound` by a copy of `source` whose secrets are all replaced still
/// contains `text`: then `text` is in the reason by coincidence (a secret that is also a word of
/// the fixed message or a configured header name, such as `signature`), not quoted from the
/// secret. Found by a long run: a Grafana secret drawn from the header-name vocabulary.
fn quoted_anyway(source: &Source, inbound: &Inbound<'_>, text: &str) -> bool {
    let other = || SecretString::from("\u{1}replaced\u{1}");
    let mut copy = source.clone();
    copy.secret = copy.secret.as_ref().map(|_| other());
    copy.auth.bearer = copy.auth.bearer.as_ref().map(|_| other());
    if let Some(basic) = &mut copy.auth.basic {
        basic.password = other();
    }
    match copy.verify(inbound, now()) {
        Err(Rejection::Unauthorized(reason)) => reason.contains(text),
        _ => false,
    }
}

/// The template context keeps its promises for any alert limit.
fn check_context(event: &dingrelay::source::Event) {
    let total = event.alert_count();
    for limit in [None, Some(0), Some(1), Some(3), Some(50)] {
        let (ctx, omitted) = event.context(limit);
        let ctx = ctx.as_object().expect("the context is an object");
        for reserved in ["event", "source", "headers", "query", "payload"] {
            assert!(ctx.contains_key(reserved), "{reserved}");
        }
        assert_eq!(ctx["payload"], event.payload);
        let Some(total) = total else {
            assert_eq!(omitted, 0);
            continue;
        };
        let len = |name: &str| ctx[name].as_array().map_or(usize::MAX, Vec::len);
        let shown = len("alerts");
        assert_eq!(len("firing") + len("resolved"), shown);
        assert!(shown <= limit.unwrap_or(usize::MAX));
        assert_eq!(omitted, total - shown);
        assert_eq!(ctx["omitted_alerts"], json!(omitted));
        for alert in ctx["alerts"].as_array().into_iter().flatten() {
            let status = alert["status"].as_str();
            assert!(matches!(status, Some("firing" | "resolved")), "{alert}");
            assert!(!alert["labels"].is_null() && !alert["annotations"].is_null());
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// verify and parse never panic, whatever the request; a refusal of verify is always a 401
    /// that does not quote a secret; an accepted request keeps every promise of `Event`.
    #[test]
    fn any_request_is_verified_and_parsed_without_panicking(
        (source, headers, query, body) in request()
    ) {
        let inbound = Inbound { headers: &headers, query: &query, body: &body };
        if let Err(rejection) = source.verify(&inbound, now()) {
            let Rejection::Unauthorized(reason) = &rejection else {
                panic!("verify refused with {rejection:?}");
            };
            for secret in secrets_of(&source).iter().filter(|s| s.len() >= 6) {
                prop_assert!(
                    !reason.contains(secret.as_str()) || quoted_anyway(&source, &inbound, secret),
                    "{reason}"
                );
            }
        }
        match source.parse(&inbound) {
            Ok(_) => check_event(&source, &headers, &query, &body),
            Err(Rejection::Unauthorized(reason)) => {
                prop_assert!(false, "parse answered 401: {reason}");
            }
            Err(_) => {}
        }
    }

    /// Payloads shaped like each sender's, sent the way the sender sends them.
    #[test]
    fn shaped_payloads_parse_or_are_refused_with_a_reason(
        kind in kind(),
        doc in kind().prop_flat_map(shaped_payload),
        event in prop::option::of(interesting()),
        form in any::<bool>(),
        query in query(),
    ) {
        // Any kind's shape, sent to any kind's source.
        let source = Source {
            name: "s".into(),
            kind,
            path: "/hooks/s".into(),
            auth: Auth::default(),
            secret: None,
            signature_header: None,
            timestamp_header: None,
        };
        let json = serde_json::to_vec(&doc).expect("serializes");
        let mut headers = HeaderMap::new();
        let body = if form && kind == SourceKind::Github {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            form_encode(&json)
        } else {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            json.clone()
        };
        if let (Some(header), Some(event)) = (kind.event_header(), &event)
            && let Ok(value) = HeaderValue::from_str(event)
        {
            headers.insert(header, value);
        }
        let inbound = Inbound { headers: &headers, query: &query, body: &body };
        prop_assert!(source.verify(&inbound, now()).is_ok());
        match source.parse(&inbound) {
            Ok(parsed) => {
                let read_back: Value = serde_json::from_slice(&json).expect("reads back");
                prop_assert_eq!(&parsed.payload, &read_back);
                check_event(&source, &headers, &query, &body);
                if form && kind == SourceKind::Github {
                    // The same object as JSON is the same event.
                    let mut json_headers = headers.clone();
                    json_headers.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    let as_json = source
                        .parse(&Inbound { headers: &json_headers, query: &query, body: &json })
                        .expect("the JSON form parses too");
                    prop_assert_eq!(as_json.payload, parsed.payload);
                    prop_assert_eq!(as_json.name, parsed.name);
                }
            }
            Err(Rejection::Malformed(reason)) => prop_assert!(!reason.is_empty()),
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    /// The dedup key of an alert group does not depend on the order of its alerts.
    #[test]
    fn alert_dedup_key_ignores_alert_order(
        grafana in any::<bool>(),
        (group, shuffled) in alert_group(false).prop_flat_map(|group| {
            let alerts = group
                .get("alerts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            (Just(group), Just(alerts).prop_shuffle())
        }),
    ) {
        let kind = if grafana { SourceKind::Grafana } else { SourceKind::Alertmanager };
        let source = Source {
            name: "s".into(),
            kind,
            path: "/hooks/s".into(),
            auth: Auth::default(),
            secret: None,
            signature_header: None,
            timestamp_header: None,
        };
        let mut other = group.clone();
        if let Some(alerts) = other.get_mut("alerts").filter(|a| a.is_array()) {
            *alerts = Value::Array(shuffled);
        }
        let headers = HeaderMap::new();
        let parse = |doc: &Value| {
            let body = serde_json::to_vec(doc).expect("serializes");
            source.parse(&Inbound { headers: &headers, query: "", body: &body })
        };
        match (parse(&group), parse(&other)) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.dedup_key, b.dedup_key);
                prop_assert_eq!(a.name, b.name);
            }
            (Err(a), Err(b)) => prop_assert_eq!(
                std::mem::discriminant(&a),
                std::mem::discriminant(&b)
            ),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a.map(|e| e.name), b.map(|e| e.name)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. Signatures: a correct one always passes, one changed byte always fails

const EMPTY_OBJECT: &[u8] = b"{}";

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = at % out.len();
    out[at] ^= mask.max(1);
    out
}

/// Replaces the hex digit at `at` by another hex digit.
fn flip_hex(hex: &str, at: usize) -> String {
    let mut chars: Vec<char> = hex.chars().collect();
    let at = at % chars.len();
    chars[at] = if chars[at] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

fn signed_source(kind: SourceKind, secret: &str) -> Source {
    Source {
        name: "signed".into(),
        kind,
        path: "/hooks/signed".into(),
        auth: Auth::default(),
        secret: Some(SecretString::from(secret.to_owned())),
        signature_header: None,
        timestamp_header: None,
    }
}

fn verify_with(source: &Source, headers: &[(&str, String)], body: &[u8]) -> Result<(), Rejection> {
    verify_at(source, headers, body, now())
}

fn verify_at(
    source: &Source,
    headers: &[(&str, String)],
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<(), Rejection> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    source.verify(
        &Inbound {
            headers: &map,
            query: "",
            body,
        },
        now,
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn github_signature_passes_and_any_change_fails(
        secret in any::<String>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        upper in any::<bool>(),
        at in any::<usize>(),
        mask in any::<u8>(),
    ) {
        let source = signed_source(SourceKind::Github, &secret);
        let mut tag = hmac_hex(secret.as_bytes(), &[&body]);
        if upper {
            tag = tag.to_ascii_uppercase();
        }
        let header = |tag: &str| vec![("X-Hub-Signature-256", format!("sha256={tag}"))];
        prop_assert_eq!(verify_with(&source, &header(&tag), &body), Ok(()));
        prop_assert!(verify_with(&source, &header(&flip_hex(&tag, at)), &body).is_err());
        if !body.is_empty() {
            prop_assert!(verify_with(&source, &header(&tag), &flip(&body, at, mask)).is_err());
        }
        let mut longer = body.clone();
        longer.push(mask);
        prop_assert!(verify_with(&source, &header(&tag), &longer).is_err());
        let other = signed_source(SourceKind::Github, &format!("{secret}x"));
        prop_assert!(verify_with(&other, &header(&tag), &body).is_err());
    }

    #[test]
    fn grafana_signature_passes_and_any_change_fails(
        secret in any::<String>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        header in prop::sample::select(&[
            None,
            Some("X-Grafana-Alerting-Signature"),
            Some("X-Grafana-Alert-Signature"),
            Some("X-Signature"),
        ][..]),
        timestamp in prop::option::of(0u64..10_000_000_000),
        skew in -300i64..=300,
        prefixed in any::<bool>(),
        at in any::<usize>(),
        mask in any::<u8>(),
    ) {
        let mut source = signed_source(SourceKind::Grafana, &secret);
        source.signature_header = header.filter(|h| h.starts_with("X-Sig")).map(str::to_owned);
        source.timestamp_header = timestamp.map(|_| "X-Grafana-Alerting-Timestamp".to_owned());
        let sent_header = header.unwrap_or("X-Grafana-Alerting-Signature");
        let ts = timestamp.map(|t| t.to_string());
        let tag = match &ts {
            Some(ts) => hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b":", &body]),
            None => hmac_hex(secret.as_bytes(), &[&body]),
        };
        let headers = |tag: &str, ts: Option<&str>| {
            let value = if prefixed { format!("sha256={tag}") } else { tag.to_owned() };
            let mut h = vec![(sent_header, value)];
            if let Some(ts) = ts {
                h.push(("X-Grafana-Alerting-Timestamp", ts.to_owned()));
            }
            h
        };
        // The receiver's clock, within the window of the signed timestamp.
        let now = jiff::Timestamp::from_second(timestamp.unwrap_or(1_700_000_000) as i64 + skew)
            .expect("a valid timestamp");
        let check = |headers: &[(&str, String)], body: &[u8]| verify_at(&source, headers, body, now);
        prop_assert_eq!(check(&headers(&tag, ts.as_deref()), &body), Ok(()));
        prop_assert!(check(&headers(&flip_hex(&tag, at), ts.as_deref()), &body).is_err());
        if !body.is_empty() {
            prop_assert!(check(&headers(&tag, ts.as_deref()), &flip(&body, at, mask)).is_err());
        }
        if let Some(ts) = &ts {
            let changed = flip_hex(ts, at); // a digit replaced by another digit
            prop_assert!(check(&headers(&tag, Some(&changed)), &body).is_err());
            prop_assert!(check(&headers(&tag, None), &body).is_err());
        }
    }

    /// A correctly signed Grafana timestamp passes exactly when it is within ±300 s of the
    /// receiver's clock, whichever side it is on.
    #[test]
    fn grafana_timestamp_passes_only_within_the_window(
        now in 0i64..10_000_000_000,
        offset in prop_oneof![-400i64..=400, -1_000_000_000i64..=1_000_000_000],
    ) {
        let signed = (now + offset).max(0);
        let mut source = signed_source(SourceKind::Grafana, "secret");
        source.timestamp_header = Some("X-Grafana-Alerting-Timestamp".to_owned());
        let ts = signed.to_string();
        let tag = hmac_hex(b"secret", &[ts.as_bytes(), b":", b"{}"]);
        let headers = vec![
            ("X-Grafana-Alerting-Signature", tag),
            ("X-Grafana-Alerting-Timestamp", ts),
        ];
        let clock = jiff::Timestamp::from_second(now).expect("a valid timestamp");
        let verdict = verify_at(&source, &headers, b"{}", clock);
        if (signed - now).abs() <= 300 {
            prop_assert_eq!(verdict, Ok(()));
        } else {
            let Err(Rejection::Unauthorized(reason)) = verdict else {
                panic!("{verdict:?}");
            };
            prop_assert!(reason.contains("±300 s"), "{}", reason);
        }
    }

    #[test]
    fn gitlab_token_passes_and_any_change_fails(
        token in "[!-~]([ -~]{0,40}[!-~])?",
        at in any::<usize>(),
        replacement in 0x21u8..0x7f,
    ) {
        let source = signed_source(SourceKind::Gitlab, &token);
        let header = |t: &str| vec![("X-Gitlab-Token", t.to_owned())];
        prop_assert_eq!(verify_with(&source, &header(&token), EMPTY_OBJECT), Ok(()));
        let mut changed = token.clone().into_bytes();
        let i = at % changed.len();
        changed[i] = match (changed[i] == replacement, replacement == b'!') {
            (false, _) => replacement,
            (true, false) => b'!',
            (true, true) => b'"',
        };
        let changed = String::from_utf8(changed).expect("ASCII");
        if changed.trim() != token {
            prop_assert!(verify_with(&source, &header(&changed), EMPTY_OBJECT).is_err());
        }
        let longer = format!("{token}x");
        prop_assert!(verify_with(&source, &header(&longer), EMPTY_OBJECT).is_err());
    }

    #[test]
    fn bearer_and_basic_pass_and_any_change_fails(
        token in "[!-~]{1,40}",
        username in "[!-9;-~]{0,12}",
        password in "[ -~]{0,24}",
        at in any::<usize>(),
        lower in any::<bool>(),
    ) {
        let source = Source {
            auth: Auth {
                bearer: Some(SecretString::from(token.clone())),
                basic: Some(BasicAuth {
                    username: username.clone(),
                    password: SecretString::from(password.clone()),
                }),
            },
            secret: None,
            ..signed_source(SourceKind::Json, "unused")
        };
        let (bearer, basic) = if lower { ("bearer", "basic") } else { ("Bearer", "Basic") };
        let auth = |value: String| vec![("Authorization", value)];
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let right = auth(format!("{bearer} {token}"));
        prop_assert_eq!(verify_with(&source, &right, b""), Ok(()));
        let wrong = auth(format!("{bearer} {}", flip_ascii(&token, at)));
        prop_assert!(verify_with(&source, &wrong, b"").is_err());
        let pair = format!("{username}:{password}");
        let right = auth(format!("{basic} {}", b64(&pair)));
        prop_assert_eq!(verify_with(&source, &right, b""), Ok(()));
        let wrong = auth(format!("{basic} {}", b64(&flip_ascii(&pair, at))));
        prop_assert!(verify_with(&source, &wrong, b"").is_err());
        // Two Authorization headers are refused even when one is right.
        let twice = vec![
            ("Authorization", format!("{bearer} {token}")),
            ("Authorization", format!("{bearer} {token}")),
        ];
        prop_assert!(verify_with(&source, &twice, b"").is_err());
    }
}

/// `s` with the printable ASCII char at `at` replaced by another printable one (never `:`, so
/// a `user:password` pair keeps its split).
fn flip_ascii(s: &str, at: usize) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let i = at % bytes.len();
    if bytes[i] == b':' {
        // Change a neighbour instead, or add a byte.
        if bytes.len() > 1 {
            let j = if i == 0 { 1 } else { i - 1 };
            bytes[j] = if bytes[j] == b'A' { b'B' } else { b'A' };
        } else {
            bytes.push(b'A');
        }
    } else {
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).expect("ASCII")
}

// =============================================================================================
// 2. The rules.yaml loader and ${VAR} expansion

const SHIPPED_RULES: &str = include_str!("../../rules.yaml");

/// Loads `text` as `rules.yaml`; checks that every error is located and prefixed.
fn load(text: &str) -> Option<Config> {
    match Config::parse("rules.yaml", text, Path::new("."), &|_| None) {
        Ok(config) => Some(config),
        Err(error) => {
            assert!(
                !error.diagnostics.is_empty(),
                "an error without diagnostics"
            );
            assert!(
                error.rendered.starts_with("rules.yaml:"),
                "{:?}",
                error.rendered
            );
            assert_eq!(error.rendered, error.to_string());
            for d in &error.diagnostics {
                let one = diagnostic::render("rules.yaml", text, std::slice::from_ref(d));
                assert!(one.starts_with("rules.yaml:"), "{one:?}");
                // The shown line never carries a raw control character (a terminal escape).
                for line in one.lines().skip(1) {
                    assert!(
                        !line.chars().any(|c| c.is_control() && c != '\t'),
                        "{line:?}"
                    );
                }
            }
            None
        }
    }
}

/// YAML-ish lines for mutations: keys, structure, references, templates, broken syntax.
const YAML_LINES: &[&str] = &[
    "  - name: x",
    "    source: ci",
    "    source: nope",
    "    to: [ops, nope]",
    "    to: []",
    "    when: event == \"push\" and",
    "    when: '{{'",
    "    template: nope",
    "    template: alertmanager",
    "    stop: maybe",
    "    per_alert: true",
    "    text: { content: \"{{ x | nope }}\" }",
    "    markdown: { title: t, text: \"{{ x\" }",
    "    at: { mobiles: [\"{{ a }}\"], all: true }",
    "    feed_card: { each: alerts, link: { title: t, message_url: u, pic_url: p } }",
    "    action_card: { title: t, text: x, buttons: [] }",
    "    link: { title: t, text: x, message_url: \"{{ url }}\" }",
    "  x: { kind: github, secret_file: /nonexistent }",
    "  y: { kind: json, secret: s }",
    "  z: { kind: grafana, signature_header: \"bad name\" }",
    "  o: { webhook: \"http://evil.example/robot/send?access_token=abc\" }",
    "  p: { webhook: \"https://oapi.dingtalk.com/robot/send?access_token=${T}\" }",
    "listen: 999.1.1.1:99999",
    "timezone: Mars/Phobos",
    "body_limit: 1",
    "request_timeout: -5s",
    "dedup_window: 1h 30m",
    "delivery: { rate_per_minute: 0 }",
    "state_dir: ${STATE:-}",
    "secret: ${A:-${B:-${C",
    "bearer: \"\u{1b}[31m\"",
    "password: 'x'",
    "&anchor a: 1",
    "b: *anchor",
    "<<: *anchor",
    "!!binary aGVsbG8=",
    "? complex",
    "---",
    "...",
    "%YAML 1.2",
    "\t- tab",
    "-",
    "- - -",
    "{[",
    "'",
    "\"",
    "|",
    ">-",
    "key: |",
    "# comment",
    "",
    "rules:",
    "robots:",
    "sources:",
    "robots: []",
    "rules: {}",
];

/// One edit of a text: by characters or by lines.
#[derive(Debug, Clone)]
enum Edit {
    InsertChars(usize, String),
    DeleteChars(usize, usize),
    ReplaceChar(usize, char),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, String),
    Indent(usize, i8),
}

fn edit() -> BoxedStrategy<Edit> {
    let line = prop_oneof![
        3 => prop::sample::select(YAML_LINES).prop_map(str::to_owned),
        1 => text(),
    ];
    prop_oneof![
        2 => (any::<usize>(), text()).prop_map(|(at, s)| Edit::InsertChars(at, s)),
        2 => (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::DeleteChars(at, n)),
        2 => (any::<usize>(), prop_oneof![
            prop::sample::select(&[':', '-', ' ', '\t', '\n', '{', '}', '[', ']', '"', '\'', '#',
                '$', '&', '*', '!', '|', '>', '%', '@', '`', ',', '?', '\u{0}', '\u{feff}'][..]),
            any::<char>(),
        ]).prop_map(|(at, c)| Edit::ReplaceChar(at, c)),
        2 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        3 => (any::<usize>(), line).prop_map(|(at, l)| Edit::InsertLine(at, l)),
        1 => (any::<usize>(), -4i8..=4).prop_map(|(at, by)| Edit::Indent(at, by)),
    ]
    .boxed()
}

fn apply_edit(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let char_at = |at: usize| at % (chars.len() + 1);
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let line_at = |at: usize| at % lines.len();
    match edit {
        Edit::InsertChars(at, s) => {
            let at = char_at(*at);
            let mut out: String = chars[..at].iter().collect();
            out.push_str(s);
            out.extend(&chars[at..]);
            return out;
        }
        Edit::DeleteChars(at, n) => {
            let at = char_at(*at);
            let end = (at + n).min(chars.len());
            return chars[..at].iter().chain(&chars[end..]).collect();
        }
        Edit::ReplaceChar(at, c) => {
            if chars.is_empty() {
                return c.to_string();
            }
            let at = *at % chars.len();
            let mut chars = chars;
            chars[at] = *c;
            return chars.into_iter().collect();
        }
        Edit::DeleteLine(at) => {
            let at = line_at(*at);
            lines.remove(at);
        }
        Edit::DuplicateLine(at) => {
            let at = line_at(*at);
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        Edit::SwapLines(a, b) => {
            let (a, b) = (line_at(*a), line_at(*b));
            lines.swap(a, b);
        }
        Edit::InsertLine(at, line) => {
            let at = *at % (lines.len() + 1);
            lines.insert(at, line.clone());
        }
        Edit::Indent(at, by) => {
            let at = line_at(*at);
            let line = &lines[at];
            lines[at] = if *by >= 0 {
                format!("{}{line}", " ".repeat(usize::from(by.unsigned_abs())))
            } else {
                let strip = usize::from(by.unsigned_abs());
                let spaces = line.len() - line.trim_start_matches(' ').len();
                line[spaces.min(strip)..].to_owned()
            };
        }
    }
    lines.join("\n")
}

/// Small configs that load, as seeds for mutation besides the shipped rules.yaml.
const SMALL_CONFIGS: &[&str] = &[
    "robots:\n  ops: { webhook: log, keywords: [告警] }\nsources:\n  am: { kind: alertmanager, auth: { bearer: t } }\nrules:\n  - name: a\n    source: am\n    to: ops\n    template: alertmanager\n    at: { mobiles: [\"{{ commonLabels.owner }}\"] }\n",
    "robots:\n  r: { webhook: log }\nsources:\n  ci: { kind: json, dedup: \"{{ id }}\" }\nrules:\n  - name: feed\n    source: ci\n    to: r\n    feed_card:\n      each: items\n      max_links: 5\n      link:\n        title: \"{{ item.t }}\"\n        message_url: \"{{ item.u }}\"\n        pic_url: \"{{ item.p }}\"\n",
    "robots:\n  r: { webhook: log }\nsources:\n  gh: { kind: github, secret: s }\n  gf: { kind: grafana, secret: s, timestamp_header: X-T }\nrules:\n  - name: card\n    source: gh\n    to: [r]\n    stop: true\n    action_card:\n      title: t\n      text: \"{{ action }}\"\n      button_orientation: horizontal\n      buttons: [{ title: a, url: \"https://e.com\" }]\n",
];

fn config_text() -> BoxedStrategy<String> {
    let seed = prop_oneof![
        4 => Just(SHIPPED_RULES),
        1 => prop::sample::select(SMALL_CONFIGS),
    ];
    (seed, prop::collection::vec(edit(), 1..5))
        .prop_map(|(seed, edits)| {
            edits
                .iter()
                .fold(seed.to_owned(), |text, edit| apply_edit(&text, edit))
        })
        .boxed()
}

/// Strings heavy in the characters `${VAR}` expansion cares about.
fn expansion_input() -> BoxedStrategy<String> {
    let piece = prop_oneof![
        prop::sample::select(
            &[
                "$", "$$", "${", "}", ":-", ":", "-", "A", "_x1", "${A}", "${A:-", "${1}", "$}",
                "é", "中", "😀", "\u{0}", " "
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z0-9_${}:-]{1,4}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..24)
        .prop_map(|p| p.concat())
        .boxed()
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text never makes the loader panic, and every error is `rules.yaml:` prefixed.
    #[test]
    fn config_from_any_text_loads_or_fails_with_located_errors(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(YAML_LINES), 0..16).prop_map(|l| l.join("\n")),
    ]) {
        load(&text);
    }

    #[test]
    fn expand_never_panics_and_keeps_its_promises(
        input in expansion_input(),
        value in prop::option::of(prop_oneof![text(), Just("${A}".to_owned()), Just("$$".to_owned())]),
    ) {
        let unset = |_: &str| None;
        let set = |_: &str| value.clone();
        let a = expand(&input, &unset);
        let b = expand(&input, &set);
        if !input.contains('$') {
            prop_assert_eq!(a.as_deref(), Ok(input.as_str()));
        }
        // A syntax error does not depend on which variables are set, and points at a `$`.
        for result in [&a, &b] {
            if let Err(ExpandError::Syntax { offset, message }) = result {
                prop_assert!(!message.is_empty());
                prop_assert_eq!(input.as_bytes().get(*offset), Some(&b'$'), "{}", message);
                prop_assert_eq!(&a, &b);
            }
        }
        // Values from the environment are inserted as they are, never expanded again.
        if let Some(value) = &value {
            prop_assert_eq!(expand("${NAME}", &set), Ok(value.clone()));
        }
    }

    /// Deeply nested defaults are refused or expanded, never a stack overflow.
    #[test]
    fn expand_survives_deep_nesting(depth in 0usize..5000, close in any::<bool>()) {
        let mut input = "${A:-".repeat(depth);
        input.push('x');
        if close {
            input.push_str(&"}".repeat(depth));
        }
        let _ = expand(&input, &|_| None);
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// Mutations of the shipped rules.yaml (and of small configs): the loader never panics, and
    /// every error is `rules.yaml:` prefixed and located.
    #[test]
    fn mutated_rules_yaml_loads_or_fails_with_located_errors(text in config_text()) {
        load(&text);
    }

    /// A misspelled key under a robot or a source, whatever its value and however it is quoted
    /// or nested: the error names the key and never shows the value.
    #[test]
    fn an_unknown_key_under_robots_or_sources_never_shows_its_value(
        value in "[A-Za-z0-9+/=_.-]{8,40}",
        quoting in 0usize..4,
        under_source in any::<bool>(),
    ) {
        let shown = match quoting {
            0 => value.clone(),
            1 => format!("\"{value}\""),
            2 => format!("'{value}'"),
            _ => format!("[x, {value}]"),
        };
        let text = if under_source {
            format!(
                "robots:\n  ops: {{ webhook: log }}\nsources:\n  am: {{ kind: alertmanager, auth: {{ tokn: {shown} }} }}\nrules: []\n"
            )
        } else {
            format!(
                "robots:\n  ops:\n    webhook: log\n    secrett: {shown} # {value}\nsources:\n  am: {{ kind: alertmanager }}\nrules: []\n"
            )
        };
        let error = Config::parse("rules.yaml", &text, Path::new("."), &|_| None)
            .expect_err("an unknown key is an error")
            .to_string();
        prop_assert!(error.contains("unknown field"), "{}", error);
        prop_assert!(!error.contains(&value), "{}", error);
    }
}

#[test]
fn shipped_rules_yaml_loads() {
    assert!(load(SHIPPED_RULES).is_some());
    for small in SMALL_CONFIGS {
        assert!(load(small).is_some(), "{small}");
    }
}

// =============================================================================================
// 3. The message validator

/// Units that repeat into long texts: 1- to 4-byte chars, JSON escapes, controls, mentions.
const UNITS: &[&str] = &[
    "a",
    " ",
    "中",
    "😀",
    "\"",
    "\\",
    "\n",
    "\r",
    "\t",
    "\u{1}",
    "\u{1f}",
    "\u{7f}",
    "é",
    "@u1",
    "@13800001111",
    "@",
    "\u{2028}",
    "\u{feff}",
    "告警",
    "alert",
    "…",
    "\u{0}",
];

/// Text up to ~100 KB: short text, or a unit repeated, between short texts.
fn big_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => text(),
        1 => (
            text(),
            prop::collection::vec(prop::sample::select(UNITS), 1..4),
            0usize..30_000,
            text(),
        )
            .prop_map(|(head, unit, n, tail)| {
                let unit = unit.concat();
                let n = n.min(100_000 / unit.len().max(1));
                format!("{head}{}{tail}", unit.repeat(n))
            }),
    ]
    .boxed()
}

fn valid_url() -> BoxedStrategy<String> {
    "(https?|dingtalk)://[a-z]{1,10}\\.com/[a-z0-9/?=&%._-]{0,20}".boxed()
}

fn url() -> BoxedStrategy<String> {
    prop_oneof![
        12 => valid_url(),
        1 => "[ \t\n]{1,3}https://example\\.com/[a-z]{0,8}[ \t\n]{0,3}",
        1 => prop::sample::select(&[
            "", " ", "ftp://example.com", "javascript:alert(1)", "example.com/x", "http://",
            "https://[::1", "mailto:a@b.c", "dingtalk://", "https://例子.测试/路径"
        ][..]).prop_map(str::to_owned),
        1 => text(),
        1 => (0usize..25_000).prop_map(|n| format!("https://example.com/?q={}", "a".repeat(n))),
    ]
    .boxed()
}

fn picture() -> BoxedStrategy<String> {
    prop_oneof![
        3 => url(),
        1 => "@lA[A-Za-z0-9_]{4,20}",
        1 => prop::sample::select(&["@", " @x ", "@a b", "@\u{1}", "@x\u{3000}"][..])
            .prop_map(str::to_owned),
    ]
    .boxed()
}

fn mention_id() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "1[3-9][0-9]{9}",
        3 => "[a-z0-9_-]{1,12}",
        1 => prop::sample::select(&["", " ", " u1 ", "u1", "u1-x", "a b", "@x", "中文", "x\n"][..])
            .prop_map(str::to_owned),
        1 => text(),
    ]
    .boxed()
}

fn at() -> BoxedStrategy<Option<At>> {
    prop::option::weighted(
        0.5,
        (
            prop::collection::vec(mention_id(), 0..30),
            prop::collection::vec(mention_id(), 0..30),
            any::<bool>(),
        )
            .prop_map(|(at_mobiles, at_user_ids, is_at_all)| At {
                at_mobiles,
                at_user_ids,
                is_at_all,
            }),
    )
    .boxed()
}

fn title() -> BoxedStrategy<String> {
    prop_oneof![
        8 => text(),
        1 => big_text(),
    ]
    .boxed()
}

fn message_body() -> BoxedStrategy<MessageBody> {
    let button = (title(), url()).prop_map(|(title, action_url)| Button { title, action_url });
    let feed_link =
        (title(), url(), picture()).prop_map(|(title, message_url, pic_url)| FeedLink {
            title,
            message_url,
            pic_url,
        });
    let light_link =
        (text(), valid_url(), valid_url()).prop_map(|(title, message_url, pic_url)| FeedLink {
            title,
            message_url,
            pic_url,
        });
    let action = prop_oneof![
        (title(), url()).prop_map(|(single_title, single_url)| CardAction::Single {
            single_title,
            single_url
        }),
        prop::collection::vec(button, 0..6).prop_map(|btns| CardAction::Buttons { btns }),
    ];
    prop_oneof![
        big_text().prop_map(|content| MessageBody::Text {
            text: Text { content }
        }),
        (title(), big_text(), url(), prop::option::of(picture())).prop_map(
            |(title, text, message_url, pic_url)| MessageBody::Link {
                link: Link {
                    title,
                    text,
                    message_url,
                    pic_url
                }
            }
        ),
        (title(), big_text()).prop_map(|(title, text)| MessageBody::Markdown {
            markdown: Markdown { title, text }
        }),
        (
            title(),
            big_text(),
            action,
            prop::option::of(prop_oneof![
                Just(BtnOrientation::Vertical),
                Just(BtnOrientation::Horizontal)
            ]),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(title, text, action, btn_orientation, hide_avatar)| {
                MessageBody::ActionCard {
                    action_card: ActionCard {
                        title,
                        text,
                        action,
                        btn_orientation,
                        hide_avatar,
                    },
                }
            }),
        prop_oneof![
            3 => prop::collection::vec(feed_link, 0..8),
            1 => prop::collection::vec(light_link, 100..400),
        ]
        .prop_map(|links| MessageBody::FeedCard {
            feed_card: FeedCard { links }
        }),
    ]
    .boxed()
}

fn message() -> BoxedStrategy<Message> {
    (
        message_body(),
        at(),
        prop::option::weighted(
            0.2,
            prop_oneof![
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                text()
            ],
        ),
    )
        .prop_map(|(body, at, msg_uuid)| {
            // DingTalk ignores mentions elsewhere (and prepare refuses them): mostly leave them
            // off other types, so that those are checked further than their `at`.
            let mentions = matches!(
                body,
                MessageBody::Text { .. } | MessageBody::Markdown { .. }
            ) || msg_uuid.as_deref().is_some_and(|u| u.len() % 4 == 0);
            let at = at.filter(|_| mentions);
            Message { body, at, msg_uuid }
        })
        .boxed()
}

fn robot() -> BoxedStrategy<Robot> {
    prop::collection::vec(
        prop_oneof![
            Just("告警".to_owned()),
            Just("alert".to_owned()),
            Just(String::new()),
            Just(" ".to_owned()),
            text(),
        ],
        0..3,
    )
    .prop_map(|keywords| Robot {
        name: "ops".into(),
        endpoint: Endpoint::DryRun { secret: None },
        keywords,
    })
    .boxed()
}

/// `@id` appears in `text` as a whole mention (not followed by `[A-Za-z0-9_-]`).
fn mentioned(text: &str, id: &str) -> bool {
    let needle = format!("@{id}");
    text.match_indices(&needle).any(|(start, _)| {
        text[start + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    })
}

/// Everything `prepare` promises about an accepted message.
fn check_prepared(original: &Message, robot: &Robot) {
    let Ok(prepared) = prepare(original.clone(), robot) else {
        return;
    };
    let message = &prepared.message;

    // It fits, and is valid UTF-8 JSON that reads back as the same message.
    let bytes = serde_json::to_vec(message).expect("serializes");
    assert_eq!(bytes.len(), encoded_len(message));
    assert!(bytes.len() <= BUDGET, "{} bytes", bytes.len());
    let text = String::from_utf8(bytes).expect("UTF-8");
    let back: Message = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(&back, message);

    // Mentions: only on text and markdown, at most 50, each one shown as @id.
    if let Some(at) = &message.at {
        assert!(!at.is_empty(), "an empty `at` is kept");
        assert!(matches!(
            message.body,
            MessageBody::Text { .. } | MessageBody::Markdown { .. }
        ));
        assert!(at.at_mobiles.len() + at.at_user_ids.len() <= 50);
        let shown = message.body.main_text().unwrap_or_default();
        for id in at.at_mobiles.iter().chain(&at.at_user_ids) {
            assert!(!id.trim().is_empty() && id.trim() == id, "{id:?}");
            assert!(mentioned(shown, id), "@{id} missing from {shown:?}");
        }
    }

    // Keywords: one of the robot's appears in a visible text. One that the message as it came
    // did not keep is put, `【first keyword】`, in front of its title (for `text`, the content);
    // the promises below hold of the message so tagged.
    let keywords: Vec<&String> = robot
        .keywords
        .iter()
        .filter(|k| !k.trim().is_empty())
        .collect();
    let has_keyword = |message: &Message| {
        let texts = message.body.visible_texts();
        keywords
            .iter()
            .any(|k| texts.iter().any(|t| t.contains(k.as_str())))
    };
    let tagged;
    let original = match keywords.first() {
        Some(first) => {
            assert!(has_keyword(message));
            let untagged = prepare(
                original.clone(),
                &Robot {
                    keywords: Vec::new(),
                    ..robot.clone()
                },
            )
            .expect("valid without keywords when valid with them");
            if has_keyword(&untagged.message) {
                assert_eq!(
                    message, &untagged.message,
                    "a message with a keyword is left as it is"
                );
                original
            } else {
                tagged = with_tag(original.clone(), &format!("【{first}】"));
                &tagged
            }
        }
        None => original,
    };

    // Titles and button labels: unchanged within the cap, else a prefix and a marker within it.
    let mut title_cut = 0;
    for (before, after) in short_fields(&original.body)
        .into_iter()
        .zip(short_fields(&message.body))
    {
        if before.len() <= MAX_TITLE_BYTES {
            assert_eq!(before, after);
            continue;
        }
        assert!(after.len() <= MAX_TITLE_BYTES, "{} bytes", after.len());
        let (kept, marker) = after.rsplit_once('…').expect("a cut title has a marker");
        assert!(before.starts_with(kept), "a cut title is not a prefix");
        let cut = before.len() - kept.len();
        assert_eq!(marker, format!("({cut} more bytes cut)"));
        title_cut += cut;
    }
    if matches!(message.body, MessageBody::FeedCard { .. }) {
        // Links dropped to fit may have had their titles cut first.
        assert!(prepared.title_cut_bytes >= title_cut);
    } else {
        assert_eq!(prepared.title_cut_bytes, title_cut);
    }

    // The main text starts with what was kept of the original.
    match (original.body.main_text(), message.body.main_text()) {
        (Some(before), Some(after)) => {
            let kept_len = before
                .len()
                .checked_sub(prepared.cut_bytes)
                .expect("no more cut than there was");
            let kept = before.get(..kept_len).expect("cut on a char boundary");
            assert!(
                after.starts_with(kept),
                "cut text does not start with a prefix"
            );
            if prepared.cut_bytes > 0 {
                assert!(after.contains(&format!("…({} more bytes cut)", prepared.cut_bytes)));
            }
        }
        _ => {
            let (
                MessageBody::FeedCard { feed_card: before },
                MessageBody::FeedCard { feed_card: after },
            ) = (&original.body, &message.body)
            else {
                panic!("the message type changed");
            };
            assert!(!after.links.is_empty() && after.links.len() <= before.links.len());
            for (a, b) in after.links.iter().zip(&before.links) {
                assert_eq!(a.message_url, b.message_url.trim());
            }
        }
    }

    // Preparing a prepared message changes nothing.
    let again = prepare(message.clone(), robot).expect("a prepared message is valid");
    assert_eq!(&again.message, message);
    assert_eq!(again.cut_bytes, 0);
    assert_eq!(again.title_cut_bytes, 0);
}

/// `message` with `tag` in front of its title (the first feed link's; for `text`, the content).
fn with_tag(mut message: Message, tag: &str) -> Message {
    let field = match &mut message.body {
        MessageBody::Text { text } => &mut text.content,
        MessageBody::Link { link } => &mut link.title,
        MessageBody::Markdown { markdown } => &mut markdown.title,
        MessageBody::ActionCard { action_card } => &mut action_card.title,
        MessageBody::FeedCard { feed_card } => &mut feed_card.links[0].title,
    };
    field.insert_str(0, tag);
    message
}

/// The short visible fields [`prepare`] caps at [`MAX_TITLE_BYTES`], in order: the title and
/// button labels, or a feedCard's link titles.
fn short_fields(body: &MessageBody) -> Vec<&str> {
    match body {
        MessageBody::FeedCard { feed_card } => {
            feed_card.links.iter().map(|l| l.title.as_str()).collect()
        }
        _ => body
            .title()
            .into_iter()
            .chain(body.buttons().into_iter().flatten())
            .collect(),
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// `prepare` never panics; what it accepts fits, reads back, mentions everyone it names,
    /// carries a keyword, keeps a prefix of the original, and is a fixed point.
    #[test]
    fn prepare_never_panics_and_accepted_messages_keep_every_promise(
        message in message(),
        robot in robot(),
    ) {
        check_prepared(&message, &robot);
    }

    /// The same with mentions on long text and markdown: the cut must keep every mention.
    #[test]
    fn cut_text_keeps_every_mention(
        content in big_text(),
        markdown in any::<bool>(),
        at in at(),
    ) {
        let body = if markdown {
            MessageBody::Markdown { markdown: Markdown { title: "t".into(), text: content } }
        } else {
            MessageBody::Text { text: Text { content } }
        };
        let robot = Robot {
            name: "r".into(),
            endpoint: Endpoint::DryRun { secret: None },
            keywords: Vec::new(),
        };
        check_prepared(&Message { body, at, msg_uuid: None }, &robot);
    }
}

// =============================================================================================
// 4. Rules and template filters, rendering arbitrary payloads

fn shipped() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| load(SHIPPED_RULES).expect("rules.yaml loads"))
}

fn now() -> jiff::Timestamp {
    "2026-11-24T08:00:00Z".parse().expect("a time")
}

/// Every delivery of a routing is a message `prepare` accepts unchanged.
fn check_routing(config: &Config, event: &dingrelay::source::Event) -> dingrelay::rules::Routing {
    let routing = config.rules.route(event, now());
    for delivery in &routing.messages {
        assert!(encoded_len(&delivery.message) <= BUDGET);
        let again =
            prepare(delivery.message.clone(), &delivery.robot).expect("a routed message is valid");
        assert_eq!(again.message, delivery.message);
    }
    let _ = config.rules.dedup_key(event, now());
    routing
}

/// A rule per filter, so that one filter's error does not hide the others.
const FILTER_RULES: &str = r#"
robots:
  r: { webhook: log }
sources:
  s: { kind: json, dedup: "{{ a }}-{{ s | short_sha(n) }}" }
rules:
  - { name: datetime, source: s, to: r, text: { content: "[{{ a | datetime }}]" } }
  - { name: datetime-format, source: s, to: r, text: { content: "[{{ a | datetime(f) }}]" } }
  - { name: since, source: s, to: r, text: { content: "[{{ a | since }}]" } }
  - { name: since-until, source: s, to: r, text: { content: "[{{ a | since(b) }}]" } }
  - { name: since-now, source: s, to: r, text: { content: "[{{ a | since(until=b) }}]" } }
  - { name: duration, source: s, to: r, text: { content: "[{{ a | duration }}]" } }
  - { name: md-escape, source: s, to: r, markdown: { title: t, text: "[{{ s | md_escape }}]" } }
  - { name: truncate, source: s, to: r, text: { content: "[{{ s | truncate_bytes(n) }}]" } }
  - { name: truncate-marker, source: s, to: r, text: { content: "[{{ s | truncate_bytes(n, m) }}]" } }
  - { name: label-pairs, source: s, to: r, text: { content: "[{{ l | label_pairs }}]" } }
  - { name: label-pairs-args, source: s, to: r, text: { content: "[{{ l | label_pairs(sep=m, kv=m, exclude=x) }}]" } }
  - { name: ref-name, source: s, to: r, text: { content: "[{{ s | ref_name }}]" } }
  - { name: first-line, source: s, to: r, text: { content: "[{{ s | first_line }}]" } }
  - { name: short-sha, source: s, to: r, text: { content: "[{{ s | short_sha(n) }}]" } }
  - { name: tojson, source: s, to: r, text: { content: "[{{ payload | tojson }}]" } }
"#;

fn filters_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| load(FILTER_RULES).expect("the filter rules load"))
}

fn time_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => interesting().prop_map(Value::from),
        2 => "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:?[0-9]{2}| UTC)?"
            .prop_map(Value::from),
        2 => json_leaf(),
        1 => prop_oneof![
            Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0), Just(100_000_000_001),
            Just(253_402_300_799), Just(253_402_300_800), Just(-377_705_116_800),
        ].prop_map(Value::from),
    ].boxed()
}

fn filter_payload() -> BoxedStrategy<Value> {
    (
        time_value(),
        time_value(),
        prop_oneof![
            "(%[a-zA-Z%:.0-9-]|[a-z ])*",
            Just("%Y-%m-%d %H:%M:%S%.f %z %Z %:z %::z %A %B %j %s".to_owned()),
            text(),
        ],
        big_text(),
        prop_oneof![(0u64..300).prop_map(Value::from), json_leaf()],
        prop_oneof![Just(Value::from("…")), string_value(), json_leaf()],
        prop_oneof![labels(), json_value()],
        prop_oneof![labels(), json_value(), string_value()],
    )
        .prop_map(|(a, b, f, s, n, m, l, x)| {
            json!({ "a": a, "b": b, "f": f, "s": s, "n": n, "m": m, "l": l, "x": x })
        }).boxed()
}

fn parse_json_event(config: &Config, source: &str, doc: &Value) -> dingrelay::source::Event {
    let body = serde_json::to_vec(doc).expect("serializes");
    config.sources[source]
        .parse(&Inbound {
            headers: &HeaderMap::new(),
            query: "",
            body: &body,
        })
        .expect("a json source takes any object")
}

proptest! {
    #![proptest_config(cases(64))]

    /// The shipped rules.yaml routes payloads shaped like each sender's (with random values,
    /// types and missing fields) without panicking, and everything it queues is valid.
    #[test]
    fn shipped_rules_route_shaped_payloads(
        (kind, (example, doc)) in kind().prop_flat_map(|k| (Just(k), mutated_example(k))),
        group in prop::option::weighted(0.3, any::<bool>().prop_flat_map(alert_group)),
    ) {
        let config = shipped();
        let source = config
            .sources
            .values()
            .find(|s| s.kind == kind)
            .expect("the shipped rules have a source of every kind");
        let doc = match group {
            Some(group) if kind.has_alerts() => group,
            _ => doc,
        };
        let headers = examples::for_kind(kind)[example].header_map();
        let body = serde_json::to_vec(&doc).expect("serializes");
        let inbound = Inbound { headers: &headers, query: "", body: &body };
        if let Ok(event) = source.parse(&inbound) {
            check_routing(config, &event);
        }
    }

    /// Every filter over arbitrary values: a rendering or a rule error, never a panic; and
    /// truncate_bytes and short_sha keep their bounds.
    #[test]
    fn filters_render_arbitrary_values(doc in filter_payload()) {
        let config = filters_config();
        let event = parse_json_event(config, "s", &doc);
        let routing = check_routing(config, &event);
        let n = doc["n"].as_u64();
        let s = doc["s"].as_str().unwrap_or_default();
        for delivery in &routing.messages {
            let MessageBody::Text { text } = &delivery.message.body else { continue };
            if delivery.cut_bytes > 0 {
                continue;
            }
            let inner = text
                .content
                .strip_prefix('[')
                .and_then(|c| c.strip_suffix(']'))
                .expect("rendered between brackets");
            match (delivery.rule.as_str(), n) {
                ("truncate", Some(n)) => {
                    if s.len() as u64 <= n {
                        prop_assert_eq!(inner, s);
                    } else {
                        prop_assert!(inner.len() as u64 <= n, "{} > {n}", inner.len());
                        let kept = inner.strip_suffix('…').filter(|_| n >= 3).unwrap_or(inner);
                        prop_assert!(s.starts_with(kept));
                    }
                }
                ("short-sha", Some(n)) => {
                    prop_assert!(inner.chars().count() as u64 <= n);
                    prop_assert!(s.starts_with(inner));
                }
                ("ref-name", _) => prop_assert!(s.ends_with(inner)),
                _ => {}
            }
        }
    }
}

// =============================================================================================
// 5. DingTalk's answers (network input): the classifier

const DINGTALK_ERRCODES: &[i64] = &[
    0, -1, 130101, 410100, 310000, 300001, 300005, 400101, 400102, 400106, 400013, 40035, 43002,
    43004, 400105, 400402, 460101, 101002, 430101, 430102, 430103, 430104, 90002, 90030, 88,
];

/// A secret that must never come back out of the classifier, inside text around it (also
/// straight after a control character, which JSON would escape: see the regression tests).
fn text_with_secret(token: &str) -> BoxedStrategy<String> {
    let token = token.to_owned();
    (
        text(),
        prop::sample::select(&[" ", "&", "?", "\n", "(", "\"", ""][..]),
        prop::sample::select(
            &[
                "access_token=",
                "ACCESS_TOKEN=",
                "sign=",
                "Sign=",
                "https://robot:",
                "http://",
            ][..],
        ),
        prop::sample::select(&[" ", "&", "#", "\"", ")", ""][..]),
        text(),
    )
        .prop_map(move |(head, sep, param, end, tail)| {
            // Text that ends in a word character would make `access_token=` part of a longer
            // name, which is (rightly) not masked.
            let head = if head.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                format!("{head} ")
            } else {
                head
            };
            let value = if param.ends_with("://") || param.ends_with(':') {
                format!("{token}@oapi.dingtalk.com/robot/send")
            } else {
                token.clone()
            };
            format!("{head}{sep}{param}{value}{end}{tail}")
        })
        .boxed()
}

fn dingtalk_answer(token: &str) -> BoxedStrategy<(u16, Option<String>, Vec<u8>)> {
    let errcode = prop_oneof![
        4 => prop::sample::select(DINGTALK_ERRCODES).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop::sample::select(DINGTALK_ERRCODES).prop_map(|c| Value::from(format!(" {c} "))),
        1 => prop::sample::select(DINGTALK_ERRCODES).prop_map(|c| json!(c as f64)),
        1 => json_leaf(),
    ];
    let errmsg = prop_oneof![
        2 => text().prop_map(Value::from),
        2 => text_with_secret(token).prop_map(Value::from),
        1 => big_text().prop_map(Value::from),
        1 => json_value(),
        1 => text_with_secret(token).prop_map(|t| json!({ "detail": t })),
    ];
    let object = (
        prop::option::weighted(0.9, errcode),
        prop::option::weighted(0.9, errmsg),
        prop::collection::vec((key(), json_leaf()), 0..3),
    )
        .prop_map(|(errcode, errmsg, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            if let Some(errcode) = errcode {
                map.insert("errcode".into(), errcode);
            }
            if let Some(errmsg) = errmsg {
                map.insert("errmsg".into(), errmsg);
            }
            serde_json::to_vec(&map).expect("serializes")
        });
    let body = prop_oneof![
        6 => object,
        1 => text_with_secret(token).prop_map(|t| format!("<html><body>{t}</body></html>").into_bytes()),
        1 => text_with_secret(token).prop_map(String::into_bytes),
        1 => text_with_secret(token)
            .prop_map(|t| json!({ "status": 1111, "source": "x5", "punish": "deny", "wait": t }).to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..128),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("serializes")),
    ];
    let status = prop_oneof![
        4 => Just(200u16),
        1 => prop::sample::select(&[0u16, 100, 204, 301, 302, 400, 403, 429, 500, 502, 503, 599, 999][..]),
        1 => any::<u16>(),
    ];
    let content_type = prop::option::of(prop_oneof![
        Just("application/json; charset=utf-8".to_owned()),
        Just("text/html".to_owned()),
        text(),
        text_with_secret(token),
    ]);
    (status, content_type, body).boxed()
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever DingTalk (or a proxy) answers, classify never panics, and what it keeps for the
    /// operator is one bounded line with no control characters and no secret.
    #[test]
    fn classify_any_answer_without_panicking_or_leaking(
        (token, (status, content_type, body)) in "[A-Za-z0-9]{12,32}"
            .prop_flat_map(|token| (Just(token.clone()), dingtalk_answer(&token))),
    ) {
        use dingrelay::delivery::classify::{MAX_ERRMSG_CHARS, Verdict, classify};
        use dingrelay::delivery::transport::HttpAnswer;
        let outcome = classify(Ok(HttpAnswer { status, content_type, body }));
        let texts: Vec<&str> = match &outcome {
            Verdict::Delivered => Vec::new(),
            Verdict::Throttled { errmsg, .. } => vec![errmsg],
            Verdict::Transient { reason } => vec![reason],
            Verdict::Permanent { errmsg, advice, .. } => vec![errmsg, advice],
        };
        for text in texts {
            prop_assert!(!text.contains(token.as_str()), "{:?}", outcome);
            prop_assert!(!text.chars().any(char::is_control), "{:?}", outcome);
        }
        if let Verdict::Throttled { errmsg, .. } | Verdict::Permanent { errmsg, .. } = &outcome {
            prop_assert!(errmsg.chars().count() <= MAX_ERRMSG_CHARS);
        }
    }
}

// =============================================================================================
// Regression tests: minimal inputs found by the long runs above.

/// Not a panic, found by probing the loader with escape sequences: validation messages quote
/// values from the file as they are (a rule name, an unknown robot, source or template, a
/// `listen` address), and `render` writes the message unescaped
/// (src/config/diagnostic.rs:92 and :95-98), so `dingrelay check` can send a terminal escape
/// sequence. The shown source line and serde's own messages are already escaped.
#[test]
fn config_error_messages_carry_no_raw_control_characters() {
    const HEAD: &str = "robots:\n  r: { webhook: log }\nsources:\n  s: { kind: json }\nrules:\n";
    let cases = [
        "listen: \"\\e[31m\"\n".to_owned(),
        format!("{HEAD}  - {{ name: \"\\e[31m\", source: s, to: r, text: {{ content: x }} }}\n"),
        format!("{HEAD}  - {{ name: a, source: \"\\e[31m\", to: r, text: {{ content: x }} }}\n"),
        format!("{HEAD}  - {{ name: a, source: s, to: \"\\e[31m\", text: {{ content: x }} }}\n"),
        format!("{HEAD}  - {{ name: a, source: s, to: r, template: \"\\e[31m\" }}\n"),
    ];
    for text in &cases {
        let error = Config::parse("rules.yaml", text, Path::new("."), &|_| None)
            .expect_err("the config is invalid");
        assert!(
            !error
                .rendered
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{:?}",
            error.rendered
        );
    }
}

/// Not a panic, found by `classify_any_answer_without_panicking_or_leaking`: an `errmsg` that is
/// not a JSON string is kept as its JSON text (src/delivery/classify.rs:122), where a control
/// character before `access_token=` is written as an escape ending in a letter (`\n`); the
/// masking then takes `access_token` for the end of a longer word (src/delivery/transport.rs:211)
/// and keeps the token in the reason that is logged and stored with the dead letter. Fixed in
/// 4af227c.
#[test]
fn secret_after_a_json_escape_in_errmsg_is_masked() {
    use dingrelay::delivery::classify::{Verdict, classify};
    use dingrelay::delivery::transport::HttpAnswer;
    let body = br#"{"errcode":-1,"errmsg":{"detail":"\naccess_token=SECRET0TOKEN"}}"#;
    let outcome = classify(Ok(HttpAnswer {
        status: 200,
        content_type: None,
        body: body.to_vec(),
    }));
    let Verdict::Transient { reason } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(!reason.contains("SECRET0TOKEN"), "{reason}");
}

/// Not a panic, found by `classify_any_answer_without_panicking_or_leaking` after the fix for the
/// test above: serde_json writes control characters other than `\n`, `\t`, `\r`, `\b`, `\f` as
/// `\u00XX`, which ends in a hex digit four bytes after the backslash, so the check for a
/// backslash two bytes back (src/delivery/transport.rs:217) does not see it, and the token
/// is kept. Fixed in c0d8294 (a non-string errmsg is shown as its texts, never as JSON).
#[test]
fn secret_after_a_unicode_escape_in_errmsg_is_masked() {
    use dingrelay::delivery::classify::{Verdict, classify};
    use dingrelay::delivery::transport::HttpAnswer;
    for body in [
        br#"{"errcode":-1,"errmsg":{"detail":"\u0001access_token=SECRET0TOKEN"}}"#.as_slice(),
        br#"{"errcode":-1,"errmsg":["\u001bsign=SECRET0TOKEN"]}"#.as_slice(),
    ] {
        let outcome = classify(Ok(HttpAnswer {
            status: 200,
            content_type: None,
            body: body.to_vec(),
        }));
        let Verdict::Transient { reason } = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(!reason.contains("SECRET0TOKEN"), "{reason}");
    }
}

/// Found by a 1,000,000-case run of `any_request_is_verified_and_parsed_without_panicking`: a
/// Grafana secret that is also a word of the refusal ("missing X-Grafana-Alerting-Signature
/// header") is not a leak, and the property now tells the two apart.
#[test]
fn a_secret_that_is_a_word_of_the_refusal_is_not_a_leak() {
    let source = signed_source(SourceKind::Grafana, "Signature");
    let headers = HeaderMap::new();
    let inbound = Inbound {
        headers: &headers,
        query: "",
        body: b"{}",
    };
    let Err(Rejection::Unauthorized(reason)) = source.verify(&inbound, now()) else {
        panic!("a request without the signature header is refused");
    };
    assert!(reason.contains("Signature"), "{reason}");
    assert!(quoted_anyway(&source, &inbound, "Signature"));
    // A reason that quoted the secret would change with it.
    assert!(!quoted_anyway(&source, &inbound, "no such text"));
}

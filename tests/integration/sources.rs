//! Acceptance tests for `dingrelay::source`: authentication, parsing, template context and the
//! built-in examples.
//!
//! Fixtures are byte-exact copies of real payloads in `tests/fixtures/corpus/`; the ones these
//! tests run over are listed in `tests/fixtures/sources/SOURCES.txt` (with `ATTRIBUTION.md`
//! there); nothing outside this crate is read at run time.

use std::path::{Path, PathBuf};

use dingrelay::source::auth::BasicAuth;
use dingrelay::source::{Auth, Event, Inbound, Rejection, Source, SourceKind, examples};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;

// ---------------------------------------------------------------------------------------------
// helpers

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const BEARER: &str = "s3cr3t-bearer-token-8f2a";
const BASIC_USER: &str = "alertmanager";
const BASIC_PASSWORD: &str = "pa55-w0rd-c91d";

fn source(kind: SourceKind) -> Source {
    Source {
        name: format!("test-{kind}"),
        kind,
        path: format!("/hooks/test-{kind}"),
        auth: Auth::default(),
        secret: None,
        signature_header: None,
        timestamp_header: None,
    }
}

fn with_secret(kind: SourceKind, secret: &str) -> Source {
    Source {
        secret: Some(SecretString::from(secret)),
        ..source(kind)
    }
}

fn with_bearer(kind: SourceKind) -> Source {
    Source {
        auth: Auth {
            bearer: Some(SecretString::from(BEARER)),
            basic: None,
        },
        ..source(kind)
    }
}

fn with_basic(kind: SourceKind) -> Source {
    Source {
        auth: Auth {
            bearer: None,
            basic: Some(BasicAuth {
                username: BASIC_USER.into(),
                password: SecretString::from(BASIC_PASSWORD),
            }),
        },
        ..source(kind)
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

/// The receiver's clock for most tests: the moment of Grafana's test vector (1700000000).
const NOW: i64 = 1_700_000_000;

fn verify(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<(), Rejection> {
    verify_at(source, headers, body, NOW)
}

/// Verifies as a receiver whose clock reads `now` (Unix seconds).
fn verify_at(source: &Source, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejection> {
    let now = jiff::Timestamp::from_second(now).expect("a valid timestamp");
    source.verify(
        &Inbound {
            headers,
            query: "",
            body,
        },
        now,
    )
}

fn parse(source: &Source, headers: &HeaderMap, body: &[u8]) -> Result<Event, Rejection> {
    source.parse(&Inbound {
        headers,
        query: "",
        body,
    })
}

fn parse_query(
    source: &Source,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<Event, Rejection> {
    source.parse(&Inbound {
        headers,
        query,
        body,
    })
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Where the payloads are: the corpus.
fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// The corpus files these tests run over: the first column of tests/fixtures/sources/SOURCES.txt.
fn listed() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sources/SOURCES.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split('\t').next().unwrap_or("").to_owned())
        .collect()
}

fn fixture(path: &str) -> Vec<u8> {
    let path = fixtures_dir().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every listed `*.json` directly in a corpus sub-directory, sorted by name.
fn fixtures_in(dir: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("{dir}/");
    let mut names: Vec<String> = listed()
        .iter()
        .filter_map(|file| file.strip_prefix(&prefix))
        .filter(|name| !name.contains('/') && name.ends_with(".json"))
        .map(str::to_owned)
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {dir}");
    names
        .into_iter()
        .map(|name| {
            let bytes = fixture(&format!("{dir}/{name}"));
            (name, bytes)
        })
        .collect()
}

fn unauthorized(result: Result<(), Rejection>) -> String {
    match result {
        Err(Rejection::Unauthorized(reason)) => reason,
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

fn malformed<T: std::fmt::Debug>(result: Result<T, Rejection>) -> String {
    match result {
        Err(Rejection::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn json_headers() -> HeaderMap {
    headers(&[("Content-Type", "application/json")])
}

const AM_MINIMAL: &str = r#"{"version":"4","status":"firing","groupKey":"{}:{alertname=\"X\"}",
    "alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"2025-01-01T00:00:00Z",
    "endsAt":"0001-01-01T00:00:00Z","fingerprint":"aaaa000000000001"}]}"#;

// ---------------------------------------------------------------------------------------------
// bearer and basic authentication, any kind

#[test]
fn nothing_configured_accepts_everything() {
    for kind in SourceKind::ALL {
        assert_eq!(
            verify(&source(kind), &HeaderMap::new(), b"{}"),
            Ok(()),
            "{kind}"
        );
        let junk = headers(&[("Authorization", "Bearer whatever")]);
        assert_eq!(verify(&source(kind), &junk, b"not json"), Ok(()), "{kind}");
    }
}

#[test]
fn bearer_valid_invalid_missing_on_every_kind() {
    for kind in SourceKind::ALL {
        let source = with_bearer(kind);
        let good = headers(&[("Authorization", &format!("Bearer {BEARER}"))]);
        assert_eq!(verify(&source, &good, b"{}"), Ok(()), "{kind}");
        // scheme names are case-insensitive
        let lower = headers(&[("authorization", &format!("bearer {BEARER}"))]);
        assert_eq!(verify(&source, &lower, b"{}"), Ok(()), "{kind}");

        let wrong = headers(&[("Authorization", "Bearer s3cr3t-bearer-token-8f2b")]);
        assert_eq!(
            unauthorized(verify(&source, &wrong, b"{}")),
            "wrong bearer token"
        );
        let prefix = headers(&[("Authorization", "Bearer s3cr3t")]);
        assert_eq!(
            unauthorized(verify(&source, &prefix, b"{}")),
            "wrong bearer token"
        );

        let missing = unauthorized(verify(&source, &HeaderMap::new(), b"{}"));
        assert_eq!(missing, "missing Authorization header");

        let basic = headers(&[("Authorization", &basic_header("x", BEARER))]);
        assert!(unauthorized(verify(&source, &basic, b"{}")).contains("expects a bearer token"));

        let bare = headers(&[("Authorization", BEARER)]);
        let reason = unauthorized(verify(&source, &bare, b"{}"));
        assert!(
            reason.contains("unsupported Authorization scheme"),
            "{reason}"
        );
        assert!(!reason.contains(BEARER));
    }
}

#[test]
fn basic_valid_invalid_missing_on_every_kind() {
    for kind in SourceKind::ALL {
        let source = with_basic(kind);
        let good = headers(&[("Authorization", &basic_header(BASIC_USER, BASIC_PASSWORD))]);
        assert_eq!(verify(&source, &good, b"{}"), Ok(()), "{kind}");

        for (user, password) in [
            (BASIC_USER, "pa55-w0rd-c91e"),
            ("alertmanagers", BASIC_PASSWORD),
            ("", ""),
        ] {
            let wrong = headers(&[("Authorization", &basic_header(user, password))]);
            assert_eq!(
                unauthorized(verify(&source, &wrong, b"{}")),
                "wrong username or password"
            );
        }
        let missing = unauthorized(verify(&source, &HeaderMap::new(), b"{}"));
        assert_eq!(missing, "missing Authorization header");

        let not_base64 = headers(&[("Authorization", "Basic !!!not-base64!!!")]);
        assert!(unauthorized(verify(&source, &not_base64, b"{}")).contains("malformed Basic"));
        let no_colon = headers(&[("Authorization", "Basic YWxlcnRtYW5hZ2Vy")]);
        assert!(unauthorized(verify(&source, &no_colon, b"{}")).contains("no `:`"));

        let bearer = headers(&[("Authorization", &format!("Bearer {BASIC_PASSWORD}"))]);
        assert!(
            unauthorized(verify(&source, &bearer, b"{}")).contains("expects Basic"),
            "{kind}"
        );
    }
}

#[test]
fn bearer_or_basic_either_passes_when_both_configured() {
    let source = Source {
        auth: Auth {
            bearer: with_bearer(SourceKind::Json).auth.bearer,
            basic: with_basic(SourceKind::Json).auth.basic,
        },
        ..source(SourceKind::Json)
    };
    let bearer = headers(&[("Authorization", &format!("Bearer {BEARER}"))]);
    let basic = headers(&[("Authorization", &basic_header(BASIC_USER, BASIC_PASSWORD))]);
    assert_eq!(verify(&source, &bearer, b"{}"), Ok(()));
    assert_eq!(verify(&source, &basic, b"{}"), Ok(()));
    let wrong = headers(&[("Authorization", "Bearer nope")]);
    assert_eq!(
        unauthorized(verify(&source, &wrong, b"{}")),
        "wrong bearer token"
    );
    let digest = headers(&[("Authorization", "Digest username=\"x\"")]);
    assert!(unauthorized(verify(&source, &digest, b"{}")).contains("expected Bearer or Basic"));
}

#[test]
fn two_authorization_headers_are_refused() {
    let source = with_bearer(SourceKind::Json);
    let two = headers(&[
        ("Authorization", "Bearer nope"),
        ("Authorization", &format!("Bearer {BEARER}")),
    ]);
    assert!(unauthorized(verify(&source, &two, b"{}")).contains("more than one"));
}

#[test]
fn auth_is_checked_before_the_kind_secret() {
    let source = Source {
        auth: with_bearer(SourceKind::Gitlab).auth,
        ..with_secret(SourceKind::Gitlab, "gl-token")
    };
    let token_only = headers(&[("X-Gitlab-Token", "gl-token")]);
    assert_eq!(
        unauthorized(verify(&source, &token_only, b"{}")),
        "missing Authorization header"
    );
    let both = headers(&[
        ("X-Gitlab-Token", "gl-token"),
        ("Authorization", &format!("Bearer {BEARER}")),
    ]);
    assert_eq!(verify(&source, &both, b"{}"), Ok(()));
    let bearer_only = headers(&[("Authorization", &format!("Bearer {BEARER}"))]);
    assert!(unauthorized(verify(&source, &bearer_only, b"{}")).contains("X-Gitlab-Token"));
}

#[test]
fn a_secret_on_an_unsigned_kind_fails_closed() {
    for kind in [SourceKind::Alertmanager, SourceKind::Json] {
        let source = with_secret(kind, "whatever");
        let reason = unauthorized(verify(&source, &json_headers(), AM_MINIMAL.as_bytes()));
        assert!(reason.contains("cannot check a `secret`"), "{reason}");
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub

const PUBLISHED_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_published_vector() {
    assert_eq!(
        format!("sha256={}", hmac_hex(GITHUB_SECRET, &[b"Hello, World!"])),
        PUBLISHED_SIGNATURE
    );
    let source = with_secret(SourceKind::Github, GITHUB_SECRET);
    let good = headers(&[("X-Hub-Signature-256", PUBLISHED_SIGNATURE)]);
    assert_eq!(verify(&source, &good, b"Hello, World!"), Ok(()));
    // header names are case-insensitive; hex digits too
    let shouty = headers(&[(
        "X-HUB-SIGNATURE-256",
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
    )]);
    assert_eq!(verify(&source, &shouty, b"Hello, World!"), Ok(()));

    let reason = unauthorized(verify(&source, &good, b"Hello, World?"));
    assert!(reason.contains("does not match"), "{reason}");
    let other_secret = with_secret(SourceKind::Github, "It's a Secret to Everybody!");
    assert!(
        unauthorized(verify(&other_secret, &good, b"Hello, World!")).contains("does not match")
    );
}

#[test]
fn github_missing_and_malformed_signatures() {
    let source = with_secret(SourceKind::Github, GITHUB_SECRET);
    let reason = unauthorized(verify(&source, &json_headers(), b"Hello, World!"));
    assert!(reason.contains("missing X-Hub-Signature-256"), "{reason}");

    let sha1_only = headers(&[(
        "X-Hub-Signature",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
    )]);
    let reason = unauthorized(verify(&source, &sha1_only, b"Hello, World!"));
    assert!(reason.contains("legacy SHA-1"), "{reason}");

    for bad in [
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e",
        "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=",
        "",
    ] {
        let h = headers(&[("X-Hub-Signature-256", bad)]);
        let reason = unauthorized(verify(&source, &h, b"Hello, World!"));
        assert!(
            reason.contains("malformed X-Hub-Signature-256"),
            "{bad}: {reason}"
        );
    }
}

#[test]
fn github_corpus_vectors_json_and_form() {
    let ping = fixture("github/ping.json");
    assert_eq!(ping.len(), 7633, "ping.json must stay byte-exact");
    let source = with_secret(SourceKind::Github, GITHUB_SECRET);

    let json = headers(&[
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "ping"),
        (
            "X-Hub-Signature-256",
            "sha256=0781a4c342e19ba538f4541868124c3fc6deb4b56ae69a04a38e6cd5c188806a",
        ),
    ]);
    assert_eq!(verify(&source, &json, &ping), Ok(()));
    let from_json = parse(&source, &json, &ping).expect("ping parses");

    let push = fixture("github/push.with-new-branch.json");
    let push_headers = headers(&[(
        "X-Hub-Signature-256",
        "sha256=8932d8769b1f990ebb7d03235a66217b1de8e48d0c626166d4e8fcac027a123d",
    )]);
    assert_eq!(verify(&source, &push_headers, &push), Ok(()));

    // Form-encoded delivery: `payload=` + quote_plus(ping.json), signed over those bytes. The
    // WHATWG serializer leaves `*` as is and escapes `~`; Python's quote_plus (which produced the
    // vector) does the opposite, so those two are adjusted to reproduce its exact bytes.
    let whatwg = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&ping).expect("utf-8"))
        .finish();
    let form_body = whatwg.replace('*', "%2A").replace("%7E", "~");
    assert_eq!(form_body.len(), 10615);
    let form = headers(&[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-GitHub-Event", "ping"),
        (
            "X-Hub-Signature-256",
            "sha256=c8a428b8eb52dc014821b77deab38a46e075570e4cf3db5511cca8476ed4139f",
        ),
    ]);
    assert_eq!(verify(&source, &form, form_body.as_bytes()), Ok(()));
    // the JSON signature does not verify the form body: the MAC is over the raw bytes
    let crossed = headers(&[(
        "X-Hub-Signature-256",
        "sha256=0781a4c342e19ba538f4541868124c3fc6deb4b56ae69a04a38e6cd5c188806a",
    )]);
    assert!(verify(&source, &crossed, form_body.as_bytes()).is_err());

    // the serializer's own bytes verify with their own signature, and decode to the same JSON
    let whatwg_form = headers(&[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-GitHub-Event", "ping"),
        (
            "X-Hub-Signature-256",
            &format!("sha256={}", hmac_hex(GITHUB_SECRET, &[whatwg.as_bytes()])),
        ),
    ]);
    assert_eq!(verify(&source, &whatwg_form, whatwg.as_bytes()), Ok(()));
    assert!(verify(&source, &form, whatwg.as_bytes()).is_err());
    let from_whatwg = parse(&source, &whatwg_form, whatwg.as_bytes()).expect("parses");
    assert_eq!(from_whatwg.payload, from_json.payload);

    let from_form = parse(&source, &form, form_body.as_bytes()).expect("form ping parses");
    assert_eq!(from_form.payload, from_json.payload);
    assert_eq!(from_form.name, "ping");
}

#[test]
fn github_form_bodies_need_a_payload_field() {
    let source = source(SourceKind::Github);
    let form = headers(&[
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("X-GitHub-Event", "push"),
    ]);
    assert!(malformed(parse(&source, &form, b"data=%7B%7D")).contains("no `payload` field"));
    assert!(
        malformed(parse(&source, &form, b"payload=%7B&x=1")).contains("line 1 column"),
        "form payload JSON errors carry serde's position"
    );
    let event = parse(
        &source,
        &form,
        b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D",
    )
    .expect("parses");
    assert_eq!(event.payload, json!({"ref": "refs/heads/main"}));
}

#[test]
fn github_ping_is_ignored_with_its_zen() {
    let ping = fixture("github/ping.json");
    let h = headers(&[
        ("X-GitHub-Event", "ping"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let event = parse(&source(SourceKind::Github), &h, &ping).expect("ping parses");
    assert_eq!(event.name, "ping");
    let zen = event.payload["zen"].as_str().expect("zen");
    assert_eq!(event.ignored, Some(format!("GitHub ping (zen: {zen})")));
    assert_eq!(
        event.dedup_key.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );

    let push = headers(&[("X-GitHub-Event", "push")]);
    let event = parse(
        &source(SourceKind::Github),
        &push,
        &fixture("github/push.with-new-branch.json"),
    )
    .expect("push parses");
    assert_eq!(event.ignored, None);
    assert_eq!(event.dedup_key, None, "no X-GitHub-Delivery, no dedup key");
}

#[test]
fn github_needs_the_event_header() {
    let reason = malformed(parse(&source(SourceKind::Github), &json_headers(), b"{}"));
    assert!(reason.contains("X-GitHub-Event"), "{reason}");
}

#[test]
fn github_corpus_payloads_parse_with_their_event() {
    for (name, bytes) in fixtures_in("github") {
        let event_name = name.split('.').next().expect("event prefix");
        let h = headers(&[("X-GitHub-Event", event_name)]);
        let event = parse(&source(SourceKind::Github), &h, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.name, event_name, "{name}");
        assert_eq!(event.ignored.is_some(), event_name == "ping", "{name}");
        assert_eq!(event.alert_count(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// GitLab

#[test]
fn gitlab_token_valid_invalid_missing() {
    let source = with_secret(SourceKind::Gitlab, "gl-s3cret-token");
    let good = headers(&[("X-Gitlab-Token", "gl-s3cret-token")]);
    assert_eq!(verify(&source, &good, b"{}"), Ok(()));
    let lower = headers(&[("x-gitlab-token", "gl-s3cret-token")]);
    assert_eq!(verify(&source, &lower, b"{}"), Ok(()));
    for wrong in ["gl-s3cret-toke", "gl-s3cret-tokenn", "GL-S3CRET-TOKEN", ""] {
        let h = headers(&[("X-Gitlab-Token", wrong)]);
        assert_eq!(
            unauthorized(verify(&source, &h, b"{}")),
            "wrong X-Gitlab-Token"
        );
    }
    let reason = unauthorized(verify(&source, &HeaderMap::new(), b"{}"));
    assert!(reason.contains("missing X-Gitlab-Token"), "{reason}");
}

#[test]
fn gitlab_event_name_from_object_kind_then_header() {
    let source = source(SourceKind::Gitlab);
    let h = headers(&[
        ("X-Gitlab-Event", "Push Hook"),
        ("Idempotency-Key", "5f1c1d2e-49a4-4d54-9c4e-0b6f3e2a1c77"),
    ]);
    let event = parse(&source, &h, br#"{"object_kind":"merge_request"}"#).expect("parses");
    assert_eq!(event.name, "merge_request");
    assert_eq!(
        event.dedup_key.as_deref(),
        Some("5f1c1d2e-49a4-4d54-9c4e-0b6f3e2a1c77")
    );

    for (hook, name) in [
        ("Push Hook", "push"),
        ("Tag Push Hook", "tag_push"),
        ("Merge Request Hook", "merge_request"),
        ("Pipeline Hook", "pipeline"),
        ("Job Hook", "build"),
        ("Confidential Issue Hook", "issue"),
        ("Some New Hook", "some_new"),
    ] {
        let h = headers(&[("X-Gitlab-Event", hook)]);
        let event = parse(&source, &h, br#"{"ref":"refs/heads/main"}"#).expect("parses");
        assert_eq!(event.name, name, "{hook}");
        assert_eq!(event.dedup_key, None);
    }
    let reason = malformed(parse(&source, &json_headers(), b"{}"));
    assert!(reason.contains("object_kind"), "{reason}");
}

#[test]
fn gitlab_corpus_payloads_parse_with_their_object_kind() {
    for (name, bytes) in fixtures_in("gitlab") {
        let event = parse(&source(SourceKind::Gitlab), &json_headers(), &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            Some(event.name.as_str()),
            event.payload["object_kind"].as_str(),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana

#[test]
fn grafana_vectors() {
    assert_eq!(
        hmac_hex("secret", &[b"Hello, World!"]),
        "fcfaffa7fef86515c7beb6b62d779fa4ccf092f2e61c164376054271252821ff"
    );
    let source = with_secret(SourceKind::Grafana, "secret");
    let good = headers(&[(
        "X-Grafana-Alerting-Signature",
        "fcfaffa7fef86515c7beb6b62d779fa4ccf092f2e61c164376054271252821ff",
    )]);
    assert_eq!(verify(&source, &good, b"Hello, World!"), Ok(()));
    assert!(unauthorized(verify(&source, &good, b"Hello, World?")).contains("does not match"));
    let reason = unauthorized(verify(&source, &HeaderMap::new(), b"Hello, World!"));
    assert!(
        reason.contains("missing X-Grafana-Alerting-Signature"),
        "{reason}"
    );
    let short = headers(&[("X-Grafana-Alerting-Signature", "fcfaffa7")]);
    assert!(unauthorized(verify(&source, &short, b"Hello, World!")).contains("malformed"));

    let timed = Source {
        timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
        ..with_secret(SourceKind::Grafana, "secret")
    };
    let good = headers(&[
        (
            "X-Grafana-Alerting-Signature",
            "70f7bf73e3fc77cd2daa7e8e2e400b5a5a80181dc33dbf0dd86dbed270a442a9",
        ),
        ("X-Grafana-Alerting-Timestamp", "1700000000"),
    ]);
    assert_eq!(verify(&timed, &good, b"Hello, World!"), Ok(()));
    // another timestamp with the same signature: refused
    let replayed = headers(&[
        (
            "X-Grafana-Alerting-Signature",
            "70f7bf73e3fc77cd2daa7e8e2e400b5a5a80181dc33dbf0dd86dbed270a442a9",
        ),
        ("X-Grafana-Alerting-Timestamp", "1700000001"),
    ]);
    assert!(unauthorized(verify(&timed, &replayed, b"Hello, World!")).contains("does not match"));
    // the untimed signature does not pass a source that expects a timestamp
    let untimed = headers(&[
        (
            "X-Grafana-Alerting-Signature",
            "fcfaffa7fef86515c7beb6b62d779fa4ccf092f2e61c164376054271252821ff",
        ),
        ("X-Grafana-Alerting-Timestamp", "1700000000"),
    ]);
    assert!(verify(&timed, &untimed, b"Hello, World!").is_err());
    let no_ts = headers(&[(
        "X-Grafana-Alerting-Signature",
        "70f7bf73e3fc77cd2daa7e8e2e400b5a5a80181dc33dbf0dd86dbed270a442a9",
    )]);
    let reason = unauthorized(verify(&timed, &no_ts, b"Hello, World!"));
    assert!(
        reason.contains("missing X-Grafana-Alerting-Timestamp"),
        "{reason}"
    );
    let bad_ts = headers(&[
        (
            "X-Grafana-Alerting-Signature",
            "70f7bf73e3fc77cd2daa7e8e2e400b5a5a80181dc33dbf0dd86dbed270a442a9",
        ),
        ("X-Grafana-Alerting-Timestamp", "17e8"),
    ]);
    assert!(unauthorized(verify(&timed, &bad_ts, b"Hello, World!")).contains("Unix seconds"));
}

/// Case 11 of issue 12: a signed timestamp is accepted only within ±5 minutes of the receiver's
/// clock, so a captured request cannot be replayed later; the refusal names the window.
#[test]
fn grafana_timestamp_is_accepted_only_within_five_minutes() {
    const SECRET: &str = "gr4fana-hmac-s3cret-5e1f";
    let timed = Source {
        timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
        ..with_secret(SourceKind::Grafana, SECRET)
    };
    let body = br#"{"alerts":[]}"#;
    let signed = |ts: &str| {
        headers(&[
            (
                "X-Grafana-Alerting-Signature",
                &hmac_hex(SECRET, &[ts.as_bytes(), b":", body]),
            ),
            ("X-Grafana-Alerting-Timestamp", ts),
        ])
    };
    let at = |ts: i64, now: i64| verify_at(&timed, &signed(&ts.to_string()), body, now);

    // In the window, either side, bounds included.
    for offset in [0, 1, -1, 299, -299, 300, -300] {
        assert_eq!(at(NOW + offset, NOW), Ok(()), "offset {offset}");
    }
    // The reference vector, received 4 min 59 s after it was signed.
    let vector = headers(&[
        (
            "X-Grafana-Alerting-Signature",
            "70f7bf73e3fc77cd2daa7e8e2e400b5a5a80181dc33dbf0dd86dbed270a442a9",
        ),
        ("X-Grafana-Alerting-Timestamp", "1700000000"),
    ]);
    let reference = Source {
        timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
        ..with_secret(SourceKind::Grafana, "secret")
    };
    assert_eq!(
        verify_at(&reference, &vector, b"Hello, World!", NOW + 299),
        Ok(())
    );
    // Just outside it.
    let reason = unauthorized(at(NOW - 301, NOW));
    assert!(reason.contains("301 s in the past"), "{reason}");
    let reason = unauthorized(at(NOW + 301, NOW));
    assert!(reason.contains("301 s in the future"), "{reason}");

    // Six minutes old: a replay.
    let reason = unauthorized(at(NOW - 360, NOW));
    assert!(reason.contains("X-Grafana-Alerting-Timestamp"), "{reason}");
    assert!(reason.contains("360 s in the past"), "{reason}");
    assert!(reason.contains("±300 s (5 min)"), "{reason}");
    assert!(!reason.contains(SECRET), "{reason}");
    // An hour in the future.
    let reason = unauthorized(at(NOW + 3600, NOW));
    assert!(reason.contains("3600 s in the future"), "{reason}");
    assert!(reason.contains("±300 s"), "{reason}");

    // The timestamps seen accepted: 2001-09-09 and the year 5138 (both correctly signed).
    let reason = unauthorized(at(1_000_000_000, NOW));
    assert!(
        reason.contains("in the past") && reason.contains("±300 s"),
        "{reason}"
    );
    let year_5138 = jiff::Timestamp::from_second(99_999_999_999).expect("in jiff's range");
    assert_eq!(year_5138.to_string()[..4].to_owned(), "5138");
    let reason = unauthorized(at(99_999_999_999, NOW));
    assert!(
        reason.contains("in the future") && reason.contains("±300 s"),
        "{reason}"
    );
    // More digits than any clock: refused, not wrapped around.
    let huge = "99999999999999999999999999";
    let reason = unauthorized(verify_at(&timed, &signed(huge), body, NOW));
    assert!(reason.contains("too far in the future"), "{reason}");
    assert!(!reason.contains(huge), "{reason}");

    // Not a number: refused before anything else.
    for bad in ["17e8", "-1700000000", "1700000000.5", "now"] {
        let reason = unauthorized(verify_at(&timed, &signed(bad), body, NOW));
        assert!(reason.contains("expected Unix seconds"), "{bad}: {reason}");
    }

    // Without a timestamp header configured, the time of the request does not matter.
    let untimed = with_secret(SourceKind::Grafana, SECRET);
    let plain = headers(&[("X-Grafana-Alerting-Signature", &hmac_hex(SECRET, &[body]))]);
    assert_eq!(verify_at(&untimed, &plain, body, NOW + 10_000_000), Ok(()));
}

/// A stale timestamp with a wrong signature is refused for the signature: the window's
/// refusal, which says how far off the clocks are, goes only to correctly signed requests.
#[test]
fn grafana_stale_and_forged_is_refused_for_the_signature() {
    let timed = Source {
        timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
        ..with_secret(SourceKind::Grafana, "secret")
    };
    let forged = headers(&[
        ("X-Grafana-Alerting-Signature", &"ab".repeat(32)),
        ("X-Grafana-Alerting-Timestamp", "1000000000"),
    ]);
    let reason = unauthorized(verify_at(&timed, &forged, b"{}", NOW));
    assert!(reason.contains("does not match"), "{reason}");
}

#[test]
fn grafana_custom_and_fallback_signature_headers() {
    let custom = Source {
        signature_header: Some("X-Relay-Signature".into()),
        ..with_secret(SourceKind::Grafana, "secret")
    };
    let sig = "fcfaffa7fef86515c7beb6b62d779fa4ccf092f2e61c164376054271252821ff";
    let h = headers(&[("x-relay-signature", sig)]);
    assert_eq!(verify(&custom, &h, b"Hello, World!"), Ok(()));
    let default_name = headers(&[("X-Grafana-Alerting-Signature", sig)]);
    assert!(
        unauthorized(verify(&custom, &default_name, b"Hello, World!"))
            .contains("X-Relay-Signature")
    );

    // grafana/alerting's signer falls back to this name when the contact point leaves it empty
    let plain = with_secret(SourceKind::Grafana, "secret");
    let fallback = headers(&[("X-Grafana-Alert-Signature", sig)]);
    assert_eq!(verify(&plain, &fallback, b"Hello, World!"), Ok(()));
}

#[test]
fn grafana_corpus_payloads_parse() {
    let expected = [
        ("zulip.alert-9-mixed.json", "firing", 3),
        ("zulip.alert-9-resolved.json", "resolved", 1),
        ("zulip.alert-9.json", "firing", 1),
        ("zulip.alert_values_v11.json", "firing", 1),
    ];
    let files = fixtures_in("grafana");
    assert_eq!(files.len(), expected.len());
    for ((file, bytes), (name, status, count)) in files.iter().zip(expected) {
        assert_eq!(file, name);
        let event = parse(&source(SourceKind::Grafana), &json_headers(), bytes)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(event.name, status, "{file}");
        assert_eq!(event.alert_count(), Some(count), "{file}");
        assert!(event.dedup_key.as_ref().is_some_and(|k| k.len() == 64));
    }
}

#[test]
fn grafana_status_falls_back_to_state_then_alerts() {
    let source = source(SourceKind::Grafana);
    let resolved_alert = r#"{"status":"resolved","endsAt":"2025-01-01T01:00:00Z"}"#;
    let firing_alert = r#"{"status":"firing","endsAt":"0001-01-01T00:00:00Z"}"#;
    let body = format!(r#"{{"state":"ok","alerts":[{firing_alert}]}}"#);
    assert_eq!(
        parse(&source, &json_headers(), body.as_bytes())
            .unwrap()
            .name,
        "resolved"
    );
    let body = format!(r#"{{"state":"alerting","alerts":[{resolved_alert}]}}"#);
    assert_eq!(
        parse(&source, &json_headers(), body.as_bytes())
            .unwrap()
            .name,
        "firing"
    );
    let body = format!(r#"{{"alerts":[{resolved_alert},{firing_alert}]}}"#);
    assert_eq!(
        parse(&source, &json_headers(), body.as_bytes())
            .unwrap()
            .name,
        "firing"
    );
    let body = format!(r#"{{"alerts":[{resolved_alert}]}}"#);
    assert_eq!(
        parse(&source, &json_headers(), body.as_bytes())
            .unwrap()
            .name,
        "resolved"
    );
    assert!(malformed(parse(&source, &json_headers(), br#"{"state":"ok"}"#)).contains("`alerts`"));
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

#[test]
fn alertmanager_legacy_payloads_are_malformed_with_a_reason() {
    let expected = [
        ("prometheus_bot.big_output.v3.json", "got the string \"3\""),
        ("prometheus_bot.production_example.json", "got the number 0"),
        ("prometheus_bot.simpe.v3.json", "got the string \"3\""),
    ];
    let files = fixtures_in("alertmanager/legacy");
    assert_eq!(files.len(), expected.len());
    for ((file, bytes), (name, got)) in files.iter().zip(expected) {
        assert_eq!(file, name);
        let reason = malformed(parse(
            &source(SourceKind::Alertmanager),
            &json_headers(),
            bytes,
        ));
        assert!(
            reason.starts_with("Alertmanager webhook payload version 4 expected, got "),
            "{file}: {reason}"
        );
        assert!(reason.contains(got), "{file}: {reason}");
    }
    let reason = malformed(parse(
        &source(SourceKind::Alertmanager),
        &json_headers(),
        br#"{"alerts":[]}"#,
    ));
    assert!(reason.contains("got no `version` field"), "{reason}");
}

#[test]
fn alertmanager_refuses_a_grafana_payload_with_a_hint() {
    let bytes = fixture("grafana/zulip.alert-9.json");
    let reason = malformed(parse(
        &source(SourceKind::Alertmanager),
        &json_headers(),
        &bytes,
    ));
    assert!(reason.contains("got the string \"1\""), "{reason}");
    assert!(reason.contains("kind `grafana`"), "{reason}");
}

#[test]
fn alertmanager_corpus_payloads_parse() {
    for (name, bytes) in fixtures_in("alertmanager") {
        let event = parse(&source(SourceKind::Alertmanager), &json_headers(), &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(event.name == "firing" || event.name == "resolved", "{name}");
        let count = event.payload["alerts"].as_array().map(Vec::len);
        assert_eq!(event.alert_count(), count, "{name}");
        let (context, omitted) = event.context(Some(5));
        assert_eq!(omitted, count.unwrap().saturating_sub(5), "{name}");
        assert!(context["commonAnnotations"].is_object(), "{name}");
    }
    // no top-level status: derived from the alerts (this one has ended)
    let event = parse(
        &source(SourceKind::Alertmanager),
        &json_headers(),
        &fixture("alertmanager/prom2teams.without_mandatory_field.json"),
    )
    .unwrap();
    assert_eq!(event.name, "resolved");
}

#[test]
fn alertmanager_status_is_derived_when_missing() {
    let source = source(SourceKind::Alertmanager);
    let body = br#"{"version":"4","alerts":[
        {"status":"resolved","endsAt":"2025-01-01T01:00:00Z"},
        {"labels":{"a":"b"},"endsAt":"0001-01-01T00:00:00Z"}]}"#;
    assert_eq!(
        parse(&source, &json_headers(), body).unwrap().name,
        "firing"
    );
    let body = br#"{"version":"4","alerts":[{"status":"resolved"}]}"#;
    assert_eq!(
        parse(&source, &json_headers(), body).unwrap().name,
        "resolved"
    );
    let body = br#"{"version":"4","status":"RESOLVED","alerts":[]}"#;
    assert_eq!(
        parse(&source, &json_headers(), body).unwrap().name,
        "resolved"
    );
}

#[test]
fn alertmanager_alerts_must_be_an_array_of_objects() {
    let source = source(SourceKind::Alertmanager);
    let cases: [(&[u8], &str); 5] = [
        (br#"{"version":"4"}"#, "`alerts` is missing"),
        (
            br#"{"version":"4","alerts":{}}"#,
            "`alerts` must be an array of alerts, got an object",
        ),
        (br#"{"version":"4","alerts":null}"#, "got null"),
        (
            br#"{"version":"4","alerts":[{},"x"]}"#,
            "`alerts[1]` must be an object, got the string \"x\"",
        ),
        (
            br#"{"version":"4","status":"pending","alerts":[]}"#,
            "`status` must be \"firing\" or \"resolved\"",
        ),
    ];
    for (body, expected) in cases {
        let reason = malformed(parse(&source, &json_headers(), body));
        assert!(reason.contains(expected), "{reason}");
    }
}

#[test]
fn alertmanager_dedup_key_is_stable_and_specific() {
    let source = source(SourceKind::Alertmanager);
    let key = |body: &str| {
        parse(&source, &json_headers(), body.as_bytes())
            .unwrap()
            .dedup_key
            .expect("alert kinds always have a dedup key")
    };
    let a = r#"{"status":"firing","fingerprint":"aaaa","startsAt":"2025-01-01T00:00:00Z"}"#;
    let b = r#"{"status":"firing","fingerprint":"bbbb","startsAt":"2025-01-01T00:05:00Z"}"#;
    let body = |alerts: &str, status: &str, group: &str| {
        format!(
            r#"{{"version":"4","status":"{status}","groupKey":"{group}","receiver":"r","alerts":[{alerts}]}}"#
        )
    };
    let base = key(&body(&format!("{a},{b}"), "firing", "g1"));
    assert_eq!(base.len(), 64);
    assert!(base.bytes().all(|c| c.is_ascii_hexdigit()));
    // same notification, alerts in another order, other whitespace and receiver: same key
    let same = body(&format!("{b} , {a}"), "firing", "g1").replace("\"r\"", "\"other\"");
    assert_eq!(key(&same), base);
    // another group, status, alert set or startsAt: another key
    assert_ne!(key(&body(&format!("{a},{b}"), "firing", "g2")), base);
    assert_ne!(key(&body(&format!("{a},{b}"), "resolved", "g1")), base);
    assert_ne!(key(&body(a, "firing", "g1")), base);
    let restarted = b.replace("00:05:00", "00:06:00");
    assert_ne!(
        key(&body(&format!("{a},{restarted}"), "firing", "g1")),
        base
    );
}

// ---------------------------------------------------------------------------------------------
// content types and bodies

#[test]
fn wrong_content_type_is_unsupported_media_type() {
    for kind in SourceKind::ALL {
        for content_type in [
            "text/plain",
            "application/xml; charset=utf-8",
            "multipart/form-data; boundary=x",
        ] {
            let h = headers(&[("Content-Type", content_type), ("X-GitHub-Event", "push")]);
            match parse(&source(kind), &h, b"{}") {
                Err(Rejection::UnsupportedMediaType(reason)) => {
                    let essence = content_type.split(';').next().unwrap();
                    assert!(reason.contains(essence), "{kind}: {reason}");
                    assert!(reason.contains("application/json"), "{kind}: {reason}");
                }
                other => panic!("{kind} {content_type}: expected 415, got {other:?}"),
            }
        }
    }
    // form bodies are GitHub's only
    let form = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
    assert!(matches!(
        parse(&source(SourceKind::Json), &form, b"payload=%7B%7D"),
        Err(Rejection::UnsupportedMediaType(_))
    ));
}

#[test]
fn json_content_types_and_missing_content_type_are_read_as_json() {
    for content_type in [
        None,
        Some("application/json"),
        Some("Application/JSON; charset=UTF-8"),
        Some("application/vnd.example+json"),
    ] {
        let h = match content_type {
            Some(ct) => headers(&[("Content-Type", ct)]),
            None => HeaderMap::new(),
        };
        let event = parse(&source(SourceKind::Json), &h, br#"{"a":1}"#)
            .unwrap_or_else(|e| panic!("{content_type:?}: {e}"));
        assert_eq!(event.payload, json!({"a": 1}));
    }
}

#[test]
fn bodies_must_be_json_objects() {
    let source = source(SourceKind::Json);
    let reason = malformed(parse(&source, &json_headers(), b"{\"a\": 1,\n \"b\": }"));
    assert!(reason.contains("not valid JSON"), "{reason}");
    assert!(reason.contains("line 2 column"), "{reason}");
    assert!(malformed(parse(&source, &json_headers(), b"[1,2]")).contains("got an array"));
    assert!(malformed(parse(&source, &json_headers(), b"\"x\"")).contains("got the string"));
    assert!(malformed(parse(&source, &json_headers(), b"")).contains("empty"));
    assert!(malformed(parse(&source, &json_headers(), b" \n")).contains("empty"));
    // a UTF-8 byte order mark is tolerated
    assert!(parse(&source, &json_headers(), b"\xEF\xBB\xBF{}").is_ok());
}

#[test]
fn hostile_bodies_are_rejected_without_panicking() {
    let deep = "[".repeat(100_000);
    let deep_object = format!("{{\"a\":{}", "[".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        deep_object.into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"a\":\"\xff\"}".to_vec(),
        b"{\"version\":\"4\",\"alerts\":[null]}".to_vec(),
        b"{\"version\":\"4\",\"alerts\":[{\"status\":7,\"labels\":[],\"endsAt\":{}}]}".to_vec(),
    ];
    for kind in SourceKind::ALL {
        for body in &bodies {
            let h = headers(&[("X-GitHub-Event", "push"), ("X-Gitlab-Event", "Push Hook")]);
            if let Ok(event) = parse(&source(kind), &h, body) {
                let _ = event.context(Some(1));
            }
            let form = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
            let _ = parse(&source(kind), &form, body);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// secrets never leak

#[test]
fn secrets_never_appear_in_rejections_or_event_headers() {
    let gitlab_token = "gl-TOKEN-7d1e";
    let source = Source {
        auth: Auth {
            bearer: Some(SecretString::from(BEARER)),
            basic: Some(BasicAuth {
                username: BASIC_USER.into(),
                password: SecretString::from(BASIC_PASSWORD),
            }),
        },
        ..with_secret(SourceKind::Gitlab, gitlab_token)
    };
    let secrets = [BEARER, BASIC_PASSWORD, gitlab_token];
    let presented = ["Bearer wrong-presented-token", "Basic d3Jvbmc6cHJlc2VudGVk"];

    let mut rejections = Vec::new();
    for auth in presented.iter().chain([&"Bearer s3cr3t"]) {
        rejections.push(verify(&source, &headers(&[("Authorization", auth)]), b"{}"));
    }
    rejections.push(verify(&source, &HeaderMap::new(), b"{}"));
    let bearer = format!("Bearer {BEARER}");
    for token in ["gl-TOKEN-7d1", "wrong-presented-token", ""] {
        rejections.push(verify(
            &source,
            &headers(&[("Authorization", &bearer), ("X-Gitlab-Token", token)]),
            b"{}",
        ));
    }
    for rejection in &rejections {
        let text = format!("{:?} {}", rejection, rejection.as_ref().err().unwrap());
        for secret in secrets
            .iter()
            .chain(&["wrong-presented-token", "d3Jvbmc6cHJlc2VudGVk"])
        {
            assert!(!text.contains(secret), "{text}");
        }
    }

    let github = with_secret(SourceKind::Github, GITHUB_SECRET);
    let bad = headers(&[("X-Hub-Signature-256", "sha256=1234")]);
    let text = unauthorized(verify(&github, &bad, b"{}"));
    assert!(
        !text.contains("1234") && !text.contains(GITHUB_SECRET),
        "{text}"
    );

    let h = headers(&[
        ("Content-Type", "application/json"),
        ("Authorization", &bearer),
        ("X-Gitlab-Token", gitlab_token),
        ("X-Gitlab-Event", "Push Hook"),
        ("Cookie", "session=abc"),
        ("X-Hub-Signature-256", PUBLISHED_SIGNATURE),
        (
            "X-Hub-Signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        ),
        ("X-Grafana-Alerting-Signature", "ab"),
        ("X-Api-Key", BASIC_PASSWORD),
        ("X-Forwarded-User", &format!("user:{BEARER}")),
        ("X-Request-Id", "r-1"),
        ("X-Request-Id", "r-2"),
    ]);
    let event = parse_query(
        &source,
        &h,
        &format!("token={gitlab_token}&team=ops"),
        br#"{"object_kind":"push"}"#,
    )
    .expect("parses");
    let names: Vec<&str> = event.headers.keys().map(String::as_str).collect();
    assert_eq!(names, ["content-type", "x-gitlab-event", "x-request-id"]);
    assert_eq!(event.headers["x-request-id"], "r-1, r-2");
    assert_eq!(event.query.get("team").map(String::as_str), Some("ops"));
    assert!(!event.query.contains_key("token"));
    let dump = format!("{event:?} {}", event.context(None).0);
    for secret in secrets {
        assert!(!dump.contains(secret), "event leaks {secret}");
    }
}

#[test]
fn configured_grafana_signature_header_is_stripped() {
    let source = Source {
        signature_header: Some("X-Relay-Signature".into()),
        ..with_secret(SourceKind::Grafana, "secret")
    };
    let h = headers(&[("X-Relay-Signature", "abc"), ("User-Agent", "Grafana")]);
    let event = parse(&source, &h, AM_MINIMAL.as_bytes()).expect("parses");
    assert_eq!(event.headers.keys().collect::<Vec<_>>(), ["user-agent"]);
}

// ---------------------------------------------------------------------------------------------
// json sources, headers and query

#[test]
fn json_event_name_comes_from_the_query() {
    let source = source(SourceKind::Json);
    let body = br#"{"title":"t"}"#;
    let event = parse_query(&source, &json_headers(), "event=deploy&env=prod%20cn", body).unwrap();
    assert_eq!(event.name, "deploy");
    assert_eq!(event.query["env"], "prod cn");
    assert_eq!(event.dedup_key, None);
    assert_eq!(event.alert_count(), None);
    let event = parse_query(&source, &json_headers(), "", body).unwrap();
    assert_eq!(event.name, "");
    assert!(event.query.is_empty());
}

// ---------------------------------------------------------------------------------------------
// template context

#[test]
fn context_has_payload_fields_and_reserved_names_win() {
    let source = source(SourceKind::Json);
    let body =
        br#"{"event":"from-body","source":"body","payload":1,"title":"Disk full","n":{"a":[1,2]}}"#;
    let h = headers(&[("Content-Type", "application/json"), ("X-Trace", "t-1")]);
    let event = parse_query(&source, &h, "event=disk", body).unwrap();
    let (context, omitted) = event.context(None);
    assert_eq!(omitted, 0);
    assert_eq!(context["title"], "Disk full");
    assert_eq!(context["n"]["a"][1], 2);
    assert_eq!(context["event"], "disk");
    assert_eq!(context["source"], "test-json");
    assert_eq!(context["headers"]["x-trace"], "t-1");
    assert_eq!(context["query"]["event"], "disk");
    assert_eq!(
        context["payload"],
        serde_json::from_slice::<Value>(body).unwrap()
    );
    assert_eq!(context["payload"]["event"], "from-body");
    assert!(
        context.get("alerts").is_none(),
        "no alert names for json sources"
    );
}

fn alert(i: usize, status: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": format!("A{i}")},
        "startsAt": "2025-01-01T00:00:00Z",
        "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2025-01-01T01:00:00Z" },
        "fingerprint": format!("{i:016x}"),
    })
}

fn alert_event(statuses: &[&str]) -> Event {
    let alerts: Vec<Value> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| alert(i, s))
        .collect();
    let body =
        json!({"version": "4", "groupKey": "g", "alerts": alerts, "commonAnnotations": null});
    parse(
        &source(SourceKind::Alertmanager),
        &json_headers(),
        body.to_string().as_bytes(),
    )
    .unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn context_shortens_alerts_consistently() {
    // 3 resolved, then 4 firing, then 1 resolved
    let event = alert_event(&[
        "resolved", "resolved", "resolved", "firing", "firing", "firing", "firing", "resolved",
    ]);
    assert_eq!(event.alert_count(), Some(8));
    assert_eq!(event.name, "firing");

    let (all, omitted) = event.context(None);
    assert_eq!(omitted, 0);
    assert_eq!(all["omitted_alerts"], 0);
    assert_eq!(names(&all["alerts"]).len(), 8);
    assert_eq!(names(&all["firing"]), ["A3", "A4", "A5", "A6"]);
    assert_eq!(names(&all["resolved"]), ["A0", "A1", "A2", "A7"]);

    // firing alerts are kept first; `alerts` is the shown set in payload order
    let (short, omitted) = event.context(Some(5));
    assert_eq!(omitted, 3);
    assert_eq!(short["omitted_alerts"], 3);
    assert_eq!(names(&short["firing"]), ["A3", "A4", "A5", "A6"]);
    assert_eq!(names(&short["resolved"]), ["A0"]);
    assert_eq!(names(&short["alerts"]), ["A0", "A3", "A4", "A5", "A6"]);

    let (tiny, omitted) = event.context(Some(2));
    assert_eq!(omitted, 6);
    assert_eq!(names(&tiny["firing"]), ["A3", "A4"]);
    assert!(names(&tiny["resolved"]).is_empty());
    assert_eq!(names(&tiny["alerts"]), ["A3", "A4"]);

    let (none, omitted) = event.context(Some(0));
    assert_eq!(omitted, 8);
    assert!(names(&none["alerts"]).is_empty());

    // the payload itself is never shortened
    assert_eq!(tiny["payload"]["alerts"].as_array().unwrap().len(), 8);

    for limit in 0..10 {
        let (c, omitted) = event.context(Some(limit));
        let shown = c["alerts"].as_array().unwrap().len();
        let firing = c["firing"].as_array().unwrap().len();
        let resolved = c["resolved"].as_array().unwrap().len();
        assert_eq!(firing + resolved, shown);
        assert!(shown <= limit);
        assert_eq!(shown + omitted, 8);
    }
}

#[test]
fn context_fills_alert_defaults() {
    let body = br#"{"version":"4","commonAnnotations":null,"alerts":[
        {"labels":{"alertname":"X"},"endsAt":"0001-01-01T00:00:00Z"},
        {"status":"resolved","annotations":null}]}"#;
    let event = parse(&source(SourceKind::Alertmanager), &json_headers(), body).unwrap();
    let (context, _) = event.context(None);
    assert_eq!(context["status"], "firing");
    assert_eq!(context["commonAnnotations"], json!({}));
    assert_eq!(context["commonLabels"], json!({}));
    assert_eq!(context["groupKey"], "");
    assert_eq!(context["truncatedAlerts"], 0);
    assert_eq!(context["alerts"][0]["status"], "firing");
    assert_eq!(context["alerts"][0]["annotations"], json!({}));
    assert_eq!(context["alerts"][1]["labels"], json!({}));
    assert_eq!(context["payload"]["commonAnnotations"], Value::Null);
    assert!(context["payload"]["alerts"][0].get("status").is_none());
}

// ---------------------------------------------------------------------------------------------
// built-in examples

#[test]
fn every_example_parses_with_its_kind() {
    let expected: [(SourceKind, &[&str]); 5] = [
        (SourceKind::Alertmanager, &["firing", "resolved"]),
        (SourceKind::Grafana, &["firing", "resolved"]),
        (
            SourceKind::Github,
            &[
                "ping",
                "push",
                "pull_request.opened",
                "pull_request.merged",
                "issues.opened",
                "release.published",
                "workflow_run.failure",
                "workflow_job.failure",
                "issue_comment.created",
                "create.tag",
            ],
        ),
        (
            SourceKind::Gitlab,
            &[
                "push",
                "merge_request",
                "pipeline.failed",
                "issue",
                "tag_push",
                "note",
                "build.failed",
                "deployment.failed",
                "release",
            ],
        ),
        (SourceKind::Json, &["generic"]),
    ];
    for (kind, names) in expected {
        let examples = examples::for_kind(kind);
        assert_eq!(
            examples.iter().map(|e| e.name).collect::<Vec<_>>(),
            names,
            "{kind}"
        );
        for example in examples {
            let headers = example.header_map();
            assert_eq!(
                headers.len(),
                example.headers.len(),
                "{kind} {}",
                example.name
            );
            let event = parse(&source(kind), &headers, example.body.as_bytes())
                .unwrap_or_else(|e| panic!("{kind} {}: {e}", example.name));
            let prefix = example.name.split('.').next().unwrap();
            match kind {
                SourceKind::Alertmanager | SourceKind::Grafana => {
                    assert_eq!(event.name, example.name);
                }
                SourceKind::Github | SourceKind::Gitlab => assert_eq!(event.name, prefix),
                SourceKind::Json => assert_eq!(event.name, ""),
            }
            assert_eq!(event.ignored.is_some(), example.name == "ping");
            if matches!(kind, SourceKind::Github | SourceKind::Gitlab) {
                assert!(event.dedup_key.is_some(), "{kind} {}", example.name);
            }
            let (context, _) = event.context(Some(10));
            assert!(context["payload"].is_object());
        }
    }
}

#[test]
fn examples_have_the_promised_shapes() {
    let find = |kind, name: &str| {
        let example = examples::for_kind(kind)
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{kind} {name}"));
        serde_json::from_str::<Value>(example.body).expect("example JSON")
    };
    let firing = find(SourceKind::Alertmanager, "firing");
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3);
    for alert in alerts {
        for label in ["severity", "alertname", "instance", "job"] {
            assert!(alert["labels"][label].is_string(), "{label}");
        }
        assert!(alert["annotations"]["summary"].is_string());
        assert!(alert["annotations"]["description"].is_string());
        assert!(alert["generatorURL"].is_string());
    }
    assert!(firing["commonLabels"]["alertname"].is_string());

    let grafana = find(SourceKind::Grafana, "firing");
    for key in ["dashboardURL", "panelURL", "silenceURL"] {
        assert!(
            grafana["alerts"][0][key]
                .as_str()
                .is_some_and(|u| u.starts_with("https://"))
        );
    }
    assert!(grafana["alerts"][0]["values"].is_object());
    assert_eq!(find(SourceKind::Grafana, "resolved")["state"], "ok");

    assert_eq!(
        find(SourceKind::Github, "push")["commits"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let merged = find(SourceKind::Github, "pull_request.merged");
    assert_eq!(merged["action"], "closed");
    assert_eq!(merged["pull_request"]["merged"], true);
    assert_eq!(
        find(SourceKind::Github, "pull_request.opened")["action"],
        "opened"
    );
    assert_eq!(
        find(SourceKind::Github, "issues.opened")["action"],
        "opened"
    );
    assert_eq!(
        find(SourceKind::Github, "release.published")["action"],
        "published"
    );
    let run = find(SourceKind::Github, "workflow_run.failure");
    assert_eq!(run["action"], "completed");
    assert_eq!(run["workflow_run"]["conclusion"], "failure");

    assert_eq!(
        find(SourceKind::Gitlab, "pipeline.failed")["object_attributes"]["status"],
        "failed"
    );
    let generic = find(SourceKind::Json, "generic");
    for key in ["title", "text", "status", "url", "level"] {
        assert!(generic[key].is_string(), "{key}");
    }
}

// ---------------------------------------------------------------------------------------------
// docs/templates.md's "Template context": the documented expressions work on the built-in examples

#[test]
fn documented_expressions_render_on_the_examples() {
    let cases: &[(SourceKind, &str, &str, &str)] = &[
        (
            SourceKind::Alertmanager,
            "firing",
            "{{ commonLabels.alertname }}",
            "HighErrorRate",
        ),
        (
            SourceKind::Alertmanager,
            "firing",
            "{{ event }}/{{ status }}/{{ source }}",
            "firing/firing/test-alertmanager",
        ),
        (
            SourceKind::Alertmanager,
            "firing",
            "{{ firing | length }} firing, {{ resolved | length }} resolved",
            "3 firing, 0 resolved",
        ),
        (
            SourceKind::Alertmanager,
            "firing",
            "{% for a in alerts %}{{ a.labels.instance }} {% endfor %}",
            "api-1.prod.example.com:9090 api-2.prod.example.com:9090 api-3.prod.example.com:9090 ",
        ),
        (
            SourceKind::Alertmanager,
            "resolved",
            "{{ commonAnnotations.summary }}",
            "Disk almost full on db-1 (/var/lib/postgresql)",
        ),
        (
            SourceKind::Alertmanager,
            "firing",
            "{{ headers[\"user-agent\"] }}",
            "Alertmanager/0.28.1",
        ),
        (
            SourceKind::Grafana,
            "firing",
            "{% for a in firing %}{{ a.values.A }} {{ a.panelURL }}{% endfor %}",
            "1523 https://grafana.example.com/d/queues01?orgId=1&viewPanel=4",
        ),
        (
            SourceKind::Grafana,
            "firing",
            "{{ commonLabels.grafana_folder }}",
            "Platform",
        ),
        (
            SourceKind::Grafana,
            "resolved",
            "{{ event }} {{ state }}",
            "resolved ok",
        ),
        (
            SourceKind::Github,
            "push",
            "{{ pusher.name }} pushed {{ commits | length }} commits to {{ ref | replace(\"refs/heads/\", \"\") }}",
            "lin-wei pushed 2 commits to main",
        ),
        (
            SourceKind::Github,
            "pull_request.merged",
            "{% if event == \"pull_request\" and action == \"closed\" and pull_request.merged %}true{% else %}false{% endif %}",
            "true",
        ),
        (
            SourceKind::Github,
            "pull_request.opened",
            "{% if event == \"pull_request\" and action == \"closed\" and pull_request.merged %}true{% else %}false{% endif %}",
            "false",
        ),
        (
            SourceKind::Github,
            "pull_request.opened",
            "[{{ pull_request.title }}]({{ pull_request.html_url }})",
            "[Retry payment capture on gateway 502](https://github.com/example-org/shop/pull/482)",
        ),
        (
            SourceKind::Github,
            "issues.opened",
            "#{{ issue.number }} {{ issue.title }}",
            "#483 Coupon codes with lowercase letters are rejected",
        ),
        (
            SourceKind::Github,
            "release.published",
            "Released {{ release.tag_name }}",
            "Released v2.14.0",
        ),
        (
            SourceKind::Github,
            "workflow_run.failure",
            "{% if event == \"workflow_run\" and workflow_run.conclusion == \"failure\" %}true{% else %}false{% endif %}",
            "true",
        ),
        (
            SourceKind::Github,
            "ping",
            "{{ repository.full_name }} {{ sender.login }}",
            "example-org/shop lin-wei",
        ),
        (
            SourceKind::Gitlab,
            "push",
            "{{ user_name }} pushed {{ total_commits_count }} commits to {{ project.path_with_namespace }}",
            "Chen Jing pushed 2 commits to finance/billing",
        ),
        (
            SourceKind::Gitlab,
            "tag_push",
            "{{ ref | replace(\"refs/tags/\", \"\") }}",
            "v3.8.0",
        ),
        (
            SourceKind::Gitlab,
            "merge_request",
            "{% if event == \"merge_request\" and object_attributes.action == \"open\" %}true{% else %}false{% endif %}",
            "true",
        ),
        (
            SourceKind::Gitlab,
            "pipeline.failed",
            "{% for b in builds if b.status == \"failed\" %}{{ b.stage }}/{{ b.name }} {% endfor %}",
            "test/unit-tests ",
        ),
        (
            SourceKind::Gitlab,
            "issue",
            "[{{ object_attributes.title }}]({{ object_attributes.url }})",
            "[Invoice PDF shows the wrong tax rate for Hong Kong customers](https://gitlab.example.com/finance/billing/-/issues/91)",
        ),
        (
            SourceKind::Json,
            "generic",
            "{{ title }} / {% if level == \"error\" %}true{% endif %} / {{ query.env | default(\"prod\") }} / {{ payload.title }}",
            "Nightly backup failed / true / prod / Nightly backup failed",
        ),
    ];
    let env = minijinja::Environment::new();
    for (kind, name, template, expected) in cases {
        let example = examples::for_kind(*kind)
            .iter()
            .find(|e| e.name == *name)
            .unwrap_or_else(|| panic!("{kind} {name}"));
        let event = parse(
            &source(*kind),
            &example.header_map(),
            example.body.as_bytes(),
        )
        .unwrap();
        let (context, _) = event.context(None);
        let rendered = env
            .render_str(template, minijinja::value::Serde(&context))
            .unwrap_or_else(|e| panic!("{kind} {name} `{template}`: {e}"));
        assert_eq!(&rendered, expected, "{kind} {name} `{template}`");
    }
}

//! Micro-benchmarks of the hot paths, on real payloads through the shipped rules.yaml.
//!
//! `cargo bench --bench hot_paths` (about a minute); results and machine in docs/benchmarks.md.
//! Under `cargo test --all-targets` this file is only compiled.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dingrelay::config::Config;
use dingrelay::dingtalk::sign::signed_url;
use dingrelay::outbox::StoredEvent;
use dingrelay::routing::route_event;
use dingrelay::source::Inbound;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use sha2::Sha256;

const GITHUB_SECRET: &str = "bench-github-webhook-secret";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_text() -> String {
    std::fs::read_to_string(root().join("rules.yaml")).expect("rules.yaml is readable")
}

/// The shipped rules.yaml as a fresh clone has it (every `${VAR:-}` empty), except the GitHub
/// secret when `github_secret` is set.
fn shipped(text: &str, github_secret: bool) -> Config {
    let lookup = move |name: &str| {
        (github_secret && name == "GITHUB_WEBHOOK_SECRET").then(|| GITHUB_SECRET.to_owned())
    };
    Config::parse("rules.yaml", text, &root(), &lookup).expect("the shipped rules.yaml loads")
}

fn corpus(file: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures/corpus").join(file)).expect("corpus file")
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// Parse + match + render + validate one payload: what intake does per request before the
/// outbox.
fn render(c: &mut Criterion) {
    let config = shipped(&rules_text(), false);
    let now: jiff::Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
    let mut github_headers = json_headers();
    github_headers.insert("x-github-event", HeaderValue::from_static("push"));
    let cases = [
        (
            "render/alertmanager_2_alerts",
            "alertmanager",
            "alertmanager/msteams.prom_post_request_2_alerts.json",
            json_headers(),
        ),
        (
            "render/alertmanager_12_alerts",
            "alertmanager",
            "alertmanager/msteams.prom_post_request_12_alerts.json",
            json_headers(),
        ),
        (
            "render/github_push",
            "github",
            "github/push.with-new-branch.json",
            github_headers,
        ),
    ];
    for (name, source, file, headers) in cases {
        let source = &config.sources[source];
        let body = corpus(file);
        let inbound = Inbound {
            headers: &headers,
            query: "",
            body: &body,
        };
        // Once outside the loop: the payload must give at least one valid message, so the bench
        // measures rendering and not an early "no rule matched".
        let event = source.parse(&inbound).expect("the payload parses");
        let routing = config.rules.route(&event, now);
        assert!(routing.errors.is_empty(), "{file}: the rules fail");
        assert!(!routing.messages.is_empty(), "{file}: no message");
        c.bench_function(name, |b| {
            b.iter(|| {
                let event = source.parse(black_box(&inbound)).unwrap();
                black_box(config.rules.route(&event, now))
            });
        });
    }
}

/// 加签: the signed URL of one attempt.
fn sign(c: &mut Criterion) {
    let webhook = url::Url::parse(
        "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    let secret = SecretString::from(
        "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
    );
    c.bench_function("sign/signed_url", |b| {
        b.iter(|| {
            black_box(signed_url(
                black_box(&webhook),
                Some(&secret),
                black_box(1_795_939_200_000),
            ))
        });
    });
}

/// GitHub's X-Hub-Signature-256 over a real push body (7 KB).
fn verify(c: &mut Criterion) {
    let config = shipped(&rules_text(), true);
    let source = &config.sources["github"];
    let body = corpus("github/push.with-new-branch.json");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut headers = json_headers();
    headers.insert("x-github-event", HeaderValue::from_static("push"));
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&signature).unwrap(),
    );
    let inbound = Inbound {
        headers: &headers,
        query: "",
        body: &body,
    };
    let now = jiff::Timestamp::now();
    source
        .verify(&inbound, now)
        .expect("the signature verifies");
    c.bench_function("verify/github_signature", |b| {
        b.iter(|| source.verify(black_box(&inbound), now).unwrap());
    });
}

/// Loading and compiling the shipped rules.yaml (start-up and every reload).
fn load(c: &mut Criterion) {
    let text = rules_text();
    let base = root();
    let base: &Path = &base;
    c.bench_function("config/parse_shipped_rules", |b| {
        b.iter(|| {
            black_box(Config::parse("rules.yaml", black_box(&text), base, &|_| None).unwrap())
        });
    });
}

/// Routing a stored event, as the router does: parse it again, run the rules, build the rows.
/// The target is at most 100 µs of CPU for the 12-alert event.
fn route(c: &mut Criterion) {
    let config = shipped(&rules_text(), false);
    for (name, file) in [
        (
            "routing/route_event_alertmanager_2_alerts",
            "alertmanager/msteams.prom_post_request_2_alerts.json",
        ),
        (
            "routing/route_event_alertmanager_12_alerts",
            "alertmanager/msteams.prom_post_request_12_alerts.json",
        ),
    ] {
        let stored = StoredEvent {
            id: 1,
            source: "alertmanager".to_owned(),
            name: "firing".to_owned(),
            dedup_key: Some("key".to_owned()),
            received_at: 1_795_507_200_000,
            routings: 0,
            headers: [("content-type".to_owned(), "application/json".to_owned())].into(),
            query: String::new(),
            body: corpus(file),
        };
        let routed = route_event(&config, &stored, 1_795_507_200_000);
        assert!(
            routed.outcome.failures.is_empty() && !routed.messages.is_empty(),
            "{file}: {:?}",
            routed.outcome
        );
        c.bench_function(name, |b| {
            b.iter(|| black_box(route_event(&config, black_box(&stored), 1_795_507_200_000)));
        });
    }
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = short();
    targets = render, route, sign, verify, load
}
criterion_main!(benches);

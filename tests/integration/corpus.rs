//! Every real payload of the corpus (tests/fixtures/corpus, origins and licences in its
//! SOURCES.txt) through the shipped rules.yaml: each gives valid messages or a clear "no rule
//! matched", and the non-conforming legacy Alertmanager payloads give a clear error.

use std::path::Path;

use dingrelay::config::Config;
use dingrelay::dingtalk::MAX_BODY_BYTES;
use dingrelay::dingtalk::validate::encoded_len;
use dingrelay::source::{Inbound, SourceKind};

use crate::support::corpus;

fn shipped_config() -> Config {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules.yaml"))
        .expect("rules.yaml is readable");
    // No variable set: the shipped file must work as a fresh clone has it.
    Config::parse(
        "rules.yaml",
        &text,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("the shipped rules.yaml loads:\n{e}"))
}

#[test]
fn every_corpus_payload_renders_valid_messages_or_matches_no_rule() {
    let config = shipped_config();
    let now: jiff::Timestamp = "2026-11-24T08:00:00Z".parse().unwrap();
    let mut rendered = 0;
    let mut unmatched = 0;
    let mut by_type = std::collections::BTreeMap::<&str, usize>::new();
    for (dir, kind) in [
        ("alertmanager", SourceKind::Alertmanager),
        ("grafana", SourceKind::Grafana),
        ("github", SourceKind::Github),
        ("gitlab", SourceKind::Gitlab),
    ] {
        let source = config.sources.values().find(|s| s.kind == kind).unwrap();
        let files = corpus::files(dir);
        assert!(!files.is_empty(), "{dir} has payloads");
        for file in files {
            let body = corpus::read(&file);
            let headers = corpus::headers(&file);
            let inbound = Inbound {
                headers: &headers,
                query: "",
                body: &body,
            };
            let event = match source.parse(&inbound) {
                Ok(event) => event,
                Err(rejection) => panic!("{file}: refused: {rejection}"),
            };
            if event.ignored.is_some() {
                continue;
            }
            let routing = config.rules.route(&event, now);
            assert!(
                routing.errors.is_empty(),
                "{file}: rules failed: {:?}",
                routing
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            );
            if routing.messages.is_empty() {
                assert!(
                    !routing.skipped.is_empty(),
                    "{file}: says which conditions were false"
                );
                unmatched += 1;
            }
            for delivery in &routing.messages {
                let len = encoded_len(&delivery.message);
                assert!(len <= MAX_BODY_BYTES, "{file}: {len} bytes");
                *by_type.entry(delivery.message.body.msgtype()).or_default() += 1;
                rendered += 1;
            }
        }
    }
    // The corpus exercises the shipped rules broadly, not just "nothing failed".
    assert!(rendered >= 40, "only {rendered} messages rendered");
    assert!(unmatched >= 10, "only {unmatched} payloads matched nothing");
    // Alerts, pushes, pull requests and failures read best as different types.
    assert!(by_type.len() >= 3, "message types used: {by_type:?}");
}

#[test]
fn legacy_alertmanager_payloads_get_a_clear_error() {
    let config = shipped_config();
    let source = &config.sources["alertmanager"];
    let files = corpus::files("alertmanager/legacy");
    assert_eq!(files.len(), 3);
    for file in files {
        let body = corpus::read(&file);
        let headers = corpus::headers(&file);
        let inbound = Inbound {
            headers: &headers,
            query: "",
            body: &body,
        };
        let error = source.parse(&inbound).expect_err(&file).to_string();
        assert!(error.contains("version"), "{file}: {error}");
    }
}

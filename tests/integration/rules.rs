//! The rules engine: which rules fire, what they render, and how a too-long alert message is
//! shortened.

use std::path::Path;

use dingrelay::config::Config;
use dingrelay::dingtalk::validate::encoded_len;
use dingrelay::dingtalk::{MAX_BODY_BYTES, MessageBody};
use dingrelay::rules::SkipReason;
use dingrelay::source::{Event, Inbound};
use http::{HeaderMap, HeaderValue};
use serde_json::json;

fn config(text: &str) -> Config {
    Config::parse("rules.yaml", text, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("config loads:\n{e}"))
}

fn now() -> jiff::Timestamp {
    "2026-11-24T08:00:00Z".parse().unwrap()
}

fn event(config: &Config, source: &str, body: &serde_json::Value, query: &str) -> Event {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(body).unwrap();
    let inbound = Inbound {
        headers: &headers,
        query,
        body: &body,
    };
    config.sources[source]
        .parse(&inbound)
        .expect("payload parses")
}

fn alert(i: usize, status: &str, description: &str) -> serde_json::Value {
    json!({
        "status": status,
        "labels": { "alertname": "DiskFull", "instance": format!("db-{i}"), "severity": "critical" },
        "annotations": { "description": description },
        "startsAt": "2026-11-24T04:48:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": format!("{i:016x}"),
    })
}

fn am_payload(alerts: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "version": "4", "status": "firing", "receiver": "ops", "groupKey": "{}:{alertname=\"DiskFull\"}",
        "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {"alertname": "DiskFull", "owner": "13800001111"},
        "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts,
    })
}

const HEAD: &str = r#"
robots:
  ops: { webhook: log }
  dev: { webhook: log, keywords: [告警] }
sources:
  am: { kind: alertmanager }
  ci: { kind: json }
rules:
"#;

#[test]
fn every_matching_rule_fires_in_order_until_one_stops() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: first
    source: ci
    to: ops
    text: { content: "first {{ n }}" }
  - name: only-big
    source: ci
    when: n > 10
    to: ops
    text: { content: "big {{ n }}" }
  - name: stopper
    source: ci
    when: stop_here
    stop: true
    to: [ops]
    text: { content: "stop" }
  - name: last
    source: ci
    to: ops
    text: { content: "last" }
  - name: other-source
    source: am
    to: ops
    text: { content: "never for ci" }
"#
    ));
    let routing = config
        .rules
        .route(&event(&config, "ci", &json!({"n": 3}), ""), now());
    let fired: Vec<&str> = routing.messages.iter().map(|d| d.rule.as_str()).collect();
    assert_eq!(fired, ["first", "last"]);
    assert_eq!(routing.skipped.len(), 2);
    assert_eq!(
        routing.skipped[0].reason,
        SkipReason::ConditionFalse {
            when: "n > 10".into()
        }
    );
    assert!(
        routing.skipped[0]
            .to_string()
            .contains("condition is false: n > 10")
    );

    let routing = config.rules.route(
        &event(&config, "ci", &json!({"n": 30, "stop_here": true}), ""),
        now(),
    );
    let fired: Vec<&str> = routing.messages.iter().map(|d| d.rule.as_str()).collect();
    assert_eq!(fired, ["first", "only-big", "stopper"]);
    assert_eq!(
        routing.skipped,
        vec![dingrelay::rules::Skipped {
            rule: "last".into(),
            reason: SkipReason::StoppedBy {
                rule: "stopper".into()
            }
        }]
    );
}

#[test]
fn a_rule_sends_to_each_robot_and_is_validated_per_robot() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: both
    source: ci
    to: [ops, dev]
    markdown: { title: "{{ title }}", text: "{{ text }}" }
"#
    ));
    let ok = config.rules.route(
        &event(
            &config,
            "ci",
            &json!({"title": "告警 disk", "text": "full"}),
            "",
        ),
        now(),
    );
    assert!(ok.errors.is_empty(), "{:?}", ok.errors);
    assert_eq!(ok.messages.len(), 2);

    // `dev` requires a keyword the message lacks: it carries its own, in front of the title;
    // `ops` (no keywords) gets the message as rendered.
    let tagged = config.rules.route(
        &event(&config, "ci", &json!({"title": "disk", "text": "full"}), ""),
        now(),
    );
    assert!(tagged.errors.is_empty(), "{:?}", tagged.errors);
    let titles: Vec<(&str, &str)> = tagged
        .messages
        .iter()
        .map(|d| (d.robot.name.as_str(), d.message.body.title().unwrap()))
        .collect();
    assert_eq!(titles, [("ops", "disk"), ("dev", "【告警】disk")]);

    // An empty required field names the DingTalk field.
    let empty = config
        .rules
        .route(&event(&config, "ci", &json!({"text": "x"}), ""), now());
    let error = empty.errors[0].to_string();
    assert!(error.contains("markdown.title"), "{error}");
}

#[test]
fn mentions_come_from_templates_and_are_written_into_the_text() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: mention
    source: ci
    to: ops
    text: { content: "deploy failed" }
    at:
      mobiles: ["{{ owners }}", "{{ missing_label }}"]
      user_ids: ["manager01"]
      all: "{{ critical }}"
"#
    ));
    let routing = config.rules.route(
        &event(
            &config,
            "ci",
            &json!({"owners": "13800001111, 13900002222", "critical": false}),
            "",
        ),
        now(),
    );
    let message = &routing.messages[0].message;
    let at = message.at.as_ref().unwrap();
    assert_eq!(at.at_mobiles, ["13800001111", "13900002222"]);
    assert_eq!(at.at_user_ids, ["manager01"]);
    assert!(!at.is_at_all);
    let MessageBody::Text { text } = &message.body else {
        panic!()
    };
    for id in ["@13800001111", "@13900002222", "@manager01"] {
        assert!(text.content.contains(id), "{}", text.content);
    }

    let bad = config.rules.route(
        &event(&config, "ci", &json!({"critical": "maybe"}), ""),
        now(),
    );
    assert!(
        bad.errors[0].to_string().contains("at.all"),
        "{:?}",
        bad.errors
    );
}

#[test]
fn feed_card_links_come_from_a_list() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: feed
    source: ci
    to: ops
    feed_card:
      each: items
      max_links: 2
      link: { title: "{{ item.t }}", message_url: "{{ item.u }}", pic_url: "https://p/{{ item.t }}.png" }
"#
    ));
    let items = json!({"items": [{"t": "a", "u": "https://x/a"}, {"t": "b", "u": "https://x/b"}, {"t": "c", "u": "https://x/c"}]});
    let routing = config.rules.route(&event(&config, "ci", &items, ""), now());
    let json = serde_json::to_value(&routing.messages[0].message).unwrap();
    assert_eq!(
        json,
        json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "a", "messageURL": "https://x/a", "picURL": "https://p/a.png"},
            {"title": "b", "messageURL": "https://x/b", "picURL": "https://p/b.png"},
        ]}})
    );
}

#[test]
fn a_too_long_alert_message_keeps_the_alerts_that_fit_and_says_how_many_more() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: alerts
    source: am
    to: ops
    markdown:
      title: "{{ commonLabels.alertname }}"
      text: |
        {% for alert in alerts %}
        - {{ alert.labels.instance }}: {{ alert.annotations.description }}, firing for {{ alert.startsAt | since }}
        {% endfor %}
    at: { mobiles: ["{{ commonLabels.owner }}"] }
"#
    ));
    // 200 alerts with 300 bytes of Chinese each: about 60 kB, three times the limit.
    let description = "磁盘已满".repeat(25);
    let alerts = (0..200).map(|i| alert(i, "firing", &description)).collect();
    let routing = config
        .rules
        .route(&event(&config, "am", &am_payload(alerts), ""), now());
    assert!(routing.errors.is_empty(), "{:?}", routing.errors);
    let delivery = &routing.messages[0];
    let MessageBody::Markdown { markdown } = &delivery.message.body else {
        panic!()
    };

    assert!(encoded_len(&delivery.message) <= MAX_BODY_BYTES);
    let shown = markdown.text.matches("firing for 3h 12m").count();
    assert!(shown > 30 && shown < 200, "{shown} alerts shown");
    assert_eq!(delivery.omitted_alerts, 200 - shown);
    assert!(
        markdown
            .text
            .contains(&format!("...and {} more alerts", 200 - shown)),
        "{}",
        &markdown.text[markdown.text.len() - 200..]
    );
    // The alerts were shortened, not cut by bytes, and the mention survived.
    assert_eq!(delivery.cut_bytes, 0);
    assert!(
        markdown.text.ends_with("@13800001111"),
        "{}",
        &markdown.text[markdown.text.len() - 100..]
    );
    // As many as fit: one more alert would not.
    assert!(encoded_len(&delivery.message) + 300 * 2 > MAX_BODY_BYTES - 64);
}

#[test]
fn a_too_long_json_message_is_cut_by_bytes_with_a_marker() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: long
    source: ci
    to: ops
    text: { content: "{{ log }}" }
"#
    ));
    let log = "错误日志 line\n".repeat(3000);
    let routing = config
        .rules
        .route(&event(&config, "ci", &json!({ "log": log }), ""), now());
    let delivery = &routing.messages[0];
    assert!(delivery.cut_bytes > 20_000, "{}", delivery.cut_bytes);
    assert!(encoded_len(&delivery.message) <= MAX_BODY_BYTES);
    let MessageBody::Text { text } = &delivery.message.body else {
        panic!()
    };
    assert!(
        text.content.contains("more bytes cut"),
        "{}",
        &text.content[text.content.len() - 80..]
    );
}

#[test]
fn a_condition_that_cannot_be_evaluated_is_an_error_not_a_silent_skip() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: bad-when
    source: ci
    when: n is divisibleby(0)
    to: ops
    text: { content: "x" }
"#
    ));
    let routing = config
        .rules
        .route(&event(&config, "ci", &json!({"n": 3}), ""), now());
    assert!(routing.messages.is_empty());
    assert_eq!(routing.errors.len(), 1, "{routing:?}");
    assert!(routing.errors[0].to_string().contains("rule `bad-when`"));
}

#[test]
fn per_alert_sends_one_message_per_alert() {
    let config = config(&format!(
        "{HEAD}{}",
        r#"
  - name: each
    source: am
    per_alert: true
    to: ops
    text: { content: "{{ status }}: {{ alerts | length }} {{ alerts[0].labels.instance }}" }
"#
    ));
    let mut alerts: Vec<_> = (0..3).map(|i| alert(i, "firing", "d")).collect();
    alerts[2]["status"] = json!("resolved");
    let routing = config
        .rules
        .route(&event(&config, "am", &am_payload(alerts), ""), now());
    let texts: Vec<String> = routing
        .messages
        .iter()
        .map(|d| match &d.message.body {
            MessageBody::Text { text } => text.content.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        texts,
        ["firing: 1 db-0", "firing: 1 db-1", "resolved: 1 db-2"]
    );
    let parts: Vec<_> = routing
        .messages
        .iter()
        .map(|d| d.part.clone().unwrap())
        .collect();
    assert_eq!(
        parts,
        ["0000000000000000", "0000000000000001", "0000000000000002"]
    );

    // Only for alert sources.
    let error = Config::parse(
        "rules.yaml",
        &format!("{HEAD}  - {{ name: x, source: ci, per_alert: true, to: ops, text: {{ content: x }} }}\n"),
        Path::new("."),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("per_alert"), "{error}");
}

//! The daemon end to end, against an in-process stand-in for DingTalk that behaves like
//! shared/tools/mock-dingtalk (crates/mock-dingtalk): signatures, keywords, required
//! fields, 20 per minute with the 10-minute block, faults.
//!
//! Tests that count time run under tokio's paused clock with the stand-in as the transport (no
//! socket), so ten minutes of DingTalk behaviour take no real time. One test goes through real
//! sockets and the real HTTP client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use dingrelay::clock::Clock;
use dingrelay::config::Config;
use dingrelay::daemon::{Daemon, Services};
use dingrelay::delivery::transport::{HttpTransport, Transport};
use dingrelay::metrics::Metrics;
use dingrelay::outbox::{Admin, FILE_NAME, State};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::mock_dingtalk::{Fault, MockDingTalk, MockTransport, webhook_url};
use crate::support::output::SharedBuffer;

const TOKEN: &str = "robot-token-1";
const SECRET: &str = "SECmock0123456789";
const BEARER: &str = "am-bearer-s3cret";
/// 2026-11-24T08:00:00Z: the wall clock the paused tests start at.
const START_MS: i64 = 1_795_507_200_000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = crate::support::scratch_dir().join(format!(
        "dingrelay-serve-{}-{name}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A config with one signed robot (keyword 告警) at `webhook`, an Alertmanager source with a
/// bearer token, and a json source.
fn config_text(
    state_dir: &Path,
    webhook: &str,
    allow_host: &str,
    robot_extra: &str,
    top_extra: &str,
) -> String {
    format!(
        r#"
state_dir: {state_dir}
{top_extra}
robots:
  ops:
    webhook: "{webhook}"
    allow_host: "{allow_host}"
    secret: {SECRET}
    keywords: [告警]
{robot_extra}
sources:
  am: {{ kind: alertmanager, auth: {{ bearer: {BEARER} }} }}
  ci: {{ kind: json }}
rules:
  - name: alerts
    source: am
    to: ops
    markdown:
      title: "告警 {{{{ commonLabels.alertname }}}}"
      text: "{{% for a in alerts %}}- {{{{ a.labels.instance }}}}: {{{{ a.annotations.summary }}}}\n{{% endfor %}}"
  - name: ci
    source: ci
    to: ops
    markdown:
      title: "{{{{ title }}}}"
      text: "告警 {{{{ text }}}}"
"#,
        state_dir = state_dir.display()
    )
}

fn load(text: &str) -> Config {
    Config::parse("rules.yaml", text, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("config loads:\n{e}"))
}

fn alert_payload(instance: &str) -> Value {
    json!({
        "version": "4", "status": "firing", "receiver": "ops",
        "groupKey": format!("{{}}:{{instance=\"{instance}\"}}"),
        "groupLabels": {}, "commonLabels": {"alertname": "DiskFull", "instance": instance},
        "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": instance},
            "annotations": {"summary": format!("disk full on {instance}")},
            "startsAt": "2026-11-24T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": instance,
        }],
    })
}

/// The stand-in, run in-process on the same (paused) clock as the daemon.
struct Paused {
    daemon: Daemon,
    router: axum::Router,
    mock: MockDingTalk,
    state_dir: PathBuf,
}

async fn start_paused(mock: MockDingTalk, robot_extra: &str, top_extra: &str) -> Paused {
    start_paused_with(mock, |text| text.to_owned(), robot_extra, top_extra).await
}

/// [`start_paused`] on the harness config as `edit` changes it.
async fn start_paused_with(
    mock: MockDingTalk,
    edit: impl FnOnce(&str) -> String,
    robot_extra: &str,
    top_extra: &str,
) -> Paused {
    let clock = Clock::starting_at(START_MS);
    let mock = mock.clock(move || clock.now_ms());
    let state_dir = temp_dir("paused");
    let webhook = webhook_url("http://mock.test", TOKEN);
    let config = load(&edit(&config_text(
        &state_dir,
        &webhook,
        "mock.test",
        robot_extra,
        top_extra,
    )));
    let services = services(&mock, clock);
    let daemon = Daemon::start(config, services)
        .await
        .expect("daemon starts");
    let router = daemon.router();
    Paused {
        daemon,
        router,
        mock,
        state_dir,
    }
}

/// What the paused tests run a daemon with: `mock` as DingTalk, on `clock`, printing nothing.
fn services(mock: &MockDingTalk, clock: Clock) -> Services {
    Services {
        transport: Arc::new(MockTransport(mock.clone())) as Arc<dyn Transport>,
        clock,
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    }
}

async fn post(
    router: &axum::Router,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

const AUTH: (&str, &str) = ("authorization", "Bearer am-bearer-s3cret");
const JSON: (&str, &str) = ("content-type", "application/json");

async fn post_alert(router: &axum::Router, instance: &str) -> (StatusCode, Value) {
    post(
        router,
        "/hooks/am",
        &[AUTH, JSON],
        alert_payload(instance).to_string(),
    )
    .await
}

/// Every text of the recorded messages, for "does this alert appear somewhere".
fn delivered_text(mock: &MockDingTalk) -> String {
    mock.messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_200_alerts_stays_within_the_rate_and_everything_arrives() {
    let harness = start_paused(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        "",
        "",
    )
    .await;
    let start = tokio::time::Instant::now();
    for i in 0..200 {
        let (status, body) = post_alert(&harness.router, &format!("db-{i:03}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "accepted", "{body}");
    }
    // Three minutes of DingTalk time.
    tokio::time::sleep_until(start + Duration::from_secs(180)).await;

    let stats = harness.mock.stats();
    assert!(stats.max_in_window <= 20, "{stats:?}");
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(
        stats.by_errcode.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "{stats:?}"
    );
    let text = delivered_text(&harness.mock);
    let missing: Vec<String> = (0..200)
        .map(|i| format!("db-{i:03}"))
        .filter(|instance| !text.contains(&format!("disk full on {instance}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not delivered within 3 minutes: {missing:?}"
    );
    // Merged into digests, not 200 separate messages.
    assert!(stats.accepted < 20, "{stats:?}");
    let admin = Admin::open(&harness.state_dir).unwrap();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_500s_html_and_timeouts_loses_nothing_and_keeps_order() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused(mock, "    digest: false", "send_timeout: 5s").await;
    // DingTalk down: 500s, then HTML pages, then no answer at all, then the IP throttle's JSON.
    harness.mock.set_fault(Fault::Http500, None);
    for i in 0..5 {
        let (status, _) = post_alert(&harness.router, &format!("web-{i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for (fault, until) in [
        (Fault::Html, 3),
        (Fault::Hang, 5),
        (Fault::NoErrcodeJson, 7),
        (Fault::None, 8),
    ] {
        // Bounded, in DingTalk time: the worker keeps retrying with backoff.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        while harness.mock.stats().faults < until && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            harness.mock.messages().is_empty(),
            "nothing got through during the outage"
        );
        harness.mock.set_fault(fault, None);
    }
    // Back up: the backoff is capped at a minute, then 5 messages at 60/19 s each.
    tokio::time::sleep(Duration::from_secs(80)).await;

    let stats = harness.mock.stats();
    assert!(stats.faults >= 8, "the faults were hit: {stats:?}");
    let delivered: Vec<String> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body["markdown"]["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..5)
        .map(|i| format!("- web-{i}: disk full on web-{i}\n"))
        .collect();
    assert_eq!(delivered, expected, "every message once, in order");
    let admin = Admin::open(&harness.state_dir).unwrap();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    assert!(admin.list(Some(State::Dead), None).unwrap().is_empty());
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_security_refusal_is_dead_lettered_at_once_and_listed() {
    // The robot's real keyword is not the one the config declares: DingTalk answers 310000.
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["deploy"]);
    let harness = start_paused(mock, "", "").await;
    let (status, _) = post_alert(&harness.router, "db-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(600)).await;

    let stats = harness.mock.stats();
    assert_eq!(stats.requests, 1, "not retried: {stats:?}");
    assert_eq!(stats.by_errcode.get(&310000), Some(&1), "{stats:?}");
    let admin = Admin::open(&harness.state_dir).unwrap();
    let dead = admin.list(Some(State::Dead), None).unwrap();
    assert_eq!(dead.len(), 1);
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("310000") && error.contains("keyword"),
        "{error}"
    );

    // `outbox list` shows it with its error.
    let mut out = Vec::new();
    let code = dingrelay::cli::outbox::run(
        &harness.state_dir,
        &dingrelay::cli::outbox::OutboxCommand::List {
            robot: None,
            state: None,
        },
        &mut out,
        &mut std::io::stderr(),
    );
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dead") && out.contains("310000"), "{out}");
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn too_fast_pauses_the_robot_for_the_penalty_then_resumes() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused(mock, "    digest: false", "").await;
    harness.mock.set_fault(Fault::ErrCode(130101), Some(1));
    for i in 0..3 {
        post_alert(&harness.router, &format!("api-{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(590)).await;
    assert_eq!(
        harness.mock.stats().requests,
        1,
        "nothing is sent during the penalty"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = harness.mock.stats();
    assert_eq!(stats.accepted, 3, "resumed after the penalty: {stats:?}");
    assert_eq!(stats.by_errcode.get(&130101), Some(&1), "{stats:?}");
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_group_with_51_owners_is_accepted_and_sent_to_the_first_50() {
    // Each alert mentions its owner: 51 firing alerts would be 51 mentions.
    let mention_owners = |text: &str| {
        text.replace(
            "  - name: ci\n",
            "    at:\n      user_ids: [\"{{ alerts | map(attribute='labels.owner') | join(',') }}\"]\n  - name: ci\n",
        )
    };
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused_with(mock, mention_owners, "", "").await;
    let alerts: Vec<Value> = (0..51)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": "DiskFull", "instance": format!("db-{i}"), "owner": format!("owner{i}")},
                "annotations": {"summary": "disk full"},
                "startsAt": "2026-11-24T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": format!("fp{i}"),
            })
        })
        .collect();
    let payload = json!({
        "version": "4", "status": "firing", "receiver": "ops", "groupKey": "{}:{alertname=\"DiskFull\"}",
        "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts,
    });
    let (status, answer) = post(
        &harness.router,
        "/hooks/am",
        &[AUTH, JSON],
        payload.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");

    tokio::time::sleep(Duration::from_secs(30)).await;
    let messages = harness.mock.messages();
    assert_eq!(messages.len(), 1, "the group's message is delivered");
    let body = &messages[0].body;
    let mentioned = body["at"]["atUserIds"].as_array().expect("mentions").len();
    assert_eq!(mentioned, 50, "{body}");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("@owner49") && !text.contains("@owner50"),
        "{text}"
    );
    assert!(
        text.contains("1 more person not mentioned: DingTalk mentions at most 50 a message"),
        "{text}"
    );
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_alert_group_is_posted_once() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused(mock, "", "").await;
    let (_, first) = post_alert(&harness.router, "db-9").await;
    let (status, second) = post_alert(&harness.router, "db-9").await;
    assert_eq!(first["status"], "accepted", "{first}");
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        second,
        json!({ "status": "duplicate", "event": first["event"] }),
        "the earlier event is named"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(harness.mock.stats().accepted, 1);
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_a_status_with_a_reason_while_others_are_served() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused(mock, "", "body_limit: 4KiB").await;
    let router = &harness.router;
    let good = alert_payload("db-1").to_string();

    // (what, headers, body, expected status, a word of the reason)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        String,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "no auth",
            vec![JSON],
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            "wrong token",
            vec![("authorization", "Bearer nope"), JSON],
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "bearer",
        ),
        (
            "malformed",
            vec![AUTH, JSON],
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "JSON",
        ),
        (
            "not v4",
            vec![AUTH, JSON],
            json!({"version": "3", "alerts": []}).to_string(),
            StatusCode::BAD_REQUEST,
            "version",
        ),
        (
            "wrong type",
            vec![AUTH, ("content-type", "text/plain")],
            good.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (
            "oversized",
            vec![AUTH, JSON],
            "x".repeat(5000),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
    ];
    for (what, headers, body, status, reason) in cases {
        let (got, answer) = post(router, "/hooks/am", &headers, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["status"], "rejected", "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {answer}");
        assert!(
            !answer.to_string().contains(BEARER),
            "{what}: the token is not echoed"
        );
    }

    // A rule that cannot render a valid message is no fault of the request: accepted, and the
    // rule's robot gets a fallback naming the rule and the reason.
    let (status, answer) = post(
        router,
        "/hooks/ci",
        &[JSON],
        json!({"text": "x"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Meanwhile the daemon serves good requests.
    let (status, answer) = post_alert(router, "db-2").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(harness.mock.stats().accepted, 2);
    let texts: Vec<String> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect();
    assert!(texts.iter().all(|t| !t.contains("db-1")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("db-2")), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("rule `ci` failed") && t.contains("markdown.title")),
        "{texts:?}"
    );

    // The outbox gone: 503 so the sender retries.
    harness.daemon.outbox().clone().close().await;
    let (status, answer) = post_alert(router, "db-3").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["status"], "unavailable");
}

#[tokio::test(start_paused = true)]
async fn an_event_no_rule_matches_is_stored_with_why() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let state_dir = temp_dir("ignored");
    let text = config_text(
        &state_dir,
        &webhook_url("http://mock.test", TOKEN),
        "mock.test",
        "",
        "",
    )
    .replace(
        "  - name: ci\n    source: ci\n",
        "  - name: ci\n    source: ci\n    when: level == \"error\"\n",
    );
    let clock = Clock::starting_at(START_MS);
    let services = services(&mock, clock);
    let daemon = Daemon::start(load(&text), services).await.unwrap();
    let (status, answer) = post(
        &daemon.router(),
        "/hooks/ci",
        &[JSON],
        json!({"level": "info"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(mock.stats().accepted, 0);
    let outcome: String = rusqlite::Connection::open(state_dir.join(FILE_NAME))
        .unwrap()
        .query_row("SELECT outcome FROM events WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert!(
        outcome.contains("no rule matched (1 rule skipped): rule")
            && outcome.contains(r#"level == \"error\""#),
        "{outcome}"
    );
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_robot_prints_the_exact_signed_request() {
    let state_dir = temp_dir("dry");
    let text = config_text(&state_dir, "log", "x", "", "");
    let printed = SharedBuffer::default();
    let services = Services {
        transport: Arc::new(MockTransport(MockDingTalk::new())),
        clock: Clock::starting_at(START_MS),
        dry_run: Arc::new(Mutex::new(Box::new(printed.clone()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    };
    let daemon = Daemon::start(load(&text), services).await.unwrap();
    let (status, _) = post_alert(&daemon.router(), "db-7").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let printed = printed.text();
    let expected_sign = dingrelay::dingtalk::sign::sign(SECRET, START_MS);
    let encoded: String = url::form_urlencoded::byte_serialize(expected_sign.as_bytes()).collect();
    assert!(printed.contains(&format!("POST https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN&timestamp={START_MS}&sign={encoded}")), "{printed}");
    assert!(printed.contains(r#""title":"告警 DiskFull""#), "{printed}");
    assert!(printed.contains(r#""msgUuid":""#), "{printed}");
    let admin = Admin::open(&state_dir).unwrap();
    assert_eq!(admin.list(Some(State::Delivered), None).unwrap().len(), 1);
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Real sockets, real HTTP client, real time: what a user's setup does.
#[tokio::test]
async fn a_posted_webhook_arrives_signed_with_the_right_body() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let (mock_addr, _server) = mock.clone().serve().await;
    let state_dir = temp_dir("sockets");
    let text = config_text(
        &state_dir,
        &webhook_url(mock_addr, TOKEN),
        &mock_addr.to_string(),
        "",
        "",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let services = Services {
        transport: Arc::new(
            HttpTransport::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap(),
        ),
        clock: Clock::system(),
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(dingrelay::daemon::run(
        load(&text),
        listener,
        async move {
            let _ = stopped.await;
        },
        tokio::sync::mpsc::channel(1).1,
        services,
    ));

    let client = reqwest::Client::new();
    let answer = client
        .post(format!("http://{addr}/hooks/am"))
        .bearer_auth(BEARER)
        .header("content-type", "application/json")
        .body(alert_payload("db-42").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let body: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "accepted", "{body}");

    // Bounded wait for the delivery (the limiter lets the first message go at once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mock.messages().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages = mock.messages();
    assert_eq!(messages.len(), 1, "{:?}", mock.stats());
    let sent = &messages[0].body;
    assert_eq!(sent["msgtype"], "markdown");
    assert_eq!(sent["markdown"]["title"], "告警 DiskFull");
    assert_eq!(sent["markdown"]["text"], "- db-42: disk full on db-42\n");
    assert_eq!(sent["msgUuid"].as_str().map(str::len), Some(32), "{sent}");
    // The stand-in checked the signature and keyword: only errcode 0 was answered.
    assert_eq!(
        mock.stats().by_errcode.keys().copied().collect::<Vec<_>>(),
        vec![0]
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("shuts down in time")
        .unwrap()
        .unwrap();
}

/// A shutdown signal that has fired when the daemon starts waiting for it: the HTTP server then
/// ends its graceful shutdown at once, as the reload loop returns, and either may be seen first.
/// Every run still logs "Shutting down" and then, last, "Stopped" (the server finishing first
/// used to read as "the server ended on its own", and returned without either line).
#[tokio::test]
async fn a_shutdown_logs_its_lines_whichever_part_ends_first() {
    let captured = SharedBuffer::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This test's runtime is current-thread: `run` and its tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let state_dir = temp_dir("shutdown-lines");
    for run in 1..=20 {
        let text = format!(
            "state_dir: {}\nrobots: {{ ops: {{ webhook: log }} }}\nsources: {{ am: {{ kind: alertmanager }} }}\nrules: [ {{ name: a, source: am, to: ops, text: {{ content: x }} }} ]\n",
            state_dir.display()
        );
        let services = Services {
            transport: Arc::new(MockTransport(MockDingTalk::new())) as Arc<dyn Transport>,
            clock: Clock::system(),
            dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
            config_path: None,
            metrics: Arc::new(Metrics::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let before = captured.text().len();
        tokio::time::timeout(
            Duration::from_secs(10),
            dingrelay::daemon::run(
                load(&text),
                listener,
                async {},
                tokio::sync::mpsc::channel(1).1,
                services,
            ),
        )
        .await
        .expect("shuts down in time")
        .unwrap();
        let logs = captured.text()[before..].to_owned();
        let lines: Vec<&str> = logs.lines().collect();
        assert!(
            lines.iter().any(|l| l.contains("Shutting down:")),
            "run {run}: no \"Shutting down\" line:\n{logs}"
        );
        assert!(
            lines.last().is_some_and(|l| l.contains("Stopped;")),
            "run {run}: the last line is not \"Stopped\":\n{logs}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_json_source_dedup_template_drops_redeliveries() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let clock = Clock::starting_at(START_MS);
    let mock = mock.clock(move || clock.now_ms());
    let text = config_text(
        &temp_dir("dedup"),
        &webhook_url("http://mock.test", TOKEN),
        "mock.test",
        "",
        "",
    )
    .replace(
        "  ci: { kind: json }",
        "  ci: { kind: json, dedup: \"{{ id }}\" }",
    );
    let services = services(&mock, clock);
    let daemon = Daemon::start(load(&text), services).await.unwrap();
    let router = daemon.router();
    let deploy = json!({"id": "deploy-17", "title": "告警 deploy", "text": "done"}).to_string();
    let (_, first) = post(&router, "/hooks/ci", &[JSON], deploy.clone()).await;
    let (_, again) = post(&router, "/hooks/ci", &[JSON], deploy).await;
    let other = json!({"id": "deploy-18", "title": "告警 deploy", "text": "done"}).to_string();
    let (_, third) = post(&router, "/hooks/ci", &[JSON], other).await;
    assert_eq!(first, json!({"status": "accepted", "event": 1}));
    assert_eq!(again, json!({"status": "duplicate", "event": 1}));
    assert_eq!(third, json!({"status": "accepted", "event": 2}));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(mock.stats().accepted, 2);
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_a_backoff_keeps_the_order() {
    let clock = Clock::starting_at(START_MS);
    let mock = MockDingTalk::new()
        .robot(TOKEN, Some(SECRET), &["告警"])
        .clock(move || clock.now_ms());
    let state_dir = temp_dir("order");
    let text = config_text(
        &state_dir,
        &webhook_url("http://mock.test", TOKEN),
        "mock.test",
        "    digest: false",
        "",
    );
    let services = || services(&mock, clock); // one per start of the daemon
    // DingTalk throttles the first alert: the robot pauses for the penalty (in memory, and the
    // first alert's row is due after it), and the others arrive during the pause.
    mock.set_fault(Fault::ErrCode(130101), Some(1));
    let daemon = Daemon::start(load(&text), services()).await.unwrap();
    post_alert(&daemon.router(), "first").await;
    while mock.stats().faults < 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for instance in ["second", "third"] {
        post_alert(&daemon.router(), instance).await;
    }
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;

    // Restarted (the pause is forgotten): the younger alerts are due, the first one is not yet.
    let daemon = Daemon::start(load(&text), services()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(700)).await;
    let order: Vec<String> = mock
        .messages()
        .iter()
        .map(|m| m.body["markdown"]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(order.len(), 3, "{order:?}");
    assert!(
        order[0].contains("first") && order[1].contains("second") && order[2].contains("third"),
        "{order:?}"
    );
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// The stand-in as dingrelay's transport (tests/support/mock_dingtalk.rs): dingrelay's signed URL
/// is accepted on the shared paused clock and goes stale with it, answers come back as they
/// would over HTTP, and a reset fault is a request without an answer.
#[tokio::test(start_paused = true)]
async fn the_stand_in_takes_dingrelay_signatures_and_clock_through_the_transport() {
    use dingrelay::delivery::transport::{HttpAnswer, TransportError};
    use dingrelay::dingtalk::sign::signed_url;
    use secrecy::SecretString;

    let clock = Clock::starting_at(START_MS);
    let mock = MockDingTalk::new()
        .robot(TOKEN, Some(SECRET), &[])
        .clock(move || clock.now_ms());
    let transport = MockTransport(mock.clone());
    let webhook = url::Url::parse(&webhook_url("https://oapi.dingtalk.com", TOKEN)).unwrap();
    let secret = SecretString::from(SECRET.to_owned());
    let body = || json!({ "msgtype": "text", "text": { "content": "x" } }).to_string();
    let errcode = |answer: &HttpAnswer| -> i64 {
        serde_json::from_slice::<Value>(&answer.body).unwrap()["errcode"]
            .as_i64()
            .unwrap()
    };

    let url = signed_url(&webhook, Some(&secret), clock.now_ms());
    let answer = transport.post(&url, body().into_bytes()).await.unwrap();
    assert_eq!(
        answer,
        HttpAnswer {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: br#"{"errcode":0,"errmsg":"ok"}"#.to_vec(),
        }
    );
    assert_eq!(mock.messages()[0].at_ms, START_MS);
    // Good for an hour of paused time, stale one millisecond later.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let answer = transport.post(&url, body().into_bytes()).await.unwrap();
    assert_eq!(errcode(&answer), 0);
    tokio::time::advance(Duration::from_millis(1)).await;
    let answer = transport.post(&url, body().into_bytes()).await.unwrap();
    assert_eq!(errcode(&answer), 310000);
    let fresh = signed_url(&webhook, Some(&secret), clock.now_ms());
    assert_eq!(
        errcode(&transport.post(&fresh, body().into_bytes()).await.unwrap()),
        0
    );

    mock.set_fault(Fault::Http500, Some(1));
    let answer = transport.post(&fresh, body().into_bytes()).await.unwrap();
    assert_eq!(
        (answer.status, answer.content_type.as_deref()),
        (500, Some("text/plain"))
    );
    mock.set_fault(Fault::Reset, Some(1));
    assert!(matches!(
        transport.post(&fresh, body().into_bytes()).await,
        Err(TransportError::Other(_))
    ));
    assert_eq!(mock.stats().accepted, 3);
}

/// Issue 11's pair: a healthy rule and one whose text divides by the number of resolved alerts,
/// which is 0 for a firing group.
#[tokio::test(start_paused = true)]
async fn a_rule_that_divides_by_zero_sends_a_fallback_and_the_healthy_rule_still_sends() {
    let harness = start_paused_with(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        |text| {
            text.replace(
                "rules:\n",
                "rules:\n  - name: healthy\n    source: am\n    to: ops\n    template: alertmanager\n    markdown: { title: \"告警 {{ commonLabels.alertname }}\" }\n  - name: ratio\n    source: am\n    to: ops\n    text: { content: \"告警 ratio {{ (alerts | length) // (resolved | length) }}\" }\n",
            )
        },
        "",
        "",
    )
    .await;
    let (status, answer) = post_alert(&harness.router, "db-7").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "accepted", "{answer}");

    tokio::time::sleep(Duration::from_secs(30)).await;
    let texts: Vec<String> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect();
    // The healthy rule's message, the fallback of the failing one, and the harness's own rule.
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("disk full on db-7") && !t.contains("failed")),
        "the healthy rule's alert is delivered: {texts:#?}"
    );
    let fallback = texts
        .iter()
        .find(|t| t.contains("rule `ratio` failed"))
        .unwrap_or_else(|| panic!("a fallback for the failing rule: {texts:#?}"));
    assert!(
        fallback.contains("DiskFull"),
        "the alert's facts: {fallback}"
    );
    assert!(
        fallback.contains("unable to calculate 1 // 0"),
        "{fallback}"
    );
    assert!(fallback.contains("告警"), "the robot's keyword: {fallback}");
    assert_eq!(
        harness
            .mock
            .stats()
            .by_errcode
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [0]
    );

    // The failure is kept with the event, and counted by rule.
    let outcome: String = rusqlite::Connection::open(harness.state_dir.join(FILE_NAME))
        .unwrap()
        .query_row("SELECT outcome FROM events WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert!(outcome.contains(r#""rule":"ratio""#), "{outcome}");
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// A 100 KB alertname once made the title too big and the webhook was refused: now the title is
/// cut, with a marker, and the alert is delivered.
#[tokio::test(start_paused = true)]
async fn an_alert_with_a_100_kb_name_is_delivered_with_its_title_cut() {
    let harness = start_paused(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        "",
        "",
    )
    .await;
    let name = "X".repeat(100_000);
    let mut payload = alert_payload("db-1");
    payload["commonLabels"]["alertname"] = json!(name);
    payload["alerts"][0]["labels"]["alertname"] = json!(name);
    let (status, answer) = post(
        &harness.router,
        "/hooks/am",
        &[AUTH, JSON],
        payload.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let messages = harness.mock.messages();
    assert_eq!(messages.len(), 1);
    let body = &messages[0].body;
    let title = body["markdown"]["title"].as_str().unwrap();
    assert!(title.starts_with("告警 XXX"), "{title}");
    assert!(title.len() <= 1_000, "{}", title.len());
    assert!(title.contains("more bytes cut)"), "{title}");
    assert!(body.to_string().len() <= 20_000);
    assert!(
        body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("disk full on db-1")
    );
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// The rules of [`a_rule_that_divides_by_zero_sends_a_fallback_and_the_healthy_rule_still_sends`],
/// with the `ratio` rule as given.
fn with_ratio_rule(text: &str, ratio: &str) -> String {
    text.replace(
        "rules:\n",
        &format!(
            "rules:\n  - name: ratio\n    source: am\n    to: ops\n    text: {{ content: \"告警 ratio {ratio}\" }}\n"
        ),
    )
}

/// Keep, dry-run, re-route: the operator fixes a failing rule, previews what the fixed file would
/// have sent for the stored events, and re-routes the event so the fixed message goes out.
#[tokio::test(start_paused = true)]
async fn a_fixed_rule_is_previewed_over_stored_events_then_rerouted_for_real() {
    use dingrelay::cli::outbox::{OutboxCommand, dry_run_at, run_at};
    let broken = "{{ (alerts | length) // (resolved | length) }}";
    let fixed = "{{ alerts | length }} of {{ (alerts | length) + (resolved | length) }}";
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let harness = start_paused_with(mock, |t| with_ratio_rule(t, broken), "", "").await;
    let (status, _) = post_alert(&harness.router, "db-5").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let first: Vec<Value> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body.clone())
        .collect();
    assert_eq!(
        first.len(),
        2,
        "the fallback and the `alerts` rule's: {first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|b| b.to_string().contains("rule `ratio` failed"))
    );
    let now = START_MS + 60_000;
    let tz = jiff::tz::TimeZone::UTC;

    // `events` tells what the event became, failure included.
    let out = SharedBuffer::default();
    let events = OutboxCommand::Events {
        source: None,
        since: None,
        waiting: false,
        limit: 50,
    };
    assert_eq!(
        run_at(
            &harness.state_dir,
            &events,
            &mut out.clone(),
            &mut out.clone(),
            now,
            &tz
        ),
        0
    );
    let listed = out.text();
    assert!(listed.contains("2 messages #1 #2"), "{listed}");
    assert!(listed.contains("rule `ratio` failed"), "{listed}");

    // The dry run of the fixed file prints the fixed message and no failure; it sends nothing.
    let fixed_text = with_ratio_rule(
        &config_text(
            &harness.state_dir,
            &webhook_url("http://mock.test", TOKEN),
            "mock.test",
            "",
            "",
        ),
        fixed,
    );
    let out = SharedBuffer::default();
    let dry_run = OutboxCommand::DryRun {
        since: dingrelay::cli::outbox::parse_age("24h").unwrap(),
        source: None,
        limit: 100,
        pretty: false,
    };
    let code = dry_run_at(
        &load(&fixed_text),
        &harness.state_dir,
        &dry_run,
        &mut out.clone(),
        &mut out.clone(),
        now,
        &tz,
    );
    let printed = out.text();
    assert_eq!(code, 0, "{printed}");
    assert!(
        printed.contains("# rule `ratio` -> robot `ops`\n"),
        "{printed}"
    );
    assert!(printed.contains("告警 ratio 1 of 1"), "{printed}");
    assert!(!printed.contains("failed"), "{printed}");
    assert!(
        printed.contains(
            "2 messages would be sent (0 rule failures with a fallback); they made 2 when routed"
        ),
        "{printed}"
    );
    assert_eq!(harness.mock.messages().len(), 2, "a dry run sends nothing");

    // The fixed file in force, the event re-routed: the fixed message is delivered, new msgUuids.
    let Paused {
        daemon,
        mock,
        state_dir,
        ..
    } = harness;
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    let daemon = Daemon::start(load(&fixed_text), services(&mock, Clock::starting_at(now)))
        .await
        .unwrap();
    let out = SharedBuffer::default();
    let reroute = OutboxCommand::Reroute {
        ids: vec![1],
        since: None,
        until: None,
        source: None,
    };
    assert_eq!(
        run_at(
            &state_dir,
            &reroute,
            &mut out.clone(),
            &mut out.clone(),
            now,
            &tz
        ),
        0,
        "{}",
        out.text()
    );
    assert!(
        out.text().contains("1 event marked to be routed again"),
        "{}",
        out.text()
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let all = mock.messages();
    assert_eq!(all.len(), 4, "{all:#?}");
    let again: Vec<String> = all[2..].iter().map(|m| m.body.to_string()).collect();
    assert!(
        again.iter().any(|t| t.contains("告警 ratio 1 of 1")),
        "{again:#?}"
    );
    let uuids: std::collections::HashSet<String> = all
        .iter()
        .map(|m| m.body["msgUuid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uuids.len(), 4, "every message has its own msgUuid");
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Issue 12, case 9: a wrong token is refused before the body is read, so a flood of large
/// unauthenticated bodies is never buffered. The body here never ends: were it read first, the
/// answer would be the request timeout (408), not 401.
#[tokio::test(start_paused = true)]
async fn a_wrong_token_is_refused_before_the_body_is_read() {
    let harness = start_paused(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        "",
        "",
    )
    .await;
    /// A body whose bytes never come.
    struct Endless;
    impl axum::body::HttpBody for Endless {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }
    let endless = Body::new(Endless);
    let request = Request::post("/hooks/am")
        .header("authorization", "Bearer nope")
        .header("content-type", "application/json")
        .header("content-length", "25000000")
        .body(endless)
        .unwrap();
    let started = tokio::time::Instant::now();
    let response = harness.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        tokio::time::Instant::now(),
        started,
        "answered without waiting for the body"
    );
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Case 11 of issue 12, through the intake: a Grafana request signed with a timestamp is
/// accepted while the timestamp is within ±5 minutes of the daemon's clock, and the same signed
/// request sent again six minutes later is a 401 that names the window.
#[tokio::test(start_paused = true)]
async fn a_grafana_request_signed_six_minutes_ago_is_refused() {
    use hmac::{Hmac, KeyInit, Mac};
    const GRAFANA_SECRET: &str = "gf-hmac-s3cret-77aa";
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    let add_grafana = |text: &str| {
        text.replace(
            "  ci: { kind: json }",
            &format!(
                "  ci: {{ kind: json }}\n  gf: {{ kind: grafana, secret: {GRAFANA_SECRET}, \
                 timestamp_header: X-Grafana-Alerting-Timestamp }}"
            ),
        )
    };
    let harness = start_paused_with(mock, add_grafana, "", "").await;
    let router = &harness.router;
    let signed = |instance: &str, at_s: i64| {
        let mut body = alert_payload(instance);
        body["version"] = json!("1");
        let body = body.to_string();
        let ts = at_s.to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(GRAFANA_SECRET.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(body.as_bytes());
        (hex::encode(mac.finalize().into_bytes()), ts, body)
    };
    let send = |(signature, ts, body): (String, String, String)| async move {
        let headers = [
            JSON,
            ("x-grafana-alerting-signature", signature.as_str()),
            ("x-grafana-alerting-timestamp", ts.as_str()),
        ];
        post(router, "/hooks/gf", &headers, body).await
    };

    let start_s = START_MS / 1000;
    let (status, answer) = send(signed("gf-1", start_s)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let captured = signed("gf-2", start_s);

    tokio::time::advance(Duration::from_secs(6 * 60)).await;
    let (status, answer) = send(captured).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("360 s in the past"), "{answer}");
    assert!(error.contains("±300 s"), "{answer}");
    assert!(!answer.to_string().contains(GRAFANA_SECRET), "{answer}");
    // A request signed now is accepted: the window follows the daemon's clock.
    let (status, answer) = send(signed("gf-3", start_s + 6 * 60)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (status, answer) = send(signed("gf-4", 1_000_000_000)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Issue 12, case 1: DingTalk has a message but the outbox cannot record it (a full disk, here a
/// trigger refusing the update). It is sent once, not in a loop; the robot pauses, and once the
/// outbox takes the record it sends the next message.
#[tokio::test(start_paused = true)]
async fn a_delivery_the_outbox_cannot_record_is_not_sent_again() {
    let harness = start_paused(
        // Every request recorded, repeats of a msgUuid included.
        MockDingTalk::new()
            .robot(TOKEN, Some(SECRET), &["告警"])
            .dedupe_msg_uuid(false),
        "",
        "",
    )
    .await;
    let raw = rusqlite::Connection::open(harness.state_dir.join(FILE_NAME)).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER full_disk BEFORE UPDATE OF state ON messages \
         WHEN NEW.state = 'delivered' BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
    )
    .unwrap();
    let (status, _) = post_alert(&harness.router, "db-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, _) = post_alert(&harness.router, "db-2").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let texts: Vec<String> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect();
    assert_eq!(
        texts.len(),
        1,
        "sent once, then the robot waits: {texts:#?}"
    );
    assert!(texts[0].contains("db-1"));

    // The disk has room again: the record goes in, and the robot carries on with db-2.
    raw.execute_batch("DROP TRIGGER full_disk").unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let texts: Vec<String> = harness
        .mock
        .messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[1].contains("db-2"));
    drop(raw);
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Issue 12, case 2: a crash while a message is being sent. After the restart that exact message
/// goes again, alone, under its msgUuid, before the backlog is merged into a digest: no alert
/// reaches DingTalk under two msgUuids.
#[tokio::test(start_paused = true)]
async fn a_message_in_flight_at_a_crash_goes_again_under_its_msg_uuid() {
    let hanging = MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]);
    hanging.set_fault(Fault::Hang, None);
    let harness = start_paused(hanging, "", "").await;
    let (status, _) = post_alert(&harness.router, "db-000").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The send of db-000 hangs; 30 more alerts queue behind it.
    for i in 1..=30 {
        let (status, _) = post_alert(&harness.router, &format!("db-{i:03}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Paused {
        daemon, state_dir, ..
    } = harness;
    // The "crash": the worker is cut off in the middle of its send.
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_millis(10))
        .await;
    let in_flight: String = rusqlite::Connection::open(state_dir.join(FILE_NAME))
        .unwrap()
        .query_row("SELECT message FROM in_flight", [], |r| r.get(0))
        .expect("recorded before it was sent");
    let in_flight: Value = serde_json::from_str(&in_flight).unwrap();
    let uuid = in_flight["msgUuid"].as_str().unwrap().to_owned();
    assert!(in_flight.to_string().contains("db-000"));

    // The restart, DingTalk healthy, 31 messages pending: enough for a digest.
    let clock = Clock::starting_at(START_MS + 120_000);
    let mock = MockDingTalk::new()
        .robot(TOKEN, Some(SECRET), &["告警"])
        .dedupe_msg_uuid(false)
        .clock(move || clock.now_ms());
    let services = services(&mock, clock);
    let text = config_text(
        &state_dir,
        &webhook_url("http://mock.test", TOKEN),
        "mock.test",
        "",
        "",
    );
    let daemon = Daemon::start(load(&text), services).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let messages = mock.messages();
    assert!(messages.len() >= 2, "{messages:#?}");
    assert_eq!(
        messages[0].body["msgUuid"],
        uuid.as_str(),
        "the same message first"
    );
    assert!(messages[0].body.to_string().contains("db-000"));
    let with_first: Vec<&str> = messages
        .iter()
        .filter(|m| m.body.to_string().contains("db-000"))
        .map(|m| m.body["msgUuid"].as_str().unwrap())
        .collect();
    assert_eq!(with_first, [uuid.as_str()], "db-000 under one msgUuid only");
    assert!(
        messages[1..]
            .iter()
            .any(|m| m.body.to_string().contains("db-030")),
        "the backlog follows"
    );
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// `GET /-/ready`'s status.
async fn ready(router: &axum::Router) -> StatusCode {
    let request = Request::get("/-/ready").body(Body::empty()).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

/// How many events the event log holds.
fn stored_events(state_dir: &Path) -> i64 {
    rusqlite::Connection::open(state_dir.join(FILE_NAME))
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap()
}

/// Issue 12, case 3: the outbox file is deleted while the daemon runs. Webhooks are answered 503
/// (the sender keeps them) and `/-/ready` says 503, instead of 202 into a file that is gone.
#[tokio::test(start_paused = true)]
async fn a_deleted_outbox_file_is_answered_503_and_not_ready() {
    let harness = start_paused(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        "",
        "",
    )
    .await;
    assert_eq!(
        post_alert(&harness.router, "before").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(ready(&harness.router).await, StatusCode::OK);
    for suffix in ["", "-wal", "-shm"] {
        let file = harness.state_dir.join(format!("{FILE_NAME}{suffix}"));
        std::fs::remove_file(&file).unwrap();
    }
    for i in 0..3 {
        let (status, body) = post_alert(&harness.router, &format!("after-{i}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains("deleted"),
            "{body}"
        );
    }
    assert_eq!(
        ready(&harness.router).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Issue 12, case 4: the disk is full (here a trigger refusing new events with SQLite's own
/// message). Webhooks are answered 503 and `/-/ready` says 503 until an event is stored again.
#[tokio::test(start_paused = true)]
async fn a_full_disk_makes_the_daemon_unready_until_an_event_is_stored() {
    let harness = start_paused(
        MockDingTalk::new().robot(TOKEN, Some(SECRET), &["告警"]),
        "",
        "",
    )
    .await;
    let raw = rusqlite::Connection::open(harness.state_dir.join(FILE_NAME)).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER full_disk BEFORE INSERT ON event_bodies \
         BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
    )
    .unwrap();
    let (status, body) = post_alert(&harness.router, "full-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        ready(&harness.router).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        ready(&harness.router).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "it stays so"
    );

    // Room again: the sender's retry is stored, and the daemon is ready again.
    raw.execute_batch("DROP TRIGGER full_disk").unwrap();
    assert_eq!(
        post_alert(&harness.router, "full-1").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(ready(&harness.router).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(harness.mock.messages().len(), 1);
    drop(raw);
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Issue 12, case 5: another process holds the outbox's write lock. A webhook still waiting for
/// its turn when `request_timeout` passes is answered 408 and never stored, so the sender's retry
/// is no duplicate; one whose commit had begun is answered by that commit (202 once the lock
/// goes), though its timeout has passed.
#[tokio::test(start_paused = true)]
async fn a_webhook_answered_408_is_never_stored() {
    let harness = start_paused(
        MockDingTalk::new()
            .robot(TOKEN, Some(SECRET), &["告警"])
            .dedupe_msg_uuid(false),
        "",
        "",
    )
    .await;
    // The daemon's own start-up writes (pruning, purging) are done before the lock is taken, so
    // that the writer's next command is `first`.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let path = harness.state_dir.join(FILE_NAME);
    let (locked, lock_held) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut other = rusqlite::Connection::open(path).unwrap();
        let tx = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        locked.send(()).unwrap();
        let _ = released.recv();
        tx.rollback().unwrap();
    });
    lock_held.recv().unwrap();
    let before = stored_events(&harness.state_dir);

    // `first` reaches the writer, which waits on the lock (in real time: SQLite's busy wait).
    let router = harness.router.clone();
    let first = tokio::spawn(async move { post_alert(&router, "lock-first").await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(10));
    }
    // `second` waits behind it for its turn; both requests' timeouts (10 s) pass.
    let router = harness.router.clone();
    let second = tokio::spawn(async move { post_alert(&router, "lock-second").await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    let (status, body) = second.await.unwrap();
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    if first.is_finished() {
        let answer = first.await.unwrap();
        panic!("its commit has begun: it waits for it; answered {answer:?}");
    }

    release.send(()).unwrap();
    holder.join().unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the truth, after its timeout: {body}"
    );
    assert_eq!(
        stored_events(&harness.state_dir),
        before + 1,
        "the webhook answered 408 was not stored"
    );
    // The sender retries what was answered 408: stored once, delivered once.
    assert_eq!(
        post_alert(&harness.router, "lock-second").await.0,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    let delivered = delivered_text(&harness.mock);
    assert_eq!(
        delivered.matches("disk full on lock-first").count(),
        1,
        "{delivered}"
    );
    assert_eq!(
        delivered.matches("disk full on lock-second").count(),
        1,
        "{delivered}"
    );
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

//! Robots of an enterprise internal app, end to end: the daemon with `apps:` and robots of the
//! three kinds (group app robot, one-to-one chats, work notifications) against the in-repo
//! stand-in's app APIs, on tokio's paused clock. One rule fans out to a webhook robot, a group
//! app robot and the person named in the alert; a token expiring mid-run costs one fetch and no
//! failure; flow-controlled people are retried and invalid ones dead-lettered with the reason; a
//! wrong appSecret stops start-up; and the storm, outage and crash guarantees hold for the new
//! kinds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use dingrelay::clock::Clock;
use dingrelay::config::Config;
use dingrelay::daemon::{Daemon, ServeError, Services};
use dingrelay::delivery::transport::Transport;
use dingrelay::metrics::Metrics;
use dingrelay::outbox::{Admin, State};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::mock_dingtalk::{Family, Fault, MockDingTalk, MockTransport, webhook_url};

const APP_KEY: &str = "dingoncallapp";
const APP_SECRET: &str = "app-s3cret-value-0123";
const CID: &str = "cidOPSgroup0123==";
const TOKEN: &str = "robot-token-1";
const SECRET: &str = "SECmock0123456789";
/// 2026-11-24T08:00:00Z.
const START_MS: i64 = 1_795_507_200_000;

fn temp_dir(name: &str) -> PathBuf {
    crate::support::fresh_dir(&format!("dingrelay-app-{name}"))
}

/// A webhook robot `ops`, an app with a group robot `ops-app`, one-to-one chats with the alert's
/// `owner` (`owner`), and work notifications to `lin` (`notice`); an Alertmanager source. The
/// rule `alerts` sends to the robots in `to`.
fn config_text(state_dir: &Path, app_secret: &str, to: &str, robot_extra: &str) -> String {
    format!(
        r#"
state_dir: {state_dir}
apps:
  oncall:
    app_key: {APP_KEY}
    app_secret: {app_secret}
    agent_id: 4000001
    base_url: http://mock.test
robots:
  ops:
    webhook: "{webhook}"
    allow_host: mock.test
    secret: {SECRET}
    keywords: [告警]
  ops-app:
    app: oncall
    conversation: "{CID}"
{robot_extra}
  owner:
    app: oncall
    kind: one_to_one
    users: ['{{{{ commonLabels.owner }}}}']
{robot_extra}
  notice:
    app: oncall
    kind: work_notification
    users: [lin]
sources:
  am: {{ kind: alertmanager }}
rules:
  - name: alerts
    source: am
    to: [{to}]
    markdown:
      title: "告警 {{{{ commonLabels.alertname }}}}"
      text: "{{% for a in alerts %}}- {{{{ a.labels.instance }}}}: {{{{ a.annotations.summary }}}}\n{{% endfor %}}"
"#,
        state_dir = state_dir.display(),
        webhook = webhook_url("http://mock.test", TOKEN),
    )
}

fn load(text: &str) -> Config {
    Config::parse("rules.yaml", text, Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("config loads:\n{e}"))
}

/// The stand-in with the webhook robot, the app, its group and two people.
fn stand_in() -> MockDingTalk {
    MockDingTalk::new()
        .robot(TOKEN, Some(SECRET), &["告警"])
        .app(APP_KEY, APP_SECRET)
        .agent_id(APP_KEY, 4000001)
        .conversation(CID, &[APP_KEY])
        .user("lin", "Lin")
        .user("wang", "Wang")
}

fn services(mock: &MockDingTalk, clock: Clock) -> Services {
    Services {
        transport: Arc::new(MockTransport(mock.clone())) as Arc<dyn Transport>,
        clock,
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    }
}

struct Harness {
    daemon: Daemon,
    router: axum::Router,
    mock: MockDingTalk,
    state_dir: PathBuf,
}

async fn start(mock: MockDingTalk, to: &str, robot_extra: &str) -> Harness {
    start_in(mock, temp_dir("run"), to, robot_extra, START_MS).await
}

async fn start_in(
    mock: MockDingTalk,
    state_dir: PathBuf,
    to: &str,
    robot_extra: &str,
    start_ms: i64,
) -> Harness {
    let clock = Clock::starting_at(start_ms);
    let mock = mock.clock(move || clock.now_ms());
    let config = load(&config_text(&state_dir, APP_SECRET, to, robot_extra));
    let daemon = Daemon::start(config, services(&mock, clock))
        .await
        .expect("daemon starts");
    let router = daemon.router();
    Harness {
        daemon,
        router,
        mock,
        state_dir,
    }
}

impl Harness {
    async fn stop(self) {
        self.daemon
            .stop(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }

    fn admin(&self) -> Admin {
        Admin::open(&self.state_dir).unwrap()
    }
}

fn alert(instance: &str, owner: &str) -> Value {
    json!({
        "version": "4", "status": "firing", "receiver": "ops",
        "groupKey": format!("{{}}:{{instance=\"{instance}\"}}"),
        "groupLabels": {},
        "commonLabels": {"alertname": "DiskFull", "instance": instance, "owner": owner},
        "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "DiskFull", "instance": instance, "owner": owner},
            "annotations": {"summary": format!("disk full on {instance}")},
            "startsAt": "2026-11-24T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": instance,
        }],
    })
}

async fn post_alert(router: &axum::Router, instance: &str, owner: &str) {
    let request = Request::post("/hooks/am")
        .header("content-type", "application/json")
        .body(Body::from(alert(instance, owner).to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// What `/metrics` serves.
async fn scrape(router: &axum::Router) -> String {
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The app messages the stand-in took on `channel`, as (delivered users, msgParam text).
fn app_sent(mock: &MockDingTalk, channel: &str) -> Vec<(Vec<String>, String)> {
    mock.app_messages()
        .into_iter()
        .filter(|m| m.channel.name() == channel)
        .map(|m| (m.delivered.clone(), m.record.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_rule_reaches_a_webhook_robot_a_group_app_robot_and_the_owner() {
    let harness = start(stand_in(), "ops, ops-app, owner, notice", "").await;
    post_alert(&harness.router, "db-1", "lin").await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let webhook = harness.mock.messages();
    assert_eq!(webhook.len(), 1, "{webhook:#?}");
    assert!(webhook[0].body.to_string().contains("disk full on db-1"));

    let group = app_sent(&harness.mock, "app_robot_group");
    assert_eq!(group.len(), 1, "{group:#?}");
    assert!(group[0].1.contains("disk full on db-1"), "{group:?}");
    assert!(group[0].1.contains(CID), "{group:?}");
    assert!(group[0].1.contains("sampleMarkdown"), "{group:?}");

    let person = app_sent(&harness.mock, "app_robot_oto");
    assert_eq!(person.len(), 1, "{person:#?}");
    assert_eq!(person[0].0, ["lin"], "the owner named in the alert");
    assert!(person[0].1.contains("disk full on db-1"), "{person:?}");

    let notice = app_sent(&harness.mock, "work_notice");
    assert_eq!(notice.len(), 1, "{notice:#?}");
    assert_eq!(notice[0].0, ["lin"]);

    // Nothing was refused or warned about on the way.
    for message in harness.mock.app_messages() {
        assert!(message.warnings.is_empty(), "{message:#?}");
    }
    let admin = harness.admin();
    let delivered = admin.list(Some(State::Delivered), None).unwrap();
    assert_eq!(delivered.len(), 4, "{delivered:#?}");
    assert!(
        delivered
            .iter()
            .all(|m| m.attempts == 0 && m.last_error.is_none()),
        "delivered at the first try: {delivered:#?}"
    );
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_token_expiring_mid_run_costs_one_fetch_and_no_failure() {
    let harness = start(stand_in(), "ops-app, owner", "    digest: false").await;
    // Start-up fetched the token once, to tell a wrong appSecret at once.
    assert_eq!(harness.mock.token_fetches(APP_KEY), 1);
    for i in 0..15 {
        post_alert(&harness.router, &format!("web-{i:02}"), "wang").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        if i == 7 {
            // DingTalk expires the token in the middle of the run.
            assert_eq!(harness.mock.expire_tokens(Some(APP_KEY)), [APP_KEY]);
        }
    }
    tokio::time::sleep(Duration::from_secs(120)).await;

    assert_eq!(
        harness.mock.token_fetches(APP_KEY),
        2,
        "one fetch at start, one after the expiry, none per send"
    );
    let metrics = scrape(&harness.router).await;
    assert!(
        metrics.contains("dingrelay_app_token_fetches_total{app=\"oncall\",result=\"ok\"} 2"),
        "{metrics}"
    );
    let group = app_sent(&harness.mock, "app_robot_group");
    let person = app_sent(&harness.mock, "app_robot_oto");
    assert_eq!((group.len(), person.len()), (15, 15));
    let admin = harness.admin();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    assert!(admin.list(Some(State::Dead), None).unwrap().is_empty());
    // The refused token never reached the outbox: no message was ever retried (`attempts`
    // counts failed tries), none holds an error.
    let delivered = admin.list(Some(State::Delivered), None).unwrap();
    assert_eq!(delivered.len(), 30);
    for message in &delivered {
        assert_eq!(
            (message.attempts, message.last_error.as_deref()),
            (0, None),
            "{message:#?}"
        );
    }
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_flow_controlled_person_is_retried_and_an_invalid_one_dead_lettered() {
    // DingTalk lets 2 messages a minute reach one person; `ghost` is no one.
    let mock = stand_in().app_robot_rate(2, Duration::from_secs(60));
    let harness = start(mock, "owner", "    digest: false").await;
    for i in 0..3 {
        post_alert(&harness.router, &format!("db-{i}"), "lin").await;
    }
    post_alert(&harness.router, "db-9", "ghost").await;
    tokio::time::sleep(Duration::from_secs(300)).await;

    let person = app_sent(&harness.mock, "app_robot_oto");
    let to_lin: Vec<&String> = person
        .iter()
        .filter(|(users, _)| users == &["lin"])
        .map(|(_, text)| text)
        .collect();
    assert_eq!(to_lin.len(), 3, "each once, the third after a retry");
    for (i, text) in to_lin.iter().enumerate() {
        assert!(text.contains(&format!("disk full on db-{i}")), "in order");
    }
    let admin = harness.admin();
    let delivered = admin.list(Some(State::Delivered), None).unwrap();
    assert_eq!(delivered.len(), 3);
    let retried = delivered.iter().find(|m| m.attempts > 1).expect("retried");
    assert!(
        retried
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("flow-controlled user lin")),
        "{retried:#?}"
    );
    let dead = admin.list(Some(State::Dead), None).unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let reason = dead[0].last_error.as_deref().unwrap_or("");
    assert!(
        reason.contains("ghost") && reason.contains("invalid"),
        "{reason}"
    );
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_naming_no_one_is_dead_lettered_saying_so() {
    let harness = start(stand_in(), "ops-app, owner", "").await;
    post_alert(&harness.router, "db-1", "").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(app_sent(&harness.mock, "app_robot_group").len(), 1);
    assert!(app_sent(&harness.mock, "app_robot_oto").is_empty());
    let dead = harness.admin().list(Some(State::Dead), None).unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].robot, "owner");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no one to send it to")),
        "{dead:#?}"
    );
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_wrong_app_secret_stops_start_up_without_showing_it() {
    let clock = Clock::starting_at(START_MS);
    let mock = stand_in().clock(move || clock.now_ms());
    let state_dir = temp_dir("wrong-secret");
    let config = load(&config_text(
        &state_dir,
        "not-the-secret-4711",
        "ops-app",
        "",
    ));
    let error = match Daemon::start(config, services(&mock, clock)).await {
        Err(error @ ServeError::App(_)) => error.to_string(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started with a wrong appSecret"),
    };
    assert!(
        error.contains("DingTalk refused app `oncall`'s appKey or appSecret"),
        "{error}"
    );
    assert!(error.contains("invalidClientIdOrSecret"), "{error}");
    assert!(!error.contains("not-the-secret-4711"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_storm_to_app_robots_stays_within_their_rate_and_everything_arrives() {
    let harness = start(stand_in(), "ops-app, owner", "").await;
    for i in 0..200 {
        post_alert(&harness.router, &format!("db-{i:03}"), "lin").await;
    }
    tokio::time::sleep(Duration::from_secs(180)).await;

    let group = app_sent(&harness.mock, "app_robot_group");
    let person = app_sent(&harness.mock, "app_robot_oto");
    eprintln!(
        "storm: 200 alerts reached the group in {} messages, the person in {}",
        group.len(),
        person.len()
    );
    for (kind, sent) in [("group", &group), ("one-to-one", &person)] {
        let text: String = sent.iter().map(|(_, t)| t.as_str()).collect();
        let missing: Vec<String> = (0..200)
            .map(|i| format!("db-{i:03}"))
            .filter(|instance| !text.contains(&format!("disk full on {instance}")))
            .collect();
        assert!(missing.is_empty(), "{kind}: not delivered: {missing:?}");
        assert!(
            sent.len() < 20,
            "{kind}: merged into digests: {}",
            sent.len()
        );
    }
    // The stand-in's app-robot limit (20 a minute per robot and group, per person) never hit.
    let stats = harness.mock.app_stats();
    for channel in ["app_robot_group", "app_robot_oto"] {
        let codes: Vec<&String> = stats.channels[channel].by_code.keys().collect();
        assert_eq!(codes, ["0"], "{channel}: {stats:#?}");
    }
    for message in harness.mock.app_messages() {
        let flow_controlled = &message.record["flowControlledStaffIdList"];
        assert!(
            flow_controlled.is_null() || flow_controlled == &json!([]),
            "{message:#?}"
        );
    }
    assert!(person.iter().all(|(users, _)| users == &["lin"]));
    let admin = harness.admin();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    assert!(admin.list(Some(State::Dead), None).unwrap().is_empty());
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_the_app_api_loses_nothing_and_keeps_order() {
    let harness = start(stand_in(), "ops-app, owner", "    digest: false").await;
    harness
        .mock
        .set_fault_for(&[Family::Api], Fault::Http500, None);
    for i in 0..5 {
        post_alert(&harness.router, &format!("web-{i}"), "lin").await;
    }
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(
        harness.mock.app_messages().is_empty(),
        "down: nothing got in"
    );
    harness
        .mock
        .set_fault_for(&[Family::Api], Fault::Hang, None);
    tokio::time::sleep(Duration::from_secs(300)).await;
    harness
        .mock
        .set_fault_for(&[Family::Api], Fault::None, None);
    tokio::time::sleep(Duration::from_secs(120)).await;

    for channel in ["app_robot_group", "app_robot_oto"] {
        let sent: Vec<String> = app_sent(&harness.mock, channel)
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        assert_eq!(sent.len(), 5, "{channel}: each once: {sent:#?}");
        for (i, text) in sent.iter().enumerate() {
            assert!(
                text.contains(&format!("disk full on web-{i}")),
                "{channel} in order"
            );
        }
    }
    let admin = harness.admin();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    assert!(admin.list(Some(State::Dead), None).unwrap().is_empty());
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_mid_send_loses_nothing_for_app_robots() {
    let mock = stand_in();
    mock.set_fault_for(&[Family::Api], Fault::Hang, None);
    let state_dir = temp_dir("crash");
    let harness = start_in(mock, state_dir.clone(), "ops-app, owner", "", START_MS).await;
    for i in 0..20 {
        post_alert(&harness.router, &format!("db-{i:03}"), "lin").await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The "crash": the workers are cut off in the middle of their sends.
    harness
        .daemon
        .stop(tokio::time::Instant::now() + Duration::from_millis(10))
        .await;

    // The restart, DingTalk healthy.
    let restarted = start_in(
        stand_in(),
        state_dir,
        "ops-app, owner",
        "",
        START_MS + 120_000,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(180)).await;
    for channel in ["app_robot_group", "app_robot_oto"] {
        let text: String = app_sent(&restarted.mock, channel)
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        for i in 0..20 {
            let line = format!("disk full on db-{i:03}");
            assert_eq!(text.matches(&line).count(), 1, "{channel}: {line} once");
        }
    }
    let admin = restarted.admin();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    assert!(admin.list(Some(State::Dead), None).unwrap().is_empty());
    restarted.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_repeated_alert_reaches_the_person_again_by_work_notification() {
    let harness = start(stand_in(), "notice", "").await;
    post_alert(&harness.router, "db-1", "lin").await;
    // Alertmanager repeats the alert after its repeat_interval, past the dedup window.
    tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
    post_alert(&harness.router, "db-1", "lin").await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let notices = harness.mock.app_messages();
    assert_eq!(notices.len(), 2, "{notices:#?}");
    for notice in &notices {
        // DingTalk drops the same content to the same person within a day, answering errcode 0.
        assert_eq!(notice.delivered, ["lin"], "{notice:#?}");
        assert_eq!(notice.record["forbidden"], json!([]), "{notice:#?}");
    }
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_app_secret_or_access_token_reaches_the_logs_or_metrics() {
    let captured = crate::support::output::SharedBuffer::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // A current-thread runtime: the daemon's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    // Every path that logs: deliveries, a token refused mid-run, a person DingTalk does not
    // know, an outage of the app API.
    let harness = start(stand_in(), "ops-app, owner, notice", "    digest: false").await;
    let mut tokens = vec![
        harness
            .mock
            .current_token(APP_KEY)
            .expect("fetched at start"),
    ];
    post_alert(&harness.router, "db-1", "lin").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    harness.mock.expire_tokens(Some(APP_KEY));
    post_alert(&harness.router, "db-2", "ghost").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokens.push(harness.mock.current_token(APP_KEY).expect("fetched again"));
    harness
        .mock
        .set_fault_for(&[Family::Api, Family::Oapi], Fault::Http500, Some(3));
    post_alert(&harness.router, "db-3", "wang").await;
    tokio::time::sleep(Duration::from_secs(120)).await;

    let metrics = scrape(&harness.router).await;
    harness.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("DingTalk refused the app's access token"),
        "{logs}"
    );
    assert!(logs.contains("ghost"), "the dead letter was logged: {logs}");
    assert_ne!(tokens[0], tokens[1]);
    for secret in [APP_SECRET, &tokens[0], &tokens[1]] {
        assert!(!logs.contains(secret), "in the logs: {secret}");
        assert!(!metrics.contains(secret), "in the metrics: {secret}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_the_apps_token_and_refuses_a_wrong_app_secret() {
    let clock = Clock::starting_at(START_MS);
    let mock = stand_in().clock(move || clock.now_ms());
    let state_dir = temp_dir("reload");
    let path = state_dir.join("rules.yaml");
    std::fs::write(&path, config_text(&state_dir, APP_SECRET, "ops-app", "")).unwrap();
    let mut services = services(&mock, clock);
    services.config_path = Some(path.clone());
    let mut daemon = Daemon::start(Config::load(&path).unwrap(), services)
        .await
        .unwrap();
    let router = daemon.router();
    assert_eq!(mock.token_fetches(APP_KEY), 1);

    // The same app, another rule: its client (token and pace) is kept.
    std::fs::write(
        &path,
        config_text(&state_dir, APP_SECRET, "ops-app, owner", ""),
    )
    .unwrap();
    daemon.reload().await.expect("reloaded");
    assert_eq!(mock.token_fetches(APP_KEY), 1, "no new fetch");

    // A wrong secret: refused, without the secret; the running config keeps sending.
    std::fs::write(
        &path,
        config_text(&state_dir, "wrong-s3cret-4711", "ops-app", ""),
    )
    .unwrap();
    let error = daemon.reload().await.expect_err("refused");
    assert!(
        error.contains("DingTalk refused app `oncall`'s appKey or appSecret"),
        "{error}"
    );
    assert!(!error.contains("wrong-s3cret-4711"), "{error}");
    post_alert(&router, "db-1", "lin").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(app_sent(&mock, "app_robot_group").len(), 1);
    assert_eq!(app_sent(&mock, "app_robot_oto").len(), 1, "the kept rule");
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// Through real sockets and the production HTTP client: the token goes in the
/// `x-acs-dingtalk-access-token` header (api family) and the `access_token` query (work
/// notifications), and the stand-in on loopback takes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_client_carries_the_token_where_each_api_reads_it() {
    use dingrelay::delivery::transport::HttpTransport;

    let (addr, server) = stand_in().serve().await;
    let state_dir = temp_dir("http");
    let text = config_text(&state_dir, APP_SECRET, "ops-app, owner, notice", "").replace(
        "base_url: http://mock.test",
        &format!("base_url: http://{addr}"),
    );
    let transport = HttpTransport::new(Duration::from_secs(2), Duration::from_secs(5)).unwrap();
    let services = Services {
        transport: Arc::new(transport) as Arc<dyn Transport>,
        clock: Clock::system(),
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    };
    let daemon = Daemon::start(load(&text), services).await.unwrap();
    post_alert(&daemon.router(), "db-1", "lin").await;

    let client = reqwest::Client::new();
    let channels = ["app_robot_group", "app_robot_oto", "work_notice"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let records = loop {
        let text = client
            .get(format!("http://{addr}/_messages"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if channels.iter().all(|c| text.contains(c)) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    server.abort();
    for channel in channels {
        assert!(records.contains(channel), "{channel}: {records}");
    }
    assert!(records.contains("disk full on db-1"), "{records}");
}

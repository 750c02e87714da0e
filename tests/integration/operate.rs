//! Operating the daemon: live reload, health and readiness, metrics after a full flow.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use dingrelay::clock::Clock;
use dingrelay::config::Config;
use dingrelay::daemon::{Daemon, Services};
use dingrelay::delivery::transport::Transport;
use dingrelay::metrics::Metrics;
use dingrelay::outbox::{Admin, State};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::mock_dingtalk::{Fault, MockDingTalk, MockTransport, webhook_url};
use crate::support::output::SharedBuffer;

const TOKEN: &str = "operate-robot";
const SECRET: &str = "SECoperate0123";
const START_MS: i64 = 1_795_507_200_000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = crate::support::scratch_dir()
        .join(format!("dingrelay-operate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A config file with robots `ops` (and optionally `dev`) and a json source per entry of
/// `sources` (`name` → rule `name` to robot `to`).
fn write_config(dir: &Path, robots: &[&str], sources: &[(&str, &str)], extra: &str) -> PathBuf {
    let mut text = format!("state_dir: ./state\n{extra}\nrobots:\n");
    for robot in robots {
        text.push_str(&format!(
            "  {robot}:\n    webhook: \"{}\"\n    allow_host: mock.test\n    secret: {SECRET}\n",
            webhook_url("http://mock.test", TOKEN)
        ));
    }
    text.push_str("sources:\n");
    for (source, _) in sources {
        text.push_str(&format!("  {source}: {{ kind: json }}\n"));
    }
    text.push_str("rules:\n");
    for (source, robot) in sources {
        text.push_str(&format!(
            "  - name: {source}\n    source: {source}\n    to: {robot}\n    text: {{ content: \"{source}: {{{{ text }}}}\" }}\n"
        ));
    }
    let path = dir.join("rules.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Harness {
    daemon: Daemon,
    mock: MockDingTalk,
    metrics: Arc<Metrics>,
    dir: PathBuf,
}

async fn start(name: &str, robots: &[&str], sources: &[(&str, &str)]) -> Harness {
    let dir = temp_dir(name);
    write_config(&dir, robots, sources, "");
    start_in(dir).await
}

/// A daemon on `dir`'s rules.yaml and state, as left by an earlier one.
async fn start_in(dir: PathBuf) -> Harness {
    let path = dir.join("rules.yaml");
    let clock = Clock::starting_at(START_MS);
    let mock = MockDingTalk::new()
        .robot(TOKEN, Some(SECRET), &[])
        .clock(move || clock.now_ms());
    let metrics = Arc::new(Metrics::new());
    let services = Services {
        transport: Arc::new(MockTransport(mock.clone())) as Arc<dyn Transport>,
        clock,
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: Some(path.clone()),
        metrics: metrics.clone(),
    };
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(config, services).await.unwrap();
    Harness {
        daemon,
        mock,
        metrics,
        dir,
    }
}

async fn request(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn post_text(router: &axum::Router, path: &str, text: &str) -> (StatusCode, Value) {
    let (status, body) = request(router, "POST", path, &json!({ "text": text }).to_string()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(start_paused = true)]
async fn a_valid_reload_is_swapped_in_and_an_invalid_one_is_refused() {
    let mut h = start("reload", &["ops"], &[("ci", "ops")]).await;
    let router = h.daemon.router();
    assert_eq!(
        post_text(&router, "/hooks/ci", "one").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post_text(&router, "/hooks/deploy", "x").await.0,
        StatusCode::NOT_FOUND
    );

    // A new robot and a new source, swapped in: served at once, on the same router.
    write_config(
        &h.dir,
        &["ops", "dev"],
        &[("ci", "ops"), ("deploy", "dev")],
        "",
    );
    h.daemon.reload().await.expect("a valid file is swapped in");
    let (status, answer) = post_text(&router, "/hooks/deploy", "two").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let event = answer["event"].as_i64().expect("stored");
    // Routed on the new rules, to the new robot.
    let messages = loop {
        let routed = h.daemon.outbox().messages_of_event(event).await.unwrap();
        if !routed.is_empty() {
            break routed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(messages[0].robot, "dev");

    // An invalid file is refused; the running config keeps serving.
    std::fs::write(
        h.dir.join("rules.yaml"),
        "robots:\n  ops: { webhok: log }\n",
    )
    .unwrap();
    let errors = h
        .daemon
        .reload()
        .await
        .expect_err("an invalid file is refused");
    assert!(errors.contains("webhok"), "{errors}");
    let (status, _) = post_text(&router, "/hooks/deploy", "three").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the previous config still serves"
    );

    // A file that loads but fails `check`'s sample renders is refused too.
    let path = write_config(&h.dir, &["ops"], &[("ci", "ops")], "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{{ text }}", "{{ text | shout }}");
    std::fs::write(&path, text).unwrap();
    let errors = h
        .daemon
        .reload()
        .await
        .expect_err("an unknown filter is refused");
    assert!(errors.contains("unknown filter"), "{errors}");

    tokio::time::sleep(Duration::from_secs(30)).await;
    let texts: Vec<String> = h
        .mock
        .messages()
        .iter()
        .map(|m| m.body["text"]["content"].to_string())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    let metrics = h.metrics.encode();
    assert!(
        metrics.contains(r#"dingrelay_config_reloads_total{result="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dingrelay_config_reloads_total{result="invalid"} 2"#),
        "{metrics}"
    );
    h.daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn messages_of_a_removed_robot_stay_queued_and_go_out_when_it_returns() {
    let mut h = start(
        "removed",
        &["ops", "dev"],
        &[("ci", "ops"), ("deploy", "dev")],
    )
    .await;
    let router = h.daemon.router();
    h.mock.set_fault(Fault::Http500, None);
    for i in 0..3 {
        assert_eq!(
            post_text(&router, "/hooks/deploy", &format!("d{i}"))
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    write_config(&h.dir, &["ops"], &[("ci", "ops")], "");
    h.daemon.reload().await.unwrap();
    h.mock.set_fault(Fault::None, None);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let admin = Admin::open(&h.dir.join("state")).unwrap();
    let pending = admin.list(Some(State::Pending), Some("dev")).unwrap();
    assert_eq!(pending.len(), 3, "kept for the removed robot");
    assert!(h.mock.messages().is_empty());

    write_config(
        &h.dir,
        &["ops", "dev"],
        &[("ci", "ops"), ("deploy", "dev")],
        "",
    );
    h.daemon.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.mock.messages().len(), 3, "{:?}", h.mock.stats());
    h.daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

/// The `dingrelay_outbox_*` lines of a scrape that name `robot`.
async fn outbox_lines(router: &axum::Router, robot: &str) -> Vec<String> {
    let (status, metrics) = request(router, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    let label = format!("{{robot=\"{robot}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("dingrelay_outbox_") && l.contains(&label))
        .map(str::to_owned)
        .collect()
}

/// The value of the one line of `lines` starting with `name{`.
fn value(lines: &[String], name: &str) -> f64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_removed_robots_queue_stays_in_the_outbox_gauges_until_it_is_empty() {
    let mut h = start(
        "removed-metrics",
        &["ops", "dev"],
        &[("ci", "ops"), ("deploy", "dev")],
    )
    .await;
    let router = h.daemon.router();
    h.mock.set_fault(Fault::Http500, None);
    for i in 0..3 {
        let (status, _) = post_text(&router, "/hooks/deploy", &format!("d{i}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Reloaded without `dev`: its 3 messages wait, and the gauges say so, ageing.
    write_config(&h.dir, &["ops"], &[("ci", "ops")], "");
    h.daemon.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let dev = outbox_lines(&router, "dev").await;
    assert_eq!(value(&dev, "dingrelay_outbox_pending"), 3.0, "{dev:?}");
    assert_eq!(value(&dev, "dingrelay_outbox_dead"), 0.0, "{dev:?}");
    let age = value(&dev, "dingrelay_outbox_oldest_pending_age_seconds");
    assert!(age >= 65.0, "the oldest of them waited 65 s, not {age}");
    let ops = outbox_lines(&router, "ops").await;
    assert_eq!(value(&ops, "dingrelay_outbox_pending"), 0.0, "{ops:?}");

    // Started on a config without `dev`: the same.
    h.daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    let mut h = start_in(h.dir).await;
    let router = h.daemon.router();
    let dev = outbox_lines(&router, "dev").await;
    assert_eq!(value(&dev, "dingrelay_outbox_pending"), 3.0, "{dev:?}");

    // `dev` back, its queue delivered, removed again: nothing waits for it, its gauges go.
    write_config(
        &h.dir,
        &["ops", "dev"],
        &[("ci", "ops"), ("deploy", "dev")],
        "",
    );
    h.daemon.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.mock.messages().len(), 3, "{:?}", h.mock.stats());
    let dev = outbox_lines(&router, "dev").await;
    assert_eq!(value(&dev, "dingrelay_outbox_pending"), 0.0, "{dev:?}");
    write_config(&h.dir, &["ops"], &[("ci", "ops")], "");
    h.daemon.reload().await.unwrap();
    assert_eq!(outbox_lines(&router, "dev").await, Vec::<String>::new());
    let (_, metrics) = request(&router, "GET", "/metrics", "").await;
    assert!(
        metrics.contains(r#"dingrelay_messages_sent_total{robot="dev"} 3"#),
        "its counters stay: {metrics}"
    );
    h.daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

#[tokio::test(start_paused = true)]
async fn health_readiness_and_metrics_after_a_full_flow() {
    let h = start("metrics", &["ops"], &[("ci", "ops")]).await;
    let router = h.daemon.router();
    assert_eq!(
        request(&router, "GET", "/-/healthy", "").await.0,
        StatusCode::OK
    );
    assert_eq!(
        request(&router, "GET", "/-/ready", "").await.0,
        StatusCode::OK
    );

    assert_eq!(
        post_text(&router, "/hooks/ci", "first").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request(&router, "POST", "/hooks/ci", "{nope").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        request(&router, "GET", "/hooks/ci", "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // The operator routes answer a wrong method with a reason too, not an empty body.
    for (method, path, allowed) in [
        ("POST", "/-/healthy", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("GET", "/-/reload", "POST"),
    ] {
        let (status, body) = request(&router, method, path, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(body["status"], "rejected", "{method} {path}: {body}");
        assert_eq!(
            body["error"],
            format!("{path} answers {allowed} only"),
            "{method} {path}"
        );
    }
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method("GET")
                .uri("/-/reload")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    h.mock.set_fault(Fault::Http500, Some(1));
    assert_eq!(
        post_text(&router, "/hooks/ci", "second").await.0,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.mock.messages().len(), 2);

    let (status, metrics) = request(&router, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"dingrelay_requests_total{source="ci",status="202"} 2"#,
        r#"dingrelay_requests_total{source="ci",status="400"} 1"#,
        r#"dingrelay_requests_total{source="ci",status="405"} 1"#,
        r#"dingrelay_rule_matches_total{rule="ci"} 2"#,
        r#"dingrelay_messages_queued_total{robot="ops"} 2"#,
        r#"dingrelay_messages_sent_total{robot="ops"} 2"#,
        r#"dingrelay_send_failures_total{robot="ops",class="transient"} 1"#,
        r#"dingrelay_retries_total{robot="ops"} 1"#,
        r#"dingrelay_delivery_latency_seconds_count{robot="ops"} 2"#,
        r#"dingrelay_outbox_pending{robot="ops"} 0"#,
        r#"dingrelay_build_info{version=""#,
        "# EOF",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }

    // The outbox gone: not ready, still healthy.
    h.daemon.outbox().clone().close().await;
    assert_eq!(
        request(&router, "GET", "/-/ready", "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        request(&router, "GET", "/-/healthy", "").await.0,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn http_reload_is_off_without_a_token() {
    let h = start("reload-off", &["ops"], &[("ci", "ops")]).await;
    let (status, body) = request(&h.daemon.router(), "POST", "/-/reload", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("reload_token"), "{body}");
}

/// Case 13 of issue 12: with `reload_token` set, a flood of `POST /-/reload` with wrong or
/// missing tokens is answered 401 each time, but logged as one WARN line, then one summary line
/// when the minute is over; no presented token and not the real one is logged.
#[tokio::test(start_paused = true)]
async fn a_flood_of_wrong_reload_tokens_is_one_warn_line_a_minute() {
    const RELOAD_TOKEN: &str = "reload-t0ken-5ecret";
    let dir = temp_dir("reload-flood");
    let path = write_config(
        &dir,
        &["ops"],
        &[("ci", "ops")],
        &format!("reload_token: {RELOAD_TOKEN}"),
    );
    let captured = SharedBuffer::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = Clock::starting_at(START_MS);
    let services = Services {
        transport: Arc::new(MockTransport(MockDingTalk::new())) as Arc<dyn Transport>,
        clock,
        dry_run: Arc::new(Mutex::new(Box::new(std::io::sink()))),
        config_path: Some(path.clone()),
        metrics: Arc::new(Metrics::new()),
    };
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(config, services).await.unwrap();
    let router = daemon.router();
    let reload = |authorization: Option<String>| {
        let mut request = Request::post("/-/reload");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };

    let flood = 1_000;
    for i in 0..flood {
        let authorization = match i % 3 {
            0 => None,
            1 => Some(format!("Bearer guess-{i:04}")),
            _ => Some(format!("Bearer {RELOAD_TOKEN}x")),
        };
        let (status, body) = reload(authorization).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "request {i}: {body}");
        assert!(body.contains("a valid bearer token is needed"), "{body}");
    }
    let warns = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("reload request"))
            .map(str::to_owned)
            .collect()
    };
    let logs = captured.text();
    let lines = warns(&logs);
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].contains("Refused a reload request: wrong or missing bearer token."),
        "{}",
        lines[0]
    );

    // The minute over, the daemon reports the rest in one line.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let logs = captured.text();
    let lines = warns(&logs);
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[1].contains(&format!(
            "Refused {} more reload request(s) with status 401 within 60 s",
            flood - 1
        )),
        "{}",
        lines[1]
    );
    assert!(
        !logs.contains("guess-"),
        "a presented token is logged:\n{logs}"
    );
    assert!(!logs.contains(RELOAD_TOKEN), "the token is logged:\n{logs}");

    // A new minute starts with a full line again.
    let (status, _) = reload(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(warns(&captured.text()).len(), 3);

    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

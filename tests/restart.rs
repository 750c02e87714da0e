//! The real binary killed with SIGKILL while 100 messages are pending, then started again:
//! every accepted message is delivered. Then SIGTERM: a clean exit 0.
//!
//! Real processes, sockets and time, bounded: the first run paces its robot at 2 a minute so
//! messages are still pending when it is killed; the second run uses the default rate, and
//! merges the backlog into digests.

mod support;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dingrelay::outbox::{Admin, State};
use serde_json::json;
use support::mock_dingtalk::{MockDingTalk, webhook_url};

const TOKEN: &str = "restart-robot";
const SECRET: &str = "SECrestart42";

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, listen: u16, mock: std::net::SocketAddr, robot_extra: &str) -> PathBuf {
    let path = dir.join("rules.yaml");
    let text = format!(
        r#"
listen: 127.0.0.1:{listen}
state_dir: ./state
robots:
  ops:
    webhook: "{webhook}"
    allow_host: "{mock}"
    secret: {SECRET}
{robot_extra}
sources:
  am: {{ kind: alertmanager }}
rules:
  - name: alerts
    source: am
    to: ops
    text: {{ content: "{{{{ commonLabels.instance }}}} is firing" }}
"#,
        webhook = webhook_url(mock, TOKEN),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("DINGRELAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary starts")
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alert(i: usize) -> String {
    let instance = format!("node-{i:03}");
    json!({
        "version": "4", "status": "firing", "receiver": "ops", "groupKey": format!("{{}}:{{i=\"{i}\"}}"),
        "commonLabels": {"alertname": "Down", "instance": instance},
        "alerts": [{"status": "firing", "labels": {"alertname": "Down", "instance": instance},
                    "startsAt": "2026-11-24T07:00:00Z", "fingerprint": format!("{i:016x}")}],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_100_pending_then_restart_delivers_every_accepted_message() {
    let mock = MockDingTalk::new().robot(TOKEN, Some(SECRET), &[]);
    let (mock_addr, _server) = mock.clone().serve().await;
    let dir = std::env::temp_dir().join(format!("dingrelay-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // First run: two a minute, no digests, so nearly everything stays pending.
    let port = free_port();
    let config = write_config(
        &dir,
        port,
        mock_addr,
        "    rate_per_minute: 2\n    digest: false",
    );
    let mut first = spawn(&config, &dir.join("first.log"));
    wait_listening(port).await;
    let client = reqwest::Client::new();
    for i in 0..100 {
        let answer = client
            .post(format!("http://127.0.0.1:{port}/hooks/am"))
            .header("content-type", "application/json")
            .body(alert(i))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202, "alert {i}");
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let pending = Admin::open(&dir.join("state"))
        .unwrap()
        .list(Some(State::Pending), None)
        .unwrap()
        .len();
    assert!(pending >= 95, "{pending} pending at the kill");

    // Second run: the default rate, digests on.
    let port = free_port();
    let config = write_config(&dir, port, mock_addr, "");
    let mut second = spawn(&config, &dir.join("second.log"));
    wait_listening(port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let text: String = mock.messages().iter().map(|m| m.body.to_string()).collect();
        let missing: Vec<usize> = (0..100)
            .filter(|i| !text.contains(&format!("node-{i:03}")))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "never delivered: {missing:?}; {:?}",
        mock.stats()
    );
    let stats = mock.stats();
    assert!(stats.max_in_window <= 20, "{stats:?}");
    assert_eq!(stats.throttled, 0, "{stats:?}");

    // SIGTERM: a clean exit, nothing pending.
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = second.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("Ready to receive webhooks"), "{log}");
    assert!(!log.contains(SECRET), "the secret is never logged");
    let admin = Admin::open(&dir.join("state")).unwrap();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

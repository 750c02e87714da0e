//! The real binary as a process: the README's first command on the shipped rules.yaml (its docs
//! test runs it too, with the README's curl commands), and a
//! SIGKILL with 100 messages pending followed by a restart that delivers every accepted message.
//!
//! Real processes, sockets and time, bounded: each wait has a deadline of seconds.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dingrelay::outbox::{Admin, State};
use serde_json::json;

use crate::support::free_port;
use crate::support::mock_dingtalk::{MockDingTalk, webhook_url};

const TOKEN: &str = "restart-robot";
const SECRET: &str = "SECrestart42";

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

/// Sends SIGTERM and waits (bounded) for the exit.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rules_run_out_of_the_box_and_print_dry_run_requests() {
    // A copy of the shipped file, so its ./data lands in a temp dir; no variable set but the port.
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-shipped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rules.yaml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules.yaml"),
        &config,
    )
    .unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dingrelay"));
    for (name, _) in std::env::vars() {
        if name.starts_with("DINGTALK_")
            || name.starts_with("DINGRELAY_")
            || name.ends_with("_TOKEN")
            || name.ends_with("_SECRET")
            || name == "STATE_DIRECTORY"
        {
            command.env_remove(name);
        }
    }
    let mut daemon = command
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("DINGRELAY_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port).await;
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks/ci"))
        .header("content-type", "application/json")
        .body(r#"{"title": "告警 disk full", "text": "db-1 at 93%"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    // The dry-run robot prints the request; give it a moment, then stop the daemon.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exit = terminate(&mut daemon);
    let mut printed = String::new();
    std::io::Read::read_to_string(daemon.stdout.as_mut().unwrap(), &mut printed).unwrap();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        printed.contains("# dry run: robot `dev` would send"),
        "{printed}\n{log}"
    );
    assert!(
        printed.contains("POST https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN"),
        "{printed}"
    );
    assert!(printed.contains("db-1 at 93%"), "{printed}");
    assert!(
        log.contains(&format!("url=http://127.0.0.1:{port}/hooks/alertmanager")),
        "{log}"
    );
    assert!(
        dir.join("data/outbox.sqlite3").is_file(),
        "state_dir is next to the config"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-restart-{}", std::process::id()));
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
    // Each accepted alert is a pending message, or an event not yet routed into one.
    let admin = Admin::open(&dir.join("state")).unwrap();
    let pending = admin.list(Some(State::Pending), None).unwrap().len();
    let waiting = admin
        .events(&dingrelay::outbox::EventFilter::default(), true)
        .unwrap()
        .len();
    drop(admin);
    assert!(
        pending + waiting >= 95,
        "{pending} pending and {waiting} waiting at the kill"
    );

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
    let exit = terminate(&mut second);
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("Ready to receive webhooks"), "{log}");
    assert!(!log.contains(SECRET), "the secret is never logged");
    let admin = Admin::open(&dir.join("state")).unwrap();
    assert!(admin.list(Some(State::Pending), None).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every secret of a config, for the absence test.
const SECRETS: [&str; 6] = [
    "tok-9f3a7c-robot",
    "SECsign-4d2b-secret",
    "bearer-7e1d-secret",
    "gh-5b2c-secret",
    "gl-8a4f-secret",
    "reload-3c9e-secret",
];

fn secrets_config(listen: u16, mock: std::net::SocketAddr, broken: bool) -> String {
    let [token, sign, bearer, github, gitlab, reload] = SECRETS;
    let webhook = webhook_url(mock, token);
    // The broken variant has an unknown key on the very line that holds the secrets, so the
    // error shows that line.
    let robot = if broken {
        format!(
            "  ops: {{ webhook: \"{webhook}\", allow_host: \"{mock}\", secret: {sign}, keywords: [告警], keyword: x }}"
        )
    } else {
        format!(
            "  ops: {{ webhook: \"{webhook}\", allow_host: \"{mock}\", secret: {sign}, keywords: [告警] }}"
        )
    };
    format!(
        r#"
listen: 127.0.0.1:{listen}
state_dir: ./state
reload_token: {reload}
robots:
{robot}
sources:
  am: {{ kind: alertmanager, auth: {{ bearer: {bearer} }} }}
  gh: {{ kind: github, secret: {github} }}
  gl: {{ kind: gitlab, secret: {gitlab} }}
rules:
  - name: alerts
    source: am
    to: ops
    text: {{ content: "告警 {{{{ commonLabels.instance }}}}" }}
  - name: pushes
    source: gh
    when: event == "push"
    to: ops
    text: {{ content: "告警 push to {{{{ repository.full_name }}}}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_ever_appears_in_logs_metrics_or_errors() {
    // DingTalk's robot has another keyword than the config says: 310000, an ERROR line.
    let mock = MockDingTalk::new().robot(SECRETS[0], Some(SECRETS[1]), &["deploy"]);
    let (mock_addr, _server) = mock.clone().serve().await;
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = dir.join("rules.yaml");
    std::fs::write(&config, secrets_config(port, mock_addr, false)).unwrap();

    let mut seen = String::new();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("DINGRELAY_LOG", "debug")
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let send = async |request: reqwest::RequestBuilder| {
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let body = String::from_utf8_lossy(&answer.bytes().await.unwrap()).into_owned();
        (status, body)
    };

    let alert = alert(1);
    let push = r#"{"ref":"refs/heads/main","repository":{"full_name":"o/r"},"commits":[]}"#;
    let signature = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRETS[3].as_bytes()).unwrap();
        mac.update(push.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let mut answers = Vec::new();
    for (request, expected) in [
        (
            client
                .post(format!("{base}/hooks/am"))
                .bearer_auth("wrong")
                .body(alert.clone()),
            401,
        ),
        (
            client
                .post(format!("{base}/hooks/am"))
                .bearer_auth(SECRETS[2])
                .body(alert.clone()),
            202,
        ),
        (
            client
                .post(format!("{base}/hooks/gh"))
                .header("x-github-event", "push")
                .header("x-hub-signature-256", "sha256=00")
                .body(push),
            401,
        ),
        (
            client
                .post(format!("{base}/hooks/gh"))
                .header("x-github-event", "push")
                .header("x-hub-signature-256", signature.clone())
                .body(push),
            202,
        ),
        (
            client
                .post(format!("{base}/hooks/gl"))
                .header("x-gitlab-token", "wrong")
                .body("{}"),
            401,
        ),
        (
            client.post(format!("{base}/-/reload")).bearer_auth("wrong"),
            401,
        ),
        (
            client
                .post(format!("{base}/-/reload"))
                .bearer_auth(SECRETS[5]),
            200,
        ),
    ] {
        let (status, body) = send(request.header("content-type", "application/json")).await;
        assert_eq!(status, expected, "{body}");
        answers.push(body);
    }
    // Wait (bounded) for the 310000 refusal to be dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !mock.stats().by_errcode.contains_key(&310000) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        mock.stats().by_errcode.contains_key(&310000),
        "{:?}",
        mock.stats()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, metrics) = send(client.get(format!("{base}/metrics"))).await;
    seen.push_str(&metrics);

    // An invalid file whose offending line holds the secrets, reloaded by SIGHUP: refused.
    std::fs::write(&config, secrets_config(port, mock_addr, true)).unwrap();
    Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        send(client.get(format!("{base}/-/ready"))).await.0,
        200,
        "still serving"
    );
    let exit = terminate(&mut daemon);
    assert_eq!(exit.code(), Some(0));

    // The CLI on the same (broken, then fixed) file.
    for args in [
        vec!["check", config.to_str().unwrap()],
        vec![
            "outbox",
            "--state-dir",
            dir.join("state").to_str().unwrap(),
            "list",
        ],
        vec![
            "outbox",
            "--state-dir",
            dir.join("state").to_str().unwrap(),
            "show",
            "1",
        ],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
            .args(&args)
            .output()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    std::fs::write(&config, secrets_config(port, mock_addr, false)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(["check", config.to_str().unwrap()])
        .output()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&output.stdout));

    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    seen.push_str(&stderr);
    seen.push_str(&std::fs::read_to_string(dir.join("stdout")).unwrap());
    seen.push_str(&answers.join("\n"));
    // The flow did what it should, so the absence below means something.
    assert!(stderr.contains("Refused to reload"), "{stderr}");
    assert!(
        stderr.contains("keyword"),
        "the unknown key is reported: {stderr}"
    );
    assert!(stderr.contains("310000"), "{stderr}");
    assert!(
        stderr.contains("Refused an unauthenticated webhook"),
        "{stderr}"
    );
    assert!(seen.contains("dingrelay_requests_total"), "{seen}");
    for secret in SECRETS {
        assert!(!seen.contains(secret), "`{secret}` appeared:\n{seen}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn start_up_refuses_with_one_clear_line() {
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Each of these must refuse to start: one that starts is stopped after 20 s (exit `None`),
    // so the test fails instead of hanging.
    let serve = |text: &str| {
        let config = dir.join("rules.yaml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("refused.log");
        let child = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(std::fs::File::create(dir.join("refused.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = format!(
            "{}{}",
            std::fs::read_to_string(dir.join("refused.out")).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        (code, text)
    };
    let good = |listen: &str, state_dir: &str| {
        format!(
            "listen: {listen}\nstate_dir: {state_dir}\nrobots: {{ ops: {{ webhook: log }} }}\nsources: {{ ci: {{ kind: json }} }}\nrules: [ {{ name: a, source: ci, to: ops, text: {{ content: \"{{{{ text }}}}\" }} }} ]\n"
        )
    };

    // An invalid config: every error with its place, then one line saying why it did not start.
    let (code, text) =
        serve(&good("127.0.0.1:0", "./state").replace("webhook: log", "webhok: log"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("rules.yaml:3:"), "{text}");
    assert!(text.contains("dingrelay cannot start"), "{text}");

    // A file that loads but that `check` (and a reload) refuses: refused at start too, with
    // check's own report (issue 12, case 7).
    let (code, text) =
        serve(&good("127.0.0.1:0", "./state").replace("{{ text }}", "{{ text | shout }}"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("unknown filter"), "{text}");
    assert!(text.contains("check failed: "), "{text}");
    assert!(text.contains("dingrelay cannot start"), "{text}");
    let check = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(["check", dir.join("rules.yaml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    // Problems are errors: on stderr, as serve's are.
    let check_text = String::from_utf8_lossy(&check.stderr);
    let problem = check_text
        .lines()
        .find(|l| l.contains("unknown filter"))
        .unwrap_or_else(|| panic!("{check_text}"));
    assert!(
        text.contains(problem),
        "the same problem as check: {problem}\n{text}"
    );

    // A taken address.
    let taken = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, text) = serve(&good(&addr, "./state"));
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("Cannot start").count(), 1, "{text}");
    assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");

    // A state directory that cannot be created (a file is in the way).
    std::fs::write(dir.join("blocker"), "").unwrap();
    let (code, text) = serve(&good("127.0.0.1:0", "./blocker/state"));
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("Cannot start").count(), 1, "{text}");
    assert!(text.contains("blocker"), "names the directory: {text}");

    // A second daemon on the state directory of a running one (issue 12, case 6): one line that
    // names the first one's pid; the first keeps serving.
    let port = free_port();
    let first_config = dir.join("first.yaml");
    std::fs::write(
        &first_config,
        good(&format!("127.0.0.1:{port}"), "./shared"),
    )
    .unwrap();
    let mut first = spawn(&first_config, &dir.join("first.log"));
    // Started once it says so (it holds the state directory by then): its port answering alone
    // could be another process that took the port meanwhile.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(dir.join("first.log"))
        .unwrap_or_default()
        .contains("Ready to receive webhooks")
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first daemon exited: {}",
            std::fs::read_to_string(dir.join("first.log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the first daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, text) = serve(&good("127.0.0.1:0", "./shared"));
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("Cannot start").count(), 1, "{text}");
    assert!(
        text.contains(&format!(
            "another dingrelay (pid {}) already uses the state directory",
            first.id()
        )),
        "{text}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the first still serves"
    );
    assert!(terminate(&mut first).success());

    // An outbox this user cannot write (issue 12, case 4): SQLite would open it read-only and
    // every webhook would get 503; start-up refuses it instead, naming the file's owner and mode.
    let outbox = dir.join("shared").join("outbox.sqlite3");
    let (code, text) = serve_on_read_only_outbox(&dir.join("first.yaml"), &outbox);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("Cannot start").count(), 1, "{text}");
    assert!(text.contains("outbox.sqlite3"), "names the file: {text}");
    assert!(text.contains("can only be read by this user"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `serve --config config` with the outbox `file` not writable by the daemon: its mode
/// 0444, or, where that does not stop this user (root), the file mounted read-only in a private
/// mount namespace (`unshare`). Returns the exit code and the output.
fn serve_on_read_only_outbox(config: &Path, file: &Path) -> (Option<i32>, String) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let privileged = std::fs::OpenOptions::new().append(true).open(file).is_ok();
    let binary = env!("CARGO_BIN_EXE_dingrelay");
    let mut command = if privileged {
        let mut command = Command::new("unshare");
        command
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
            .args(["sh", file.to_str().unwrap(), binary]);
        command
    } else {
        Command::new(binary)
    };
    let log = file.with_extension("log");
    let child = command
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("the binary (and, for root, util-linux's unshare) runs");
    // A daemon that starts on it would serve forever: stopped after 20 s, and the test fails.
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(child);
    (code, std::fs::read_to_string(&log).unwrap())
}

/// A child process killed (and reaped) when the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM the moment the daemon answers on its port, five times in a row: each run exits 0 and
/// its log ends with the shutdown's lines. A SIGTERM before the handler was installed ended the
/// process without a line (killed by the signal), and a shutdown whose server finished first
/// exited 0 without "Shutting down" or "Stopped".
#[test]
fn sigterm_at_once_logs_the_shutdown_every_time() {
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for trial in 1..=5 {
        let port = free_port();
        let config = dir.join("rules.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nstate_dir: ./state\nrobots:\n  ops: {{ webhook: log }}\n\
                 sources:\n  am: {{ kind: alertmanager }}\n\
                 rules:\n  - {{ name: alerts, source: am, to: ops, text: {{ content: \"{{{{ status }}}}\" }} }}\n"
            ),
        )
        .unwrap();
        let log = dir.join(format!("trial-{trial}.log"));
        let mut daemon = KillOnDrop(spawn(&config, &log));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                daemon.0.try_wait().unwrap().is_none(),
                "trial {trial}: the daemon exited at start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "trial {trial}: not listening");
            std::thread::sleep(Duration::from_millis(2));
        }
        let exit = terminate(&mut daemon.0);
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(exit.code(), Some(0), "trial {trial}: {exit}\n{text}");
        let lines: Vec<&str> = text.lines().collect();
        let shutting = lines.iter().position(|l| l.contains("Shutting down:"));
        assert!(
            shutting.is_some(),
            "trial {trial}: no \"Shutting down\" line:\n{text}"
        );
        assert!(
            lines.last().is_some_and(|l| l.contains("Stopped;")),
            "trial {trial}: the last line is not \"Stopped\":\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14: a wrong appSecret is a clear error at start-up, from the real binary, without the
/// secret in it; DingTalk (the stand-in on loopback) is asked for the app's token before serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_app_secret_stops_start_up_with_one_clear_line() {
    let mock = MockDingTalk::new()
        .app("dingoncallapp", "the-right-s3cret")
        .conversation("cidOPS==", &[]);
    let (addr, server) = mock.serve().await;
    let dir = crate::support::scratch_dir().join(format!("dingrelay-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rules.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nstate_dir: ./state\n\
             apps: {{ oncall: {{ app_key: dingoncallapp, app_secret: wrong-s3cret-4711, base_url: 'http://{addr}' }} }}\n\
             robots: {{ group: {{ app: oncall, conversation: 'cidOPS==' }} }}\n\
             sources: {{ ci: {{ kind: json }} }}\n\
             rules: [ {{ name: a, source: ci, to: group, text: {{ content: \"{{{{ text }}}}\" }} }} ]\n"
        ),
    )
    .unwrap();
    let (code, text) = tokio::task::spawn_blocking(move || {
        let child = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A daemon that starts would serve forever: stopped after 20 s, and the test fails.
        let mut child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.0.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.0.kill();
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut stdout) = child.0.stdout.take() {
            let _ = stdout.read_to_string(&mut text);
        }
        if let Some(mut stderr) = child.0.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        (child.0.wait().unwrap().code(), text)
    })
    .await
    .unwrap();
    server.abort();
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(text.matches("Cannot start").count(), 1, "{text}");
    assert!(
        text.contains("DingTalk refused app `oncall`'s appKey or appSecret"),
        "{text}"
    );
    assert!(!text.contains("wrong-s3cret-4711"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! The `dingrelay` binary as a user runs it: `check` and `render`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with none of the shipped file's variables set.
fn dingrelay(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dingrelay"));
    command.args(args).current_dir(root());
    for (name, _) in std::env::vars() {
        if name.starts_with("DINGTALK_")
            || name.starts_with("DINGRELAY_")
            || name.ends_with("_TOKEN")
            || name.ends_with("_SECRET")
        {
            command.env_remove(name);
        }
    }
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_passes_on_the_shipped_rules_with_no_variables_set() {
    let output = dingrelay(&["check"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("check passed"), "{text}");
    // Every rule rendered at least one valid example message.
    let shipped = std::fs::read_to_string(root().join("rules.yaml")).unwrap();
    for name in shipped
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
    {
        assert!(
            text.contains(&format!("ok     rule `{name}`")),
            "rule {name} was not exercised:\n{text}"
        );
    }
}

#[test]
fn check_catches_an_unknown_filter_with_rule_and_line() {
    let config = temp_config(
        "filter",
        "robots:\n  ops: { webhook: log }\nsources:\n  am: { kind: alertmanager }\nrules:\n  - name: bad-filter\n    source: am\n    to: ops\n    markdown:\n      title: x\n      text: |\n        fine\n        {{ status | shout }}\n",
    );
    let output = dingrelay(&["check", config.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("rule `bad-filter`"), "{text}");
    assert!(text.contains("unknown filter"), "{text}");
    assert!(text.contains("template line 2"), "{text}");
    // The very line of the file where the filter is used.
    assert!(
        text.contains("rules.yaml:13:9: error: rule `bad-filter`"),
        "{text}"
    );
    // Reported once, naming the examples it failed on.
    assert_eq!(text.matches("unknown filter").count(), 1, "{text}");
}

#[test]
fn check_catches_an_unknown_variable() {
    let config = temp_config(
        "variable",
        "robots:\n  ops: { webhook: log }\nsources:\n  am: { kind: alertmanager }\nrules:\n  - name: typo\n    source: am\n    to: ops\n    text: { content: \"{{ comonLabels.alertname }}\" }\n",
    );
    let output = dingrelay(&["check", config.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("unknown variable `comonLabels`"), "{text}");
    // At the name, in the template's field, with the line shown.
    assert!(
        text.contains("rules.yaml:9:22: error: rule `typo`"),
        "{text}"
    );
    assert!(
        text.contains(
            "9 |     text: { content: \"{{ comonLabels.alertname }}\" }\n  |                      ^"
        ),
        "{text}"
    );
}

#[test]
fn check_reports_a_broken_file_with_location() {
    let config = temp_config("broken", "robots:\n  ops: { webhok: log }\n");
    let output = dingrelay(&["check", config.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(stdout(&output).is_empty(), "errors only on stderr");
    assert!(text.contains("rules.yaml:2:"), "{text}");
    assert!(text.contains("webhok"), "{text}");
}

#[test]
fn render_prints_the_exact_bodies() {
    let output = dingrelay(&[
        "render",
        "--payload",
        "tests/fixtures/corpus/github/push.with-new-branch.json",
        "--event",
        "push",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("# rule `github-push` -> robot `dev` (dry run)"),
        "{text}"
    );
    let body = text
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON body");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["msgtype"], "markdown");
}

#[test]
fn render_says_which_conditions_were_false() {
    let output = dingrelay(&[
        "render",
        "--payload",
        "tests/fixtures/corpus/github/star.created.json",
        "--event",
        "star",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("no rule matched"), "{text}");
    assert!(
        text.contains("rule `github-push`: condition is false: event == \"push\""),
        "{text}"
    );
}

#[test]
fn render_guesses_the_source_of_an_alertmanager_payload() {
    let output = dingrelay(&[
        "render",
        "--payload",
        "tests/fixtures/corpus/alertmanager/prom2teams.all_ok_multiple.json",
    ]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("source `alertmanager`"), "{text}");
    assert!(text.contains("robot `ops`"), "{text}");
}

#[test]
fn help_has_examples() {
    for args in [&["--help"][..], &["check", "--help"], &["render", "--help"]] {
        let text = stdout(&dingrelay(args));
        assert!(text.contains("Examples:"), "{args:?}: {text}");
    }
}

/// A config for the stream and flag tests: one alertmanager source, one github source, one rule
/// that cannot render (an unknown filter) on github pushes.
const TWO_SOURCES: &str = "robots:\n  ops: { webhook: log }\nsources:\n  am: { kind: alertmanager }\n  gh: { kind: github }\nrules:\n  - name: alerts\n    source: am\n    to: ops\n    text: { content: \"{{ status }}\" }\n  - name: pushes\n    source: gh\n    to: ops\n    text: { content: \"{{ event | shout }}\" }\n";

#[test]
fn every_subcommand_takes_the_config_by_flag_and_by_environment() {
    let config = temp_config(
        "flag",
        TWO_SOURCES.split("  - name: pushes").next().unwrap(),
    );
    let path = config.to_str().unwrap();
    // check: positional, --config, and DINGRELAY_CONFIG.
    for args in [vec!["check", path], vec!["check", "--config", path]] {
        let output = dingrelay(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains(&format!("{path}: loaded")),
            "{args:?}"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .arg("check")
        .env("DINGRELAY_CONFIG", path)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("{path}: loaded")));
    // render and outbox take it too.
    let output = dingrelay(&[
        "render",
        "--config",
        path,
        "--payload",
        "tests/fixtures/corpus/alertmanager/prom2teams.all_ok_multiple.json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("# rule `alerts` -> robot `ops`"));
}

#[test]
fn test_takes_a_config_that_overrides_the_test_files() {
    let config = temp_config(
        "test-flag",
        TWO_SOURCES.split("  - name: pushes").next().unwrap(),
    );
    let dir = config.parent().unwrap();
    let tests = dir.join("t.test.yaml");
    std::fs::write(
        &tests,
        "config: no-such.yaml\ntests:\n  - name: firing\n    payload: { version: \"4\", status: firing, receiver: r, groupKey: k, alerts: [{ status: firing, labels: { alertname: A }, annotations: {}, startsAt: \"2024-01-01T00:00:00Z\" }], commonLabels: { alertname: A }, commonAnnotations: {}, groupLabels: {}, externalURL: \"http://am\" }\n    expect:\n      - rule: alerts\n        robot: ops\n",
    )
    .unwrap();
    // The file's own config does not exist: invalid, on stderr.
    let output = dingrelay(&["test", tests.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("no-such.yaml"),
        "{}",
        stderr(&output)
    );
    // --config replaces it.
    let output = dingrelay(&[
        "test",
        "--config",
        config.to_str().unwrap(),
        tests.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("1 passed, 0 failed"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn render_writes_bodies_to_stdout_and_errors_to_stderr() {
    let config = temp_config("streams", TWO_SOURCES);
    let path = config.to_str().unwrap();
    // A rule that fails to render: stdout has only the event line, stderr the error.
    let output = dingrelay(&[
        "render",
        "--config",
        path,
        "--payload",
        "tests/fixtures/corpus/github/push.with-new-branch.json",
        "--event",
        "push",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(!out.contains("error"), "stdout: {out}");
    assert!(err.contains("error: rule `pushes`"), "stderr: {err}");
    // A config that does not load: nothing on stdout.
    let broken = temp_config("streams-broken", "robots: [\n");
    let output = dingrelay(&[
        "render",
        "--config",
        broken.to_str().unwrap(),
        "--payload",
        "tests/fixtures/corpus/github/push.with-new-branch.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("rules.yaml:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn render_of_a_github_payload_without_event_says_to_give_it() {
    let config = temp_config("no-event", TWO_SOURCES);
    let output = dingrelay(&[
        "render",
        "--config",
        config.to_str().unwrap(),
        "--source",
        "gh",
        "--payload",
        "tests/fixtures/corpus/github/push.with-new-branch.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("--event <name>"), "{err}");
    assert!(err.contains("X-GitHub-Event"), "{err}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn outbox_errors_go_to_stderr() {
    let dir = crate::support::scratch_dir()
        .join(format!("dingrelay-cli-{}-no-outbox", std::process::id()));
    let output = dingrelay(&["outbox", "--state-dir", dir.to_str().unwrap(), "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    assert!(
        stderr(&output).starts_with("error: no outbox at "),
        "{}",
        stderr(&output)
    );
}

/// A config with an app whose appSecret is `secret`, its APIs at `base`.
fn app_config(base: &str, secret: &str) -> String {
    format!(
        r#"
apps:
  oncall:
    app_key: dingoncallapp
    app_secret: {secret}
    base_url: {base}
robots:
  ops-app:
    app: oncall
    conversation: "cidOPS=="
sources:
  am: {{ kind: alertmanager }}
rules:
  - name: all
    source: am
    to: ops-app
    markdown: {{ title: "{{{{ status }}}}", text: "{{{{ commonLabels.alertname }}}}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_asks_dingtalk_whether_an_apps_secret_is_right_without_showing_it() {
    let mock = crate::support::mock_dingtalk::MockDingTalk::new()
        .app("dingoncallapp", "the-right-s3cret")
        .conversation("cidOPS==", &[]);
    let (addr, server) = mock.serve().await;
    let base = format!("http://{addr}");

    let right = temp_config("app-right", &app_config(&base, "the-right-s3cret"));
    let output =
        tokio::task::spawn_blocking(move || dingrelay(&["check", right.to_str().unwrap()]))
            .await
            .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "ok     app `oncall`: DingTalk gave an access token for appKey dingoncallapp"
        ),
        "{}",
        stdout(&output)
    );

    let wrong = temp_config("app-wrong", &app_config(&base, "wrong-s3cret-4711"));
    let output =
        tokio::task::spawn_blocking(move || dingrelay(&["check", wrong.to_str().unwrap()]))
            .await
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: DingTalk refused app `oncall`'s appKey or appSecret (HTTP 400, invalidClientIdOrSecret"),
        "{err}"
    );
    assert!(
        err.contains("fix apps.oncall.app_key and app_secret"),
        "{err}"
    );
    assert!(!err.contains("wrong-s3cret-4711"), "{err}");
    assert!(!stdout(&output).contains("wrong-s3cret-4711"));

    // --offline does not ask; DingTalk out of reach is a warning, not a failure.
    let offline = temp_config("app-offline", &app_config(&base, "wrong-s3cret-4711"));
    let output = tokio::task::spawn_blocking(move || {
        dingrelay(&["check", "--offline", offline.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    server.abort();
    let _ = server.await;
    let unreachable = temp_config("app-gone", &app_config(&base, "wrong-s3cret-4711"));
    let output =
        tokio::task::spawn_blocking(move || dingrelay(&["check", unreachable.to_str().unwrap()]))
            .await
            .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: could not get app `oncall`'s access token"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn render_prints_the_app_apis_request_bodies_one_per_person() {
    let config = temp_config(
        "app-render",
        r#"
apps:
  oncall: { app_key: dingoncallapp, app_secret: s, agent_id: 4000001 }
robots:
  owners: { app: oncall, kind: one_to_one, users: ['{{ commonLabels.owner }}', lin] }
  notice: { app: oncall, kind: work_notification, users: [lin], departments: ["7"] }
sources:
  am: { kind: alertmanager }
rules:
  - name: page
    source: am
    to: [owners, notice]
    markdown: { title: "{{ commonLabels.alertname }}", text: "**{{ status }}**" }
"#,
    );
    let payload = config.with_file_name("alert.json");
    std::fs::write(
        &payload,
        r#"{"version":"4","status":"firing","receiver":"r","groupKey":"g","groupLabels":{},
           "commonLabels":{"alertname":"DiskFull","owner":"wang"},"commonAnnotations":{},
           "externalURL":"http://am","alerts":[]}"#,
    )
    .unwrap();
    let output = dingrelay(&[
        "render",
        "--config",
        config.to_str().unwrap(),
        "--payload",
        payload.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "# rule `page` -> robot `owners` to wang (app `oncall`, one-to-one chats with {{ commonLabels.owner }}, lin)",
        "{out}"
    );
    assert_eq!(
        lines[2],
        r#"{"robotCode":"dingoncallapp","userIds":["wang"],"msgKey":"sampleMarkdown","msgParam":"{\"title\":\"DiskFull\",\"text\":\"**firing**\"}"}"#
    );
    assert!(lines[3].contains("robot `owners` to lin"), "{out}");
    assert_eq!(
        lines[6],
        r#"{"agent_id":4000001,"msg":{"msgtype":"markdown","markdown":{"title":"DiskFull","text":"**firing**"}},"userid_list":"lin","dept_id_list":"7"}"#
    );
}

#[test]
fn check_notes_a_one_to_one_robot_whose_users_name_no_one_on_an_example() {
    let text = |users: &str| {
        format!(
            r#"
apps:
  oncall: {{ app_key: dingoncallapp, app_secret: s }}
robots:
  owner: {{ app: oncall, kind: one_to_one, users: ['{users}'] }}
sources:
  am: {{ kind: alertmanager }}
rules:
  - {{ name: page, source: am, to: owner, template: alertmanager }}
"#
        )
    };
    let bare = temp_config("oto-bare", &text("{{ commonLabels.owner }}"));
    let output = dingrelay(&["check", "--offline", bare.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "note   rule `page` -> robot `owner`: its `users` name no one on example `firing`; such a message is dead-lettered"
        ),
        "{}",
        stdout(&output)
    );
    let defaulted = temp_config(
        "oto-default",
        &text("{{ commonLabels.owner or \"lead0001\" }}"),
    );
    let output = dingrelay(&["check", "--offline", defaulted.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stdout(&output).contains("name no one"),
        "{}",
        stdout(&output)
    );
}

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

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dingrelay-cli-{}-{name}", std::process::id()));
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
    let text = stdout(&output);
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
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("unknown variable `comonLabels`"), "{text}");
}

#[test]
fn check_reports_a_broken_file_with_location() {
    let config = temp_config("broken", "robots:\n  ops: { webhok: log }\n");
    let output = dingrelay(&["check", config.to_str().unwrap()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
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

//! `dingrelay test`, as a user runs it: the shipped rules.test.yaml passes and covers every rule
//! of the shipped rules.yaml; the runner reports passing tests, failing ones with what differs,
//! invalid test files (located, exit 2), inline payloads and refusals. The runner's own test
//! files are in tests/fixtures/rule-tests, against the small config there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const FIXTURES: &str = "tests/fixtures/rule-tests";

/// Runs `dingrelay ARGS` from the repository root, with none of the shipped file's variables
/// set; returns the exit code and stdout.
fn dingrelay(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dingrelay"));
    command.args(args).current_dir(root());
    for (name, _) in std::env::vars() {
        if name.starts_with("DINGTALK_")
            || name.starts_with("DINGRELAY_")
            || name.starts_with("RULE_TESTS_")
            || name.ends_with("_TOKEN")
            || name.ends_with("_SECRET")
        {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let output: Output = command.output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // What went wrong with a test file is on stderr, the tests' results on stdout: the text
    // tests read is stdout, then stderr.
    (
        output.status.code(),
        format!("{}{stderr}", String::from_utf8_lossy(&output.stdout)),
    )
}

fn test_files(files: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["test"];
    args.extend_from_slice(files);
    dingrelay(&args, &[])
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// A test file of its own in a fresh directory; paths in it are absolute.
fn temp_test_file(name: &str, text: &str) -> PathBuf {
    let dir = crate::support::scratch_dir().join(format!(
        "dingrelay-rule-tests-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.test.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
}

#[test]
fn the_shipped_rule_tests_pass() {
    let (code, out) = test_files(&["rules.test.yaml"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

/// Robots with security keywords work with every built-in template, with no rule changed: a
/// message that has none of the robot's keywords carries the robot's first in front of its title
/// (issue 13). With `ops: [告警]` and `dev: [GitHub, GitLab, 通知]`, `check` passes and the
/// shipped rule tests stay green; `render` says which keyword the robot put where.
#[test]
fn keyword_robots_pass_check_and_the_shipped_rule_tests() {
    let dir = crate::support::scratch_dir().join(format!(
        "dingrelay-rule-tests-{}-keywords",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The test file's payload paths are relative to it: the same tree, seen from here.
    for name in ["tests", "src"] {
        std::os::unix::fs::symlink(root().join(name), dir.join(name)).unwrap();
    }
    std::fs::copy(root().join("rules.test.yaml"), dir.join("rules.test.yaml")).unwrap();
    let shipped = std::fs::read_to_string(root().join("rules.yaml")).unwrap();
    let with_keywords = shipped
        .replacen("  ops:\n", "  ops:\n    keywords: [告警]\n", 1)
        .replacen(
            "  dev:\n",
            "  dev:\n    keywords: [GitHub, GitLab, 通知]\n",
            1,
        );
    assert_eq!(
        with_keywords.matches("keywords: [").count(),
        2 + shipped.matches("keywords: [").count()
    );
    std::fs::write(dir.join("rules.yaml"), &with_keywords).unwrap();
    let config = dir.join("rules.yaml");
    let config = config.to_str().unwrap();

    let (code, out) = dingrelay(&["check", config], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("check passed"), "{out}");
    let (code, out) = dingrelay(
        &["test", dir.join("rules.test.yaml").to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");

    let payload = dir.join("deploy.json");
    std::fs::write(
        &payload,
        r#"{"title": "Deploy api v2.3 done", "text": "by lin"}"#,
    )
    .unwrap();
    let (code, out) = dingrelay(
        &[
            "render",
            "--config",
            config,
            "--source",
            "ci",
            "--payload",
            payload.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_contains(
        &out,
        &[
            "# source `ci` (json), no event name;",
            "robot `dev` (dry run); the robot's keyword 【GitHub】 put in front",
            r#""content":"【GitHub】Deploy api v2.3 done"#,
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_rule_tests_cover_every_rule() {
    let config = std::fs::read_to_string(root().join("rules.yaml")).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
    let tests = std::fs::read_to_string(root().join("rules.test.yaml")).unwrap();
    let tests: serde_yaml::Value = serde_yaml::from_str(&tests).unwrap();
    let tested: Vec<&str> = tests["tests"]
        .as_sequence()
        .expect("tests is a list")
        .iter()
        .filter_map(|test| test["expect"].as_sequence())
        .flatten()
        .filter_map(|expected| expected["rule"].as_str())
        .collect();
    let rules = config["rules"].as_sequence().expect("rules is a list");
    assert!(!rules.is_empty());
    for rule in rules {
        let name = rule["name"].as_str().expect("every rule has a name");
        assert!(
            tested.contains(&name),
            "rule `{name}` of rules.yaml has no test in rules.test.yaml"
        );
    }
    let nothing = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|test| test["expect"].as_sequence().is_some_and(Vec::is_empty));
    let refused = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|test| test["refused"].as_u64().is_some());
    assert!(nothing && refused, "a nothing-matches and a refused test");
}

#[test]
fn a_passing_file() {
    let (code, out) = test_files(&[&fixture("pass.test.yaml")]);
    assert_eq!(code, Some(0), "{out}");
    assert_contains(
        &out,
        &[
            "# tests/fixtures/rule-tests/pass.test.yaml: 3 tests of tests/fixtures/rule-tests/rules.yaml\n",
            "ok   a critical alert pages ops, then the digest goes to both robots\n",
            "ok   a GitHub push\n",
            "ok   a GitHub star matches nothing\n",
            "\n3 passed, 0 failed\n",
        ],
    );
}

#[test]
fn a_failing_file_says_what_differs() {
    let (code, out) = test_files(&[&fixture("fail.test.yaml")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.ends_with("\n0 passed, 10 failed\n"), "{out}");
    assert!(!out.contains("\nok "), "{out}");
    let file = "tests/fixtures/rule-tests/fail.test.yaml";
    assert_contains(
        &out,
        &[
            // A missing message when nothing matched: each condition that was false.
            &format!("FAIL expects a push but nothing matches ({file}:5:5)\n"),
            &format!("  missing: rule `gh-push` -> robot `dev` (expected at {file}:10:9)\n"),
            "  nothing came out: no rule matched this event:\n    rule `gh-push`: condition is false: event == \"push\"\n",
            // A missing message beside others: why that rule did not fire, and what came out.
            &format!(
                "  missing: rule `page` -> robot `ops` (expected at {file}:20:9)\n    it did not fire: condition is false: status == \"firing\" and commonLabels.severity == \"critical\"\n"
            ),
            "  unexpected: rule `digest` -> robot `dev`: text \"[prod] firing: 1 alert(s)\"\n",
            // A text that differs: a line diff.
            "    text differs (- expected, + actual):\n",
            "      - | - db-2: disk 99% full, for 30m\n      + | - db-2: disk 97% full, for 30m\n",
            "        | - db-1: disk 93% full, for 3h\n",
            // Every other assertion.
            "    msgtype: expected markdown, got actionCard\n",
            "    title: expected \"Deploy web v2.3\", got \"Deploy api v2.3\"\n",
            "    title does not contain \"web\": \"Deploy api v2.3\"\n",
            "    text does not contain \"deployed by chen\"\n",
            "    text contains \"lin\", which it must not\n",
            "    the text is:\n      | api v2.3 deployed by lin\n",
            "    mentions (atMobiles and atUserIds): expected [\"13800001111\"], got []\n",
            "    at_all (isAtAll): expected true, got false\n",
            "    buttons: expected [\"Logs\"], got [\"Logs\", \"Rollback\"]\n",
            "    links: an actionCard message has no links (only feedCard has)\n",
            "    url: expected \"https://ci.example.com/x\", got \"https://ci.example.com/l\"\n",
            // Order.
            "  the messages came out in another order; expected:\n    rule `digest` -> robot `dev`\n",
            "  came out:\n    rule `page` -> robot `ops`: markdown \"PAGE DiskFull\"\n",
            // Refusals.
            "  expected a refusal with 400, but the daemon would accept the payload (202)\n  came out:\n    rule `anything` -> robot `dev`: text \"{\\\"a\\\": 1}\"\n",
            "  a rule fails on this payload (the daemon would send its robots a fallback message instead): rule `link`, robot `dev`: link.text: is required and must not be empty\n",
            "  expected a refusal with 415, but the daemon would answer 400: malformed request: body is not valid JSON",
            "  the refusal (400) does not say \"too large\": malformed request",
            // A message expected more often than it was sent.
            &format!(
                "  missing: rule `anything` -> robot `dev` (expected at {file}:90:34)\n    the rule sent 1 message to this robot, 2 are expected\n"
            ),
        ],
    );
}

#[test]
fn an_invalid_file_is_located_and_not_run() {
    let (code, out) = test_files(&[&fixture("invalid.test.yaml")]);
    assert_eq!(code, Some(2), "{out}");
    let file = "tests/fixtures/rule-tests/invalid.test.yaml";
    assert_contains(
        &out,
        &[
            &format!(
                "{file}:5:13: test `unknown source`: unknown source `prometheus` (sources: am, gh, ci)\n  |\n5 |     source: prometheus\n  |             ^\n"
            ),
            &format!(
                "{file}:12:15: test `unknown rule, and a robot the rule does not send to`: unknown rule `paging`"
            ),
            &format!(
                "{file}:14:16: test `unknown rule, and a robot the rule does not send to`: rule `page` does not send to robot `dev` (it sends to ops)\n"
            ),
            &format!(
                "{file}:17:12: test `an event for an alert source`: `event` does not apply to alertmanager sources"
            ),
            &format!("{file}:21:5: test `no payload`: no payload"),
            &format!(
                "{file}:29:5: test `both expect and refused`: `expect` and `refused` are both set"
            ),
            &format!("{file}:32:19: test `a payload file that is not there`: cannot read "),
            &format!(
                "{file}:33:14: test `a payload file that is not there`: refused: 404 is not a status"
            ),
            &format!("error: {file}: 8 errors; no test of this file was run\n"),
            "0 passed, 0 failed, 1 test file invalid (not run)\n",
        ],
    );
    assert!(!out.contains("ok   "), "{out}");
}

#[test]
fn inline_payloads_headers_and_query() {
    let (code, out) = test_files(&[&fixture("inline.test.yaml")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n3 passed, 0 failed\n"), "{out}");
}

#[test]
fn refusals() {
    let (code, out) = test_files(&[&fixture("refused.test.yaml")]);
    assert_eq!(code, Some(0), "{out}");
    assert_contains(
        &out,
        &[
            "ok   a link without a URL fails its rule (422)\n",
            "ok   an old Alertmanager payload (400)\n",
            "ok   a body that is not JSON (400)\n",
            "ok   a text/plain body (415)\n",
            "\n4 passed, 0 failed\n",
        ],
    );
}

#[test]
fn every_file_runs_and_the_worst_exit_code_wins() {
    let (code, out) = test_files(&[
        &fixture("pass.test.yaml"),
        &fixture("fail.test.yaml"),
        &fixture("invalid.test.yaml"),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("\n3 passed, 10 failed, 1 test file invalid (not run)\n"),
        "{out}"
    );
    let (code, out) = test_files(&[&fixture("pass.test.yaml"), &fixture("fail.test.yaml")]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = test_files(&[&fixture("no-such.test.yaml")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("no-such.test.yaml: cannot read the test file"),
        "{out}"
    );
}

#[test]
fn the_config_sees_only_the_variables_of_the_test_file() {
    let config = root().join(FIXTURES).join("rules.yaml");
    let payload = root().join(FIXTURES).join("critical.json");
    let file = temp_test_file(
        "env",
        &format!(
            "config: {}\ntests:\n  - name: x\n    payload_file: {}\n    expect: []\n",
            config.display(),
            payload.display()
        ),
    );
    // Set in the process environment, but not in the test file's `env`.
    let (code, out) = dingrelay(
        &["test", file.to_str().unwrap()],
        &[("RULE_TESTS_CLUSTER", "prod")],
    );
    assert_eq!(code, Some(2), "{out}");
    assert_contains(
        &out,
        &[
            "rules.yaml:18:9: rules[0].markdown.text: environment variable `RULE_TESTS_CLUSTER` is not set",
            "t.test.yaml: its config ",
            "is invalid (2 errors above); no test of this file was run\n",
        ],
    );
}

#[test]
fn yaml_mistakes_are_located() {
    let payload = root().join(FIXTURES).join("critical.json");
    let config = root().join(FIXTURES).join("rules.yaml");
    let file = temp_test_file(
        "unknown-key",
        &format!(
            "config: {}\nenv: {{ RULE_TESTS_CLUSTER: prod }}\ntests:\n  - name: x\n    payload_file: {}\n    expect:\n      - rule: page\n        titel: PAGE\n",
            config.display(),
            payload.display()
        ),
    );
    let (code, out) = dingrelay(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert_contains(
        &out,
        &[
            "t.test.yaml:8:9: tests[0].expect[0]: unknown field `titel`, expected one of `rule`, `robot`",
            "8 |         titel: PAGE\n  |         ^\n",
        ],
    );

    let file = temp_test_file("syntax", "tests:\n  - name: x\n    payload: { a: [1 }\n");
    let (code, out) = dingrelay(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("t.test.yaml:3:"), "{out}");

    // A byte order mark (Notepad's) is not content, and lines stay right.
    let file = temp_test_file(
        "bom",
        "\u{feff}tests:\n  - name: x\n    payload: { a: [1 }\n",
    );
    let (code, out) = dingrelay(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("t.test.yaml:3:"), "{out}");
    assert!(!out.contains("more than one document"), "{out}");
}

#[test]
fn hostile_test_files_are_errors_not_panics() {
    for (name, text) in [
        ("empty", String::new()),
        ("scalar", "just text".to_owned()),
        ("list", "- a\n- b\n".to_owned()),
        ("tests-scalar", "tests: 5\n".to_owned()),
        ("tests-empty", "tests: []\n".to_owned()),
        ("binary", "\u{0}\u{1}\u{fffe}".to_owned()),
        ("deep", "tests: ".to_owned() + &"[".repeat(5000)),
        (
            "big-status",
            "tests:\n  - { name: x, payload: {}, refused: 99999999 }\n".to_owned(),
        ),
        (
            "status-text",
            "tests:\n  - { name: x, payload: {}, refused: often }\n".to_owned(),
        ),
        (
            "null-everything",
            "config:\nnow:\nenv:\ntests:\n  - name:\n    payload:\n    expect:\n".to_owned(),
        ),
    ] {
        let file = temp_test_file(name, &text);
        let (code, out) = dingrelay(&["test", file.to_str().unwrap()], &[]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(
            out.contains("no test of this file was run"),
            "{name}: {out}"
        );
        assert!(
            !out.contains('\u{1b}'),
            "{name}: an escape reached the terminal: {out}"
        );
        for word in dingrelay::config::RUST_WORDS {
            assert!(!out.contains(word), "{name}: `{word}` in: {out}");
        }
    }
}

#[test]
fn escape_sequences_in_a_test_file_do_not_reach_the_terminal() {
    let config = root().join(FIXTURES).join("rules.yaml");
    let file = temp_test_file(
        "escape",
        &format!(
            "config: {}\nenv: {{ RULE_TESTS_CLUSTER: prod }}\ntests:\n  - name: \"\\e[31mred\"\n    source: \"\\e[2J\"\n    payload: {{}}\n    expect: []\n  - name: \"\\e[32mgreen\"\n    source: ci\n    payload: {{ \"\\e[1m\": 1 }}\n    expect: [{{ rule: anything, text: \"\\e[0m\" }}]\n    \"\\e[5m\": 1\n",
            config.display()
        ),
    );
    let (code, out) = dingrelay(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "an escape reached the terminal: {out}"
    );
}

#[test]
fn a_rule_that_sends_several_messages_is_listed_once_per_message() {
    let (code, out) = test_files(&[&fixture("per-alert.test.yaml")]);
    assert_eq!(code, Some(1), "{out}");
    assert_contains(
        &out,
        &[
            "ok   one message per alert, in order\n",
            "FAIL one message too few (tests/fixtures/rule-tests/per-alert.test.yaml:10:5)\n  unexpected: rule `each-alert` -> robot `ops`: text \"firing: db-2\"\n",
            "\n1 passed, 1 failed\n",
        ],
    );
}

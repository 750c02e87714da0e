//! Config errors name the file, line and column, show the offending line with a caret, and are
//! all reported at once.

use std::path::Path;

use dingrelay::config::Config;

const GOOD: &str = r#"
robots:
  ops:
    webhook: log
sources:
  am: { kind: alertmanager }
rules:
  - name: all
    source: am
    to: [ops]
    text:
      content: "{{ status }} {{ commonLabels.alertname }}"
"#;

fn load(text: &str) -> Result<Config, String> {
    load_with(text, &|_| None)
}

fn load_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    Config::parse("rules.yaml", text, Path::new("."), env).map_err(|e| e.to_string())
}

/// The `rules.yaml:LINE:COL:` prefix of the first error line containing `needle`.
fn position_of(error: &str, needle: &str) -> (usize, usize) {
    let line = error
        .lines()
        .find(|l| l.starts_with("rules.yaml:") && l.contains(needle))
        .unwrap_or_else(|| panic!("no error mentions `{needle}`:\n{error}"));
    let mut parts = line.splitn(4, ':');
    parts.next();
    let l = parts.next().unwrap().parse().unwrap();
    let c = parts.next().unwrap().parse().unwrap();
    (l, c)
}

#[test]
fn a_good_config_loads() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.rules.rules().len(), 1);
}

#[test]
fn unknown_key_is_located() {
    let text = GOOD.replace("    webhook: log", "    webhook: log\n    keyword: [x]");
    let error = load(&text).unwrap_err();
    assert!(error.contains("unknown field `keyword`"), "{error}");
    assert_eq!(position_of(&error, "keyword"), (5, 5), "{error}");
    // The offending line is shown, with a caret under the column; under a robot, where a
    // misspelled key may hold a secret, with its value masked.
    assert!(error.contains("5 |     keyword: [***]\n"), "{error}");
    assert!(error.contains("|     ^"), "{error}");
}

#[test]
fn wrong_type_is_located() {
    let text = GOOD.replace("    to: [ops]", "    to: [ops]\n    stop: maybe");
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("`stop` must be true or false, not the string \"maybe\""),
        "{error}"
    );
    let (line, _) = position_of(&error, "must be true or false");
    assert_eq!(line, 11, "{error}");
}

#[test]
fn unknown_robot_and_source_are_all_reported_at_once() {
    let text = GOOD
        .replace("to: [ops]", "to: [ops, opps]")
        .replace("source: am", "source: amm");
    let error = load(&text).unwrap_err();
    assert_eq!(
        position_of(&error, "unknown robot `opps`"),
        (10, 15),
        "{error}"
    );
    assert_eq!(
        position_of(&error, "unknown source `amm`"),
        (9, 13),
        "{error}"
    );
    assert!(
        error.contains("robots: ops"),
        "the known robots are listed: {error}"
    );
}

#[test]
fn unset_variable_is_named_and_located() {
    let text = GOOD.replace("webhook: log", "webhook: ${DINGTALK_OPS_WEBHOOK}");
    let error = load(&text).unwrap_err();
    assert!(error.contains("DINGTALK_OPS_WEBHOOK"), "{error}");
    assert_eq!(
        position_of(&error, "DINGTALK_OPS_WEBHOOK"),
        (4, 14),
        "{error}"
    );

    // With the variable set, the same file loads, and the token is not in any output.
    let env = |name: &str| {
        (name == "DINGTALK_OPS_WEBHOOK")
            .then(|| "https://oapi.dingtalk.com/robot/send?access_token=tok3n-s3cret".to_owned())
    };
    let config = load_with(&text, &env).unwrap();
    assert!(!format!("{config:?}").contains("tok3n-s3cret"));
}

#[test]
fn template_syntax_error_is_located() {
    let text = GOOD.replace("{{ status }}", "{{ status }");
    let error = load(&text).unwrap_err();
    assert!(error.contains("text.content"), "{error}");
    assert!(error.contains("syntax error"), "{error}");
    assert_eq!(position_of(&error, "text.content").0, 12, "{error}");
}

#[test]
fn when_syntax_error_is_located() {
    let text = GOOD.replace("    to: [ops]", "    when: status ==\n    to: [ops]");
    let error = load(&text).unwrap_err();
    assert_eq!(position_of(&error, "when").0, 10, "{error}");
}

#[test]
fn duplicate_rule_names_and_keys_are_errors() {
    let rule = "  - name: all\n    source: am\n    to: [ops]\n    text: { content: x }\n";
    let error = load(&format!("{GOOD}{rule}")).unwrap_err();
    assert!(error.contains("`all` is already used"), "{error}");
    assert_eq!(position_of(&error, "already used").0, 13, "{error}");

    let error = load(&GOOD.replace("  am: {", "  am: { kind: json }\n  am: {")).unwrap_err();
    assert!(error.contains("duplicate"), "{error}");
}

#[test]
fn webhooks_must_be_dingtalk_unless_allowed() {
    let text = GOOD.replace(
        "webhook: log",
        "webhook: http://127.0.0.1:9/robot/send?access_token=x",
    );
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("must be an https URL on oapi.dingtalk.com"),
        "{error}"
    );
    assert!(
        !error.contains("access_token=x"),
        "the token is not echoed: {error}"
    );

    let allowed = text.replace("    webhook:", "    allow_host: 127.0.0.1:9\n    webhook:");
    load(&allowed).unwrap();
}

#[test]
fn secrets_from_files() {
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "SECabc\n").unwrap();
    let text = GOOD.replace("webhook: log", "webhook: log\n    secret_file: secret");
    let config = Config::parse("rules.yaml", &text, &dir, &|_| None).unwrap();
    use secrecy::ExposeSecret;
    let secret = config.robots["ops"].endpoint.secret().unwrap();
    assert_eq!(secret.expose_secret(), "SECabc");

    let missing = GOOD.replace("webhook: log", "webhook: log\n    secret_file: nope");
    let error = Config::parse("rules.yaml", &missing, &dir, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("secret_file") && error.contains("cannot read"),
        "{error}"
    );
}

#[test]
fn a_missing_required_field_is_named() {
    let text = GOOD.replace(
        "    text:\n      content: \"{{ status }} {{ commonLabels.alertname }}\"\n",
        "    markdown:\n      title: \"{{ status }}\"\n",
    );
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("markdown.text is missing: the rule does not set it"),
        "{error}"
    );
    assert_eq!(
        position_of(&error, "markdown.text is missing").0,
        11,
        "{error}"
    );
}

#[test]
fn team_templates_are_used_and_overridden_field_by_field() {
    let dir =
        crate::support::scratch_dir().join(format!("dingrelay-templates-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/ours.yaml"),
        "description: our alert card\nmarkdown:\n  title: \"T {{ status }}\"\n  text: \"body {{ commonLabels.alertname }}\"\n",
    )
    .unwrap();
    let text = GOOD.replace(
        "    text:\n      content: \"{{ status }} {{ commonLabels.alertname }}\"\n",
        "    template: ours\n    markdown: { title: \"Mine {{ status }}\" }\n",
    );
    let config =
        Config::parse("rules.yaml", &text, &dir, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let rule = &config.rules.rules()[0];
    let fields: Vec<&str> = rule.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fields, ["markdown.title", "markdown.text"]);

    // Another message type than the template's, an unknown template, a broken template file.
    let other = text.replace(
        "markdown: { title: \"Mine {{ status }}\" }",
        "text: { content: x }",
    );
    let error = Config::parse("rules.yaml", &other, &dir, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("not send `text`"), "{error}");
    let unknown = text.replace("template: ours", "template: theirs");
    let error = Config::parse("rules.yaml", &unknown, &dir, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown template `theirs`") && error.contains("ours"),
        "{error}"
    );
    std::fs::write(dir.join("templates/broken.yaml"), "markdown:\n  titel: x\n").unwrap();
    let error = Config::parse("rules.yaml", &text, &dir, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("templates/broken.yaml:2:3"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_are_kept_at_least_as_long_as_the_dedup_window() {
    let config = load(GOOD).unwrap();
    assert_eq!(
        config.intake.keep_events,
        std::time::Duration::from_secs(7 * 86_400)
    );
    let config = load(&format!("keep_events: 2d\n{GOOD}")).unwrap();
    assert_eq!(
        config.intake.keep_events,
        std::time::Duration::from_secs(2 * 86_400)
    );
    let error = load(&format!("dedup_window: 2h\nkeep_events: 1h\n{GOOD}")).unwrap_err();
    assert!(
        error.contains("keep_events must be at least dedup_window"),
        "{error}"
    );
    assert_eq!(position_of(&error, "keep_events must"), (2, 14), "{error}");
}

/// Case 12 of issue 12: a misspelled secret key is an unknown field, and its line is shown with
/// the value masked, under a robot and under a source's `auth`; the key and its position stay.
#[test]
fn a_misspelled_secret_key_is_shown_without_its_value() {
    const TOKEN: &str = "SECf00dbabe1234567890";
    let text = GOOD.replace(
        "    webhook: log",
        &format!("    webhook: log\n    secrett: {TOKEN}"),
    );
    let error = load(&text).unwrap_err();
    assert!(!error.contains(TOKEN), "the secret is printed:\n{error}");
    assert!(error.contains("unknown field `secrett`"), "{error}");
    assert_eq!(position_of(&error, "secrett"), (5, 5), "{error}");
    assert!(error.contains("5 |     secrett: ***\n"), "{error}");
    assert!(error.contains("  |     ^\n"), "{error}");

    // Under a source's auth, block style, quoted, with a comment that repeats it.
    let text = GOOD.replace(
        "  am: { kind: alertmanager }",
        &format!("  am:\n    kind: alertmanager\n    auth:\n      tokn: \"{TOKEN}\" # was {TOKEN}"),
    );
    let error = load(&text).unwrap_err();
    assert!(!error.contains(TOKEN), "the secret is printed:\n{error}");
    assert!(error.contains("unknown field `tokn`"), "{error}");
    assert_eq!(position_of(&error, "tokn"), (9, 7), "{error}");
    assert!(error.contains("9 |       tokn: ***\n"), "{error}");
    assert!(error.contains("  |       ^\n"), "{error}");

    // Flow style: the caret stays under the key, the other values of the line are hidden too.
    let text = GOOD.replace(
        "  am: { kind: alertmanager }",
        &format!("  am: {{ kind: alertmanager, auth: {{ tokn: {TOKEN}, bearer_fil: /x }} }}"),
    );
    let error = load(&text).unwrap_err();
    assert!(!error.contains(TOKEN), "the secret is printed:\n{error}");
    assert_eq!(position_of(&error, "tokn"), (6, 37), "{error}");
    assert!(
        error.contains("6 |   am: { kind: alertmanager, auth: { tokn: ***, bearer_fil: *** } }\n"),
        "{error}"
    );
    assert!(
        error.contains(&format!("  | {}^\n", " ".repeat(36))),
        "{error}"
    );

    // Deeper under a source, and a misspelled reload_token at the top level.
    for (text, key) in [
        (
            GOOD.replace(
                "  am: { kind: alertmanager }",
                &format!("  am:\n    kind: alertmanager\n    auth:\n      basic:\n        username: am\n        pasword: {TOKEN}"),
            ),
            "unknown field `pasword`",
        ),
        (format!("reload_tokn: {TOKEN}\n{GOOD}"), "unknown field `reload_tokn`"),
    ] {
        let error = load(&text).unwrap_err();
        assert!(!error.contains(TOKEN), "the secret is printed:\n{error}");
        assert!(error.contains(key), "{error}");
    }
}

/// An unknown key in a rule is no secret: its line is shown as written.
#[test]
fn an_unknown_key_in_a_rule_shows_its_line() {
    let text = GOOD.replace("    source: am", "    source: am\n    sourse: gitlab-ci");
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("rules[0]: unknown field `sourse`"),
        "{error}"
    );
    assert_eq!(position_of(&error, "sourse"), (10, 5), "{error}");
    assert!(error.contains("10 |     sourse: gitlab-ci\n"), "{error}");
    assert!(error.contains("   |     ^\n"), "{error}");
}

/// A duplicated `reload_token` line is shown with its value masked, like every secret key.
#[test]
fn a_duplicate_reload_token_is_shown_without_its_value() {
    let text = format!("reload_token: first-s3cret-aaaa\nreload_token: second-s3cret-bbbb\n{GOOD}");
    let error = load(&text).unwrap_err();
    assert!(error.contains("duplicate key `reload_token`"), "{error}");
    assert!(!error.contains("second-s3cret-bbbb"), "{error}");
    assert!(error.contains("2 | reload_token: ***\n"), "{error}");
}

#[test]
fn a_byte_order_mark_is_accepted_and_positions_stay_right() {
    // Notepad starts UTF-8 files with a BOM.
    let config = load(&format!("\u{feff}{GOOD}")).unwrap();
    assert_eq!(config.rules.rules().len(), 1);
    let text = GOOD.replace("to: [ops]", "to: [opps]");
    let without = load(&text).unwrap_err();
    let with = load(&format!("\u{feff}{text}")).unwrap_err();
    assert_eq!(position_of(&with, "unknown robot"), (10, 10), "{with}");
    assert_eq!(with, without);
    // On the first line too.
    let error = load("\u{feff}listen: nowhere\n").unwrap_err();
    assert_eq!(position_of(&error, "listen"), (1, 9), "{error}");
}

#[test]
fn a_to_that_is_not_a_name_says_what_to_takes_at_its_line() {
    let error = load(&GOOD.replace("to: [ops]", "to: 5")).unwrap_err();
    assert!(
        error.contains("`to` must be a robot name or a list of robot names"),
        "{error}"
    );
    assert_eq!(position_of(&error, "`to` must be"), (10, 5), "{error}");
    assert!(error.contains("10 |     to: 5\n"), "{error}");
    assert!(!error.contains("OneOrMany"), "{error}");
}

#[test]
fn a_when_in_braces_says_to_write_the_bare_expression() {
    let text = GOOD.replace(
        "    to: [ops]",
        "    to: [ops]\n    when: '{{ status == \"firing\" }}'",
    );
    let error = load(&text).unwrap_err();
    assert!(
        error.contains(
            "when takes a bare expression, without `{{ }}`: write `when: status == \"firing\"`"
        ),
        "{error}"
    );
    assert_eq!(position_of(&error, "bare expression"), (11, 11), "{error}");
    assert!(error.contains("|           ^"), "{error}");
}

#[test]
fn a_dedented_key_is_pointed_at_as_mis_indented() {
    // `to` two spaces short: it leaves the rule, which then lacks it.
    for (indent, column) in [("  ", 3), ("   ", 4), ("", 1)] {
        let text = GOOD.replace("    to: [ops]", &format!("{indent}to: [ops]"));
        let error = load(&text).unwrap_err();
        assert!(error.contains("probably mis-indented"), "{error}");
        assert_eq!(position_of(&error, "mis-indented"), (10, column), "{error}");
        assert!(
            error.contains(&format!("10 | {indent}to: [ops]\n")),
            "{error}"
        );
    }
    // A robot's key that lands beside the robots is a robot named after it.
    let text = GOOD.replace("    webhook: log", "  webhook: log");
    let error = load(&text).unwrap_err();
    assert!(error.contains("probably mis-indented"), "{error}");
    assert_eq!(position_of(&error, "mis-indented").0, 4, "{error}");
    // A rule's key at the top level.
    let text = GOOD.replace("    text:\n      content", "text:\n      content");
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("`text` is a rule's key: it is probably mis-indented"),
        "{error}"
    );
}

#[test]
fn a_robot_that_is_not_a_mapping_says_so_without_its_value() {
    let secret = "https://oapi.dingtalk.com/robot/send?access_token=tok3n-s3cret";
    for value in [
        secret.to_owned(),
        format!("[{secret}]"),
        "SECs3cret".to_owned(),
    ] {
        let text = GOOD.replace("  ops:\n    webhook: log", &format!("  ops: {value}"));
        let error = load(&text).unwrap_err();
        assert!(
            error.contains("robot `ops` must be a mapping with `webhook:`"),
            "{error}"
        );
        assert_eq!(position_of(&error, "robot `ops`"), (3, 8), "{error}");
        assert!(
            error.contains("3 |   ops: ") && error.contains("***"),
            "{error}"
        );
        for shown in ["tok3n", "s3cret"] {
            assert!(!error.contains(shown), "{shown} shown:\n{error}");
        }
    }
    let text = GOOD.replace("  am: { kind: alertmanager }", "  am: s3cret-source");
    let error = load(&text).unwrap_err();
    assert!(
        error.contains("source `am` must be a mapping with `kind:`"),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}

#[test]
fn no_rust_type_names_reach_the_user() {
    // Wrong types everywhere a value goes: robots, sources, rules, the top level.
    let replacements: &[(&str, &str)] = &[
        ("robots:\n  ops:\n    webhook: log", "robots: [ops]"),
        ("robots:\n  ops:\n    webhook: log", "robots: s3cret"),
        ("    webhook: log", "    webhook: [log]"),
        ("    webhook: log", "    webhook: log\n    keywords: s3cret"),
        (
            "    webhook: log",
            "    webhook: log\n    rate_per_minute: many",
        ),
        ("    webhook: log", "    webhook: log\n    digest: {a: 1}"),
        ("    webhook: log", "    webhook: log\n    secret: [s3cret]"),
        ("  am: { kind: alertmanager }", "  am: [alertmanager]"),
        ("  am: { kind: alertmanager }", "  am: { kind: prometheus }"),
        (
            "  am: { kind: alertmanager }",
            "  am: { kind: [alertmanager] }",
        ),
        (
            "  am: { kind: alertmanager }",
            "  am: { kind: json, auth: s3cret }",
        ),
        (
            "  am: { kind: alertmanager }",
            "  am: { kind: json, auth: { basic: s3cret } }",
        ),
        (
            "  am: { kind: alertmanager }",
            "  am: { kind: json, secret: [s3cret] }",
        ),
        ("sources:\n", "sources: []\nx:\n"),
        ("rules:\n  - name: all", "rules:\n  - all\n  - name: all"),
        ("rules:\n", "rules: all\nx:\n"),
        ("    to: [ops]", "    to: { ops: 1 }"),
        ("    to: [ops]", "    to: [[ops]]"),
        ("    to: [ops]", "    to: ~"),
        ("    to: [ops]", "    to: [ops]\n    stop: [yes]"),
        ("    to: [ops]", "    to: [ops]\n    when: [a]"),
        (
            "    text:\n      content",
            "    text: hello\n    x:\n      content",
        ),
        (
            "    text:\n      content",
            "    markdown: hello\n    x:\n      content",
        ),
        (
            "    text:\n      content",
            "    at: everyone\n    text:\n      content",
        ),
        (
            "    text:\n      content",
            "    link: [a]\n    text:\n      content",
        ),
        (
            "    text:\n      content",
            "    action_card: { title: a, text: b, buttons: x }\n    text:\n      content",
        ),
        (
            "    text:\n      content",
            "    action_card: { title: a, text: b, button_orientation: diagonal }\n    text:\n      content",
        ),
        ("robots:", "body_limit: [1]\nrobots:"),
        ("robots:", "body_limit: lots\nrobots:"),
        ("robots:", "listen: [a]\nrobots:"),
    ];
    for (from, to) in replacements {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let Err(error) = load(&text) else {
            panic!("loads: {text}");
        };
        for word in dingrelay::config::RUST_WORDS {
            assert!(!error.contains(word), "`{word}` in:\n{error}\nfor:\n{text}");
        }
        assert!(!error.contains("s3cret"), "a secret shown:\n{error}");
    }
    // A whole file that is not a mapping.
    for text in ["- a\n- b\n", "just text\n", "42\n"] {
        let error = load(text).unwrap_err();
        for word in dingrelay::config::RUST_WORDS {
            assert!(!error.contains(word), "`{word}` in:\n{error}");
        }
    }
}

#[test]
fn errors_found_by_rendering_show_the_field_with_a_caret() {
    let text = GOOD.replace(
        "    text:\n      content: \"{{ status }} {{ commonLabels.alertname }}\"",
        "    markdown:\n      title: \"{{ status }}\"\n      text: |\n        hello\n        {{ comonLabels.x }} and {{ status }}",
    );
    let config = load(&text).unwrap();
    let report =
        dingrelay::config::audit(&config, jiff::Timestamp::UNIX_EPOCH).problem_report("rules.yaml");
    // The unknown variable: at its line inside the template, under the name.
    assert!(
        report.contains(
            "rules.yaml:15:12: error: rule `all`: markdown.text: unknown variable `comonLabels`"
        ),
        "{report}"
    );
    assert!(
        report.contains("15 |         {{ comonLabels.x }} and {{ status }}\n   |            ^"),
        "{report}"
    );
    // A required field that renders empty: at that field, not at the rule's `- name`.
    let text = GOOD.replace(
        "    text:\n      content: \"{{ status }} {{ commonLabels.alertname }}\"",
        "    markdown:\n      title: \"{{ '' }}\"\n      text: hello",
    );
    let config = load(&text).unwrap();
    let report =
        dingrelay::config::audit(&config, jiff::Timestamp::UNIX_EPOCH).problem_report("rules.yaml");
    assert!(
        report.contains("rules.yaml:12:14: error: rule `all`, robot `ops`: markdown.title:"),
        "{report}"
    );
    assert!(
        report.contains("12 |       title: \"{{ '' }}\"\n   |              ^"),
        "{report}"
    );
}

const APP: &str = r#"
apps:
  oncall:
    app_key: dingoncallapp
    app_secret: ${APP_SECRET}
    agent_id: 4000001
robots:
  ops:
    webhook: log
  group:
    app: oncall
    conversation: "cidOPS=="
  owner:
    app: oncall
    kind: one_to_one
    users: ['{{ commonLabels.owner }}', lin]
  notice:
    app: oncall
    kind: work_notification
    departments: ["1"]
sources:
  am: { kind: alertmanager }
rules:
  - name: all
    source: am
    to: [ops, group, owner, notice]
    markdown:
      title: "{{ status }}"
      text: "{{ commonLabels.alertname }}"
"#;

fn app_env(name: &str) -> Option<String> {
    (name == "APP_SECRET").then(|| "app-s3cret".to_owned())
}

#[test]
fn robots_of_an_app_load_and_say_where_they_send() {
    let config = load_with(APP, &app_env).unwrap();
    let targets: Vec<String> = config
        .robots
        .values()
        .map(|r| r.endpoint.target())
        .collect();
    assert_eq!(
        targets[1..],
        [
            "app `oncall`, group robot in cidOPS==",
            "app `oncall`, one-to-one chats with {{ commonLabels.owner }}, lin",
            "app `oncall`, work notifications to department 1",
        ]
    );
    assert!(!format!("{config:?}").contains("app-s3cret"));
}

#[test]
fn what_an_app_robot_cannot_send_is_reported_at_the_rule() {
    let text = APP.replace(
        "    markdown:\n      title: \"{{ status }}\"\n      text: \"{{ commonLabels.alertname }}\"",
        "    feed_card:\n      links:\n        - { title: t, message_url: \"https://example.com\", pic_url: \"https://example.com/p.png\" }",
    );
    let error = load_with(&text, &app_env).unwrap_err();
    for robot in ["group", "owner", "notice"] {
        assert!(
            error.contains(&format!("rule `all`: robot `{robot}` sends through")),
            "{error}"
        );
    }
    assert!(error.contains("which cannot express a feedCard"), "{error}");
    // At the robot's name in the rule's `to`.
    let (line, column) = position_of(&error, "robot `owner` sends through");
    assert_eq!(line, 26, "{error}");
    assert!(column > 10, "{error}");
    assert!(!error.contains("robot `ops` sends"), "{error}");

    let six = (1..=6)
        .map(|i| format!("        - {{ title: b{i}, url: \"https://example.com/{i}\" }}"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = APP.replace(
        "    markdown:\n      title: \"{{ status }}\"\n      text: \"{{ commonLabels.alertname }}\"",
        &format!("    action_card:\n      title: t\n      text: x\n      buttons:\n{six}"),
    );
    let error = load_with(&text, &app_env).unwrap_err();
    assert!(
        error.contains("an action card with 6 buttons (app robots take at most 5)"),
        "{error}"
    );
    assert!(
        !error.contains("robot `notice` sends"),
        "work notifications take any number: {error}"
    );
}

#[test]
fn mentions_to_an_app_robot_are_a_warning() {
    let text = APP.replace(
        "      text: \"{{ commonLabels.alertname }}\"",
        "      text: \"{{ commonLabels.alertname }}\"\n    at: { user_ids: [lin] }",
    );
    let config = load_with(&text, &app_env).unwrap();
    let warning = config
        .warnings
        .iter()
        .find(|w| w.contains("robot `group`"))
        .unwrap_or_else(|| panic!("{:?}", config.warnings));
    assert!(warning.contains("cannot @ anyone"), "{warning}");
}

#[test]
fn app_robot_mistakes_are_located() {
    let cases = [
        (
            "    app: oncall\n    conversation: \"cidOPS==\"",
            "    app: oncal\n    conversation: \"cidOPS==\"",
            "unknown app `oncal` (apps: oncall)",
        ),
        (
            "    conversation: \"cidOPS==\"\n",
            "    conversation: \"cidOPS==\"\n    secret: SECx\n",
            "`secret` is for group custom robots",
        ),
        (
            "    kind: one_to_one\n    users: ['{{ commonLabels.owner }}', lin]",
            "    kind: one_to_one",
            "one-to-one chats need `users`",
        ),
        (
            "    agent_id: 4000001\n",
            "",
            "work notifications need the app's AgentId",
        ),
        (
            "    departments: [\"1\"]",
            "    departments: [sales]",
            "`sales` is not a department id",
        ),
        ("    app_secret: ${APP_SECRET}\n", "", "no `app_secret`"),
        (
            "    users: ['{{ commonLabels.owner }}', lin]",
            "    users: ['{{ commonLabels.owner ']",
            "robots.owner: ",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(APP.contains(from), "{from}");
        let error = load_with(&APP.replacen(from, to, 1), &app_env).unwrap_err();
        assert!(error.contains(expected), "{expected}:\n{error}");
        assert!(error.starts_with("rules.yaml:"), "located: {error}");
        assert!(!error.contains("app-s3cret"), "{error}");
    }
    // The app's secret line is masked when shown.
    let error = load_with(
        &APP.replace(
            "    agent_id: 4000001",
            "    agent_id: 4000001\n    app_secrett: plain-s3cret",
        ),
        &app_env,
    )
    .unwrap_err();
    assert!(!error.contains("plain-s3cret"), "{error}");
}

#[test]
fn the_console_needs_a_declared_app_with_an_agent_id() {
    let base = "apps: { ops: { app_key: dingx, app_secret: s } }\nrobots: { log: { webhook: log } }\nsources: { ci: { kind: json } }\nrules: [ { name: a, source: ci, to: log, text: { content: x } } ]\n";
    let error = load(&format!(
        "{base}console: {{ app: opz, corp_id: dingcorp }}\n"
    ))
    .unwrap_err();
    assert!(error.contains("console.app: unknown app `opz`"), "{error}");
    let error = load(&format!(
        "{base}console: {{ app: ops, corp_id: dingcorp }}\n"
    ))
    .unwrap_err();
    assert!(error.contains("needs its `agent_id`"), "{error}");
    let ok = base.replace("app_secret: s", "app_secret: s, agent_id: 1");
    let config = load(&format!(
        "{ok}console: {{ app: ops, corp_id: dingcorp, session: 2h }}\n"
    ))
    .unwrap();
    let console = config.console.expect("on");
    assert_eq!(console.session_ttl, std::time::Duration::from_secs(7200));
    assert!(
        load(&ok).unwrap().console.is_none(),
        "off unless configured"
    );
}

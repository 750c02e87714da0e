//! The cookbook (docs/cookbook.md) and the configs behind it, one directory per recipe under
//! tests/fixtures/cookbook/: every recipe's rules.yaml passes `dingrelay check --offline` (a
//! recipe's app credentials are examples), its
//! rules.test.yaml passes `dingrelay test` and expects every rule of the recipe at least once;
//! the doc names every recipe, every YAML snippet of the doc is a piece of the file it names, and
//! every `dingrelay` command of the doc runs. Last, what rule tests cannot show for the CI recipe
//! (its bearer token and its `dedup` template), through the daemon.
//!
//! Snippets: each ```yaml block of the doc follows a line `<!-- cookbook: RECIPE/FILE -->`
//! naming a file under tests/fixtures/cookbook/. Its lines must appear in that file, in one block
//! and in order (trailing spaces aside); a line `# ...` in a snippet leaves out lines of the file
//! there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, shell_words};

const COOKBOOK: &str = "tests/fixtures/cookbook";
const DOC: &str = "docs/cookbook.md";
const MARKER: &str = "<!-- cookbook:";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The recipe directories, sorted.
fn recipes() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(COOKBOOK))
        .expect("tests/fixtures/cookbook exists")
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no recipe in {COOKBOOK}");
    names
}

/// The cookbook.
fn doc() -> String {
    std::fs::read_to_string(root().join(DOC)).expect("docs/cookbook.md exists")
}

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The binary with nothing from this environment but `env`, run from the repository root.
fn dingrelay(args: &[String], env: &[(String, String)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(args)
        .current_dir(root())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), format!("{stdout}{stderr}"))
}

/// The variables a recipe's test file gives its config (`env:`), which `check` needs as well.
fn test_env(recipe: &str) -> Vec<(String, String)> {
    let tests = yaml(&root().join(COOKBOOK).join(recipe).join("rules.test.yaml"));
    let Some(env) = tests.get("env").and_then(|e| e.as_mapping()) else {
        return Vec::new();
    };
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

#[test]
fn every_recipe_passes_check_and_its_rule_tests() {
    let mut failures = Vec::new();
    for recipe in recipes() {
        let dir = format!("{COOKBOOK}/{recipe}");
        let env = test_env(&recipe);
        let (code, out) = dingrelay(
            &[
                "check".into(),
                "--offline".into(),
                format!("{dir}/rules.yaml"),
            ],
            &env,
        );
        if code != Some(0) || !out.contains("check passed") {
            failures.push(format!(
                "dingrelay check {dir}/rules.yaml: exit {code:?}\n{out}"
            ));
        }
        let (code, out) = dingrelay(&["test".into(), format!("{dir}/rules.test.yaml")], &[]);
        if code != Some(0) || !out.contains(" passed, 0 failed") {
            failures.push(format!(
                "dingrelay test {dir}/rules.test.yaml: exit {code:?}\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_rule_of_a_recipe_is_expected_by_its_tests() {
    for recipe in recipes() {
        let dir = root().join(COOKBOOK).join(&recipe);
        let config = yaml(&dir.join("rules.yaml"));
        let tests = yaml(&dir.join("rules.test.yaml"));
        let expected: Vec<&str> = tests["tests"]
            .as_sequence()
            .expect("tests: a list")
            .iter()
            .filter_map(|test| test.get("expect").and_then(|e| e.as_sequence()))
            .flatten()
            .filter_map(|message| message.get("rule").and_then(|r| r.as_str()))
            .collect();
        for rule in config["rules"].as_sequence().expect("rules: a list") {
            let name = rule["name"].as_str().unwrap();
            assert!(
                expected.contains(&name),
                "{COOKBOOK}/{recipe}/rules.test.yaml: no test expects a message of rule `{name}`"
            );
        }
    }
}

#[test]
fn the_cookbook_names_every_recipe_and_only_those() {
    let doc = doc();
    let recipes = recipes();
    for recipe in &recipes {
        assert!(
            doc.contains(&format!("{COOKBOOK}/{recipe}/")),
            "{DOC} does not mention {COOKBOOK}/{recipe}/"
        );
        assert!(
            doc.contains(&format!("{MARKER} {recipe}/")),
            "{DOC} shows no snippet of {COOKBOOK}/{recipe}"
        );
    }
    for (at, _) in doc.match_indices(&format!("{COOKBOOK}/")) {
        let rest = &doc[at + COOKBOOK.len() + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `tests/fixtures/cookbook/<recipe>/`
        }
        assert!(
            recipes.contains(&name),
            "{DOC} mentions {COOKBOOK}/{name}, which is not a recipe directory"
        );
    }
}

/// A YAML snippet of the doc: the file it names, the doc line of its first line, its lines.
#[derive(Debug)]
struct Snippet {
    file: String,
    line: usize,
    lines: Vec<String>,
}

/// The ```yaml blocks of the doc, each with the file its marker names; an unmarked block or a
/// marker without a block is an error.
fn snippets(doc: &str) -> Result<Vec<Snippet>, String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut snippets = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(rest) = line.strip_prefix(MARKER) {
            let file = rest
                .strip_suffix("-->")
                .ok_or_else(|| format!("{DOC}:{}: a marker ends with -->", i + 1))?
                .trim()
                .to_owned();
            if lines.get(i + 1).map(|l| l.trim_end()) != Some("```yaml") {
                return Err(format!(
                    "{DOC}:{}: the marker for {file} is not followed by a ```yaml block",
                    i + 1
                ));
            }
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j].trim_end() == "```")
                .ok_or_else(|| format!("{DOC}:{}: the yaml block never ends", i + 2))?;
            snippets.push(Snippet {
                file,
                line: start + 1,
                lines: lines[start..end].iter().map(|l| (*l).to_owned()).collect(),
            });
            i = end + 1;
            continue;
        }
        if line == "```yaml" {
            return Err(format!(
                "{DOC}:{}: a yaml block without a `{MARKER} RECIPE/FILE -->` line before it",
                i + 1
            ));
        }
        i += 1;
    }
    Ok(snippets)
}

/// Whether `snippet` is in `file`: each part between `# ...` lines is a run of the file's lines,
/// the parts in order. Else the first snippet line that is not where it should be.
fn find_in(file: &[&str], snippet: &Snippet) -> Result<(), String> {
    let mut parts: Vec<Vec<&str>> = vec![Vec::new()];
    for line in &snippet.lines {
        if line.trim() == "# ..." {
            parts.push(Vec::new());
        } else {
            parts.last_mut().unwrap().push(line.trim_end());
        }
    }
    let mut from = 0;
    let mut offset = 0;
    for part in parts {
        let first = part.iter().position(|l| !l.is_empty());
        let last = part.iter().rposition(|l| !l.is_empty());
        let (Some(first), Some(last)) = (first, last) else {
            offset += part.len() + 1;
            continue;
        };
        let part = &part[first..=last];
        let matching = |at: usize| {
            part.iter()
                .zip(&file[at..])
                .take_while(|(a, b)| **a == b.trim_end())
                .count()
        };
        match (from..file.len()).find(|&at| matching(at) == part.len()) {
            Some(at) => from = at + part.len(),
            None => {
                let best = (from..file.len()).map(matching).max().unwrap_or(0);
                return Err(format!(
                    "{DOC}:{}: `{}` is not in {COOKBOOK}/{} where the snippet puts it",
                    snippet.line + offset + first + best,
                    part[best].trim(),
                    snippet.file
                ));
            }
        }
        offset += first + part.len() + 1;
    }
    Ok(())
}

#[test]
fn the_cookbook_snippets_are_in_the_tested_configs() {
    let doc = doc();
    let snippets = snippets(&doc).unwrap_or_else(|e| panic!("{e}"));
    assert!(!snippets.is_empty(), "{DOC} has no snippet");
    let mut failures = Vec::new();
    for snippet in &snippets {
        let path = root().join(COOKBOOK).join(&snippet.file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            failures.push(format!(
                "{DOC}:{}: {COOKBOOK}/{} does not exist",
                snippet.line, snippet.file
            ));
            continue;
        };
        let file: Vec<&str> = text.lines().collect();
        if let Err(e) = find_in(&file, snippet) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_snippet_check_finds_drift() {
    let file = [
        "rules:",
        "  - name: a",
        "    to: ops",
        "  - name: b",
        "    to: dev",
    ];
    let snippet = |lines: &[&str]| Snippet {
        file: "r/rules.yaml".into(),
        line: 10,
        lines: lines.iter().map(|l| (*l).to_owned()).collect(),
    };
    assert!(find_in(&file, &snippet(&["  - name: a", "    to: ops  "])).is_ok());
    assert!(find_in(&file, &snippet(&["rules:", "# ...", "    to: dev"])).is_ok());
    let error = find_in(&file, &snippet(&["  - name: a", "    to: dev"])).unwrap_err();
    assert!(error.contains(":11: `to: dev`"), "{error}");
    // Parts must come in the file's order.
    assert!(find_in(&file, &snippet(&["  - name: b", "# ...", "  - name: a"])).is_err());

    let unmarked = "text\n```yaml\nrules: []\n```\n";
    assert!(snippets(unmarked).unwrap_err().contains(":2:"));
    let marked = "<!-- cookbook: r/rules.yaml -->\n```yaml\nrules: []\n```\n";
    let found = snippets(marked).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].file.as_str(), found[0].line), ("r/rules.yaml", 3));
}

/// The `dingrelay` commands of the doc's ```sh blocks: the doc line, the variables set before the
/// command (`CI_TOKEN=test dingrelay ...`) and the arguments.
type DocCommand = (usize, Vec<(String, String)>, Vec<String>);

fn doc_commands(doc: &str) -> Vec<DocCommand> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for (i, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let words = shell_words(trimmed);
        let Some(at) = words.iter().position(|w| w == "dingrelay") else {
            continue;
        };
        let assignments: Option<Vec<(String, String)>> = words[..at]
            .iter()
            .map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let Some(assignments) = assignments else {
            continue; // `dingrelay` as an argument of another command
        };
        assert!(
            !trimmed.ends_with('\\'),
            "{DOC}:{}: keep a dingrelay command on one line",
            i + 1
        );
        commands.push((i + 1, assignments, words[at + 1..].to_vec()));
    }
    commands
}

#[test]
fn the_cookbook_commands_run() {
    let doc = doc();
    let commands = doc_commands(&doc);
    let recipes = recipes();
    for recipe in &recipes {
        assert!(
            commands.iter().any(|(_, _, args)| args[0] == "test"
                && args.iter().any(|a| a.contains(&format!("/{recipe}/")))),
            "{DOC}: no `dingrelay test` command for the recipe {recipe}"
        );
    }
    let mut failures = Vec::new();
    for (line, env, args) in &commands {
        let (code, out) = dingrelay(args, env);
        if code != Some(0) {
            failures.push(format!(
                "{DOC}:{line}: `dingrelay {}` exited {code:?}:\n{out}",
                args.join(" ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shell_words_splits_like_sh() {
    assert_eq!(
        shell_words(r#"CI_TOKEN=t dingrelay render --header 'X-A: b c' "d\"e" f\ g  # comment"#),
        [
            "CI_TOKEN=t",
            "dingrelay",
            "render",
            "--header",
            "X-A: b c",
            "d\"e",
            "f g"
        ]
    );
    let commands = doc_commands(
        "```sh\ndingrelay test a.yaml\ncurl -d x http://h  # not dingrelay\n```\n\
         ```text\ndingrelay check\n```\n",
    );
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0].0, 2);
    assert_eq!(commands[0].2, ["test", "a.yaml"]);
}

// ---- The CI recipe through the daemon ---------------------------------------------------------

const CI_TOKEN: &str = "cookbook-ci-token";

/// Kills the daemon (by its pid) when the test ends, passing or not.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_listening(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start listening:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `body` to the CI source; the answer's status and JSON body.
async fn post(port: u16, event: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks/ci?event={event}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.expect("the daemon answers");
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_recipe_needs_its_token_and_posts_a_retry_once() {
    // The recipe's config as it is, in a directory of its own, on a free port.
    let dir: PathBuf =
        crate::support::scratch_dir().join(format!("dingrelay-cookbook-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let recipe = std::fs::read_to_string(root().join(COOKBOOK).join("ci-json/rules.yaml")).unwrap();
    let port = free_port();
    let config = dir.join("rules.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:{port}\nstate_dir: ./state\n{recipe}"),
    )
    .unwrap();
    let log = dir.join("log");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_dingrelay"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_clear()
            .env("CI_TOKEN", CI_TOKEN)
            .stdout(Stdio::null()) // dry-run robots print their requests there
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts"),
    );
    wait_listening(port, &log).await;

    let deploy =
        std::fs::read_to_string(root().join(COOKBOOK).join("ci-json/deploy.json")).unwrap();
    let (status, answer) = post(port, "deploy", None, &deploy).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post(port, "deploy", Some("not-the-token"), &deploy).await;
    assert_eq!(status, 401, "{answer}");

    // The deploy is posted; the CI's retry of it is not.
    let (status, first) = post(port, "deploy", Some(CI_TOKEN), &deploy).await;
    assert_eq!(
        (status, &first["status"]),
        (202, &"accepted".into()),
        "{first}"
    );
    let (status, retry) = post(port, "deploy", Some(CI_TOKEN), &deploy).await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(
        (&retry["status"], &retry["event"]),
        (&"duplicate".into(), &first["event"]),
        "{retry}"
    );

    // Another run, or the same run's failure reported as a build, is another notification.
    let next = deploy.replace("4711", "4715");
    let (_, answer) = post(port, "deploy", Some(CI_TOKEN), &next).await;
    assert_eq!(answer["status"], "accepted", "{answer}");
    let failed = r#"{"run_id": 4711, "status": "failed", "project": "shop/api", "branch": "main"}"#;
    let (_, answer) = post(port, "build", Some(CI_TOKEN), failed).await;
    assert_eq!(answer["status"], "accepted", "{answer}");

    // Without a run_id the key is empty: nothing is taken for a retry.
    let anonymous = r#"{"status": "success", "service": "api", "version": "v2.4"}"#;
    for _ in 0..2 {
        let (_, answer) = post(port, "deploy", Some(CI_TOKEN), anonymous).await;
        assert_eq!(answer["status"], "accepted", "{answer}");
    }

    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

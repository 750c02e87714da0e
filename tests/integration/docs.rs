//! README.md and every docs/*.md do what they say: every command they show runs as shown, from the
//! repository root, every repository file they name exists, and every relative link resolves.
//!
//! Commands are the lines of ```sh, ```bash and ```shell blocks (a line ending in `\` continues
//! on the next), and the `$ ` lines of ```console blocks (the lines after one are its output). A
//! command whose program is `dingrelay` or `cargo run [--release] --` runs the binary under test
//! with only the variables the command sets (`CI_TOKEN=test dingrelay ...`), and must exit 0, or
//! the code that a line `<!-- exit: N -->` right before its block documents. In a console block,
//! every output line shown (but `...`) must be in what the command prints. Other commands (`sudo`,
//! `systemctl`, `cargo test`, scripts) are not run.
//!
//! The daemon: the README's `serve` command runs once, on a free port with a temporary state
//! directory; every `curl` of the docs to `127.0.0.1:8060` is posted to it and must be answered
//! 2xx, and the README's dry-run output must be what the daemon prints. The other `dingrelay`
//! commands run after it stops, on its state directory, so the `outbox` commands find its events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support::{free_port, shell_words};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, then docs/*.md sorted: (path from the root, text).
fn docs() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".into());
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root().join(&name)).unwrap();
            (name, text)
        })
        .collect()
}

/// A fenced block: its language, the doc line of its first line, its lines, and the exit code a
/// `<!-- exit: N -->` line right before it documents.
#[derive(Debug)]
struct Block {
    lang: String,
    line: usize,
    lines: Vec<String>,
    exit: Option<i32>,
}

fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let exit = i
            .checked_sub(1)
            .and_then(|j| lines[j].trim().strip_prefix("<!-- exit:"))
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(|code| {
                code.trim()
                    .parse()
                    .expect("<!-- exit: N --> holds a number")
            });
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .unwrap_or(lines.len());
        blocks.push(Block {
            lang: lang.trim().to_owned(),
            line: i + 2,
            lines: lines[i + 1..end].iter().map(|l| (*l).to_owned()).collect(),
            exit,
        });
        i = end + 1;
    }
    blocks
}

#[derive(Debug, PartialEq)]
enum Program {
    Dingrelay,
    Curl,
    /// Not run here: `sudo`, `systemctl`, `cargo test`, a script...
    Other,
}

/// A command a doc shows.
#[derive(Debug)]
struct DocCommand {
    /// `doc:line`.
    at: String,
    env: Vec<(String, String)>,
    program: Program,
    /// The arguments after the program (after `--` for `cargo run`).
    args: Vec<String>,
    exit: i32,
    /// The output lines a console block shows for it (`...` lines, which stand for what is left
    /// out, aside): each must be in what the command prints.
    shown: Vec<String>,
}

/// A command line's parts: the variables it sets, its program and its arguments.
type Parts = (Vec<(String, String)>, Program, Vec<String>);

/// What a command line is: the variables it sets, its program and arguments.
fn parse_command(at: &str, line: &str) -> Result<Parts, String> {
    let words = shell_words(line);
    let assignments = words
        .iter()
        .take_while(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .count();
    let env = words[..assignments]
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let rest = &words[assignments..];
    let (program, args) = match rest.first().map(String::as_str) {
        Some("dingrelay") => (Program::Dingrelay, rest[1..].to_vec()),
        Some("curl") => (Program::Curl, rest[1..].to_vec()),
        Some("cargo") if rest.get(1).map(String::as_str) == Some("run") => {
            let dashes = rest.iter().position(|w| w == "--").ok_or_else(|| {
                format!("{at}: `cargo run` without `--`: say which dingrelay command it runs")
            })?;
            (Program::Dingrelay, rest[dashes + 1..].to_vec())
        }
        _ => (Program::Other, Vec::new()),
    };
    if program != Program::Other
        && args
            .iter()
            .any(|a| ["|", "||", "&&", ";", ">", ">>", "<", "&"].contains(&a.as_str()))
    {
        return Err(format!(
            "{at}: keep a dingrelay or curl command plain (no pipes, lists or redirections): {line}"
        ));
    }
    Ok((env, program, args))
}

/// Every command of `doc`, in order.
fn doc_commands(doc: &str, text: &str) -> Result<Vec<DocCommand>, String> {
    let mut commands = Vec::new();
    for block in blocks(text) {
        let console = block.lang == "console";
        if !console && !["sh", "bash", "shell"].contains(&block.lang.as_str()) {
            if let Some(j) = block.lines.iter().position(|l| l.starts_with("$ ")) {
                return Err(format!(
                    "{doc}:{}: a `$ ` command in a ```{} block: use ```console, so that it is run",
                    block.line + j,
                    block.lang
                ));
            }
            continue;
        }
        let mut heredoc: Option<String> = None;
        let mut j = 0;
        while j < block.lines.len() {
            let first = j;
            let raw = &block.lines[j];
            j += 1;
            if let Some(end) = &heredoc {
                if raw.trim() == end {
                    heredoc = None;
                }
                continue;
            }
            let mut line = if console {
                match raw.strip_prefix("$ ") {
                    Some(command) => command.to_owned(),
                    None => continue, // output
                }
            } else {
                raw.clone()
            };
            while line.trim_end().ends_with('\\') && j < block.lines.len() {
                line = format!(
                    "{} {}",
                    line.trim_end().trim_end_matches('\\'),
                    block.lines[j]
                );
                j += 1;
            }
            if let Some(at) = line.find("<<") {
                let end: String = line[at + 2..]
                    .trim_start_matches('-')
                    .trim_matches(|c: char| c == '\'' || c == '"' || c.is_whitespace())
                    .to_owned();
                heredoc = Some(end);
            }
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{doc}:{}", block.line + first);
            let (env, program, args) = parse_command(&at, &line)?;
            let shown = if console {
                block.lines[j..]
                    .iter()
                    .take_while(|l| !l.starts_with("$ "))
                    .map(|l| l.trim_end())
                    .filter(|l| !l.is_empty() && *l != "...")
                    .map(str::to_owned)
                    .collect()
            } else {
                Vec::new()
            };
            commands.push(DocCommand {
                at,
                env,
                program,
                args,
                exit: block.exit.unwrap_or(0),
                shown,
            });
        }
    }
    Ok(commands)
}

fn all_commands() -> Vec<DocCommand> {
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for (doc, text) in docs() {
        match doc_commands(&doc, &text) {
            Ok(commands) => all.extend(commands),
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    all
}

// ---- Running them -------------------------------------------------------------------------------

/// Kills the daemon (by its pid) when the test ends, passing or not.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `$NAME` and `${NAME}` replaced from `env` (unset: empty), as sh does inside double quotes.
fn expand(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("${ is closed");
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        out.push_str(env.get(name).map_or("", String::as_str));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// A doc's curl command, posted to the daemon on `port` instead of 8060: the answer's status and
/// body, or `None` when it is not for the local daemon.
async fn curl(command: &DocCommand, port: u16) -> Option<(u16, String)> {
    let env: BTreeMap<String, String> = command.env.iter().cloned().collect();
    let mut method = None;
    let mut headers = Vec::new();
    let mut body: Option<Vec<u8>> = None;
    let mut url = None;
    let mut args = command.args.iter().map(|a| expand(a, &env));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-H" | "--header" => {
                let header = args.next().expect("a header after -H");
                let (name, value) = header.split_once(':').expect("a header is `Name: value`");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" | "--data" | "--data-binary" | "--data-raw" => {
                let data = args.next().expect("data after -d");
                body = Some(match data.strip_prefix('@') {
                    Some(file) if arg != "--data-raw" => std::fs::read(root().join(file))
                        .unwrap_or_else(|e| panic!("{}: -d @{file}: {e}", command.at)),
                    _ => data.into_bytes(),
                });
            }
            "-X" | "--request" => method = args.next(),
            "-s" | "-S" | "-sS" | "-f" | "--fail" | "-i" | "--silent" | "--show-error" => {}
            flag if flag.starts_with('-') => {
                panic!(
                    "{}: curl option {flag} is not known to this test",
                    command.at
                )
            }
            _ => url = Some(arg),
        }
    }
    let url = url.unwrap_or_else(|| panic!("{}: curl without a URL", command.at));
    let path = url.strip_prefix("http://127.0.0.1:8060")?;
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.into());
    let mut request = reqwest::Client::new().request(
        method.parse().unwrap(),
        format!("http://127.0.0.1:{port}{path}"),
    );
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let answer = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", command.at));
    Some((answer.status().as_u16(), answer.text().await.unwrap()))
}

/// Runs the binary as a doc command: from the root, with only the command's variables and
/// `STATE_DIRECTORY` (which the shipped rules.yaml uses for `state_dir`).
fn run(command: &DocCommand, state: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dingrelay"))
        .args(&command.args)
        .current_dir(root())
        .env_clear()
        .env("STATE_DIRECTORY", state)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the binary runs");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!out.contains("panicked"), "{}: {out}", command.at);
    (output.status.code(), out)
}

/// The README's ```text block of the daemon's dry-run output.
fn readme_dry_run() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    blocks(&readme)
        .into_iter()
        .find(|b| b.lang == "text" && b.lines.first().is_some_and(|l| l.starts_with("# dry run")))
        .expect("the README shows the daemon's dry-run output")
        .lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_docs_runs_as_shown() {
    let commands = all_commands();
    let dir: PathBuf =
        crate::support::scratch_dir().join(format!("dingrelay-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();

    // The README's two commands: the daemon on the shipped rules.yaml, and `cargo test` (this).
    let readme: Vec<&DocCommand> = commands
        .iter()
        .filter(|c| c.at.starts_with("README.md:"))
        .collect();
    let serve = readme
        .iter()
        .find(|c| c.program == Program::Dingrelay && c.args.first().is_some_and(|a| a == "serve"))
        .expect("the README shows how to run the daemon");
    assert!(
        readme.first().is_some_and(|c| std::ptr::eq(*c, *serve)),
        "the README's first command runs the daemon"
    );

    let port = free_port();
    let stdout = dir.join("stdout");
    let log = dir.join("log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_dingrelay"))
            .args(&serve.args)
            .current_dir(root())
            .env_clear()
            .env("STATE_DIRECTORY", &state)
            .env("DINGRELAY_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the binary starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{}: the daemon did not start listening:\n{}",
            serve.at,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut failures = Vec::new();
    let mut posted = 0;
    for command in commands.iter().filter(|c| c.program == Program::Curl) {
        let Some((status, body)) = curl(command, port).await else {
            continue;
        };
        posted += 1;
        if !(200..300).contains(&status) {
            failures.push(format!(
                "{}: curl was answered {status}: {body}",
                command.at
            ));
        }
    }
    assert!(
        posted >= 3,
        "only {posted} curl commands were posted to the daemon"
    );

    // The dry-run output the README shows, `...` standing for what changes from run to run.
    let shown = readme_dry_run();
    let deadline = Instant::now() + Duration::from_secs(10);
    let printed = loop {
        let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
        let missing: Vec<&str> = shown
            .iter()
            .flat_map(|line| line.split("..."))
            .filter(|piece| !piece.is_empty() && !printed.contains(*piece))
            .collect();
        if missing.is_empty() {
            break printed;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "README.md: the daemon did not print {missing:?}; it printed:\n{printed}"
            ));
            break printed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!printed.is_empty(), "the daemon printed nothing");
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = daemon.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        exit.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(daemon);

    // Every other dingrelay command, in the docs' order, on the daemon's state.
    let mut ran = 0;
    for command in &commands {
        if command.program != Program::Dingrelay
            || command.args.first().is_some_and(|a| a == "serve")
        {
            continue;
        }
        ran += 1;
        let (code, out) = run(command, &state);
        if code != Some(command.exit) {
            failures.push(format!(
                "{}: `dingrelay {}` exited {code:?}, not {}:\n{out}",
                command.at,
                command.args.join(" "),
                command.exit
            ));
        } else if let Some(shown) = command.shown.iter().find(|l| !out.contains(l.as_str())) {
            failures.push(format!(
                "{}: `dingrelay {}` does not print `{shown}`; it prints:\n{out}",
                command.at,
                command.args.join(" ")
            ));
        }
    }
    assert!(ran >= 30, "only {ran} dingrelay commands found in the docs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- Files and links ----------------------------------------------------------------------------

/// The directories whose files the docs name by their path from the root.
const TREES: [&str; 9] = [
    "tests/",
    "docs/",
    "scripts/",
    "systemd/",
    "src/",
    "crates/",
    "benches/",
    "examples/",
    ".ci/",
];

/// The repository paths `text` names: a word starting with one of [`TREES`], or a file name
/// ending in `.md` (which must be at the root or next to the doc).
fn named_paths(text: &str) -> Vec<String> {
    let path_char = |c: char| c.is_ascii_alphanumeric() || "_.-/".contains(c);
    let mut paths = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let starts_word =
            i == 0 || !(path_char(bytes[i - 1] as char) || "$}".contains(bytes[i - 1] as char));
        if !starts_word || !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let word: String = text[i..].chars().take_while(|&c| path_char(c)).collect();
        if word.is_empty() {
            i += 1;
            continue;
        }
        i += word.len();
        let word = word.trim_end_matches(['.', ',']);
        if TREES.iter().any(|t| word.starts_with(t))
            || (word.ends_with(".md") && !word.contains('/'))
        {
            paths.push(word.to_owned());
        }
    }
    paths
}

#[test]
fn every_file_the_docs_name_exists() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in docs() {
        for path in named_paths(&text) {
            checked += 1;
            let beside = Path::new(&doc).parent().unwrap().join(&path);
            if !root().join(&path).exists() && !root().join(&beside).exists() {
                failures.push(format!("{doc}: names {path}, which does not exist"));
            }
        }
    }
    assert!(checked >= 50, "only {checked} paths found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The text outside fenced blocks, with inline code removed; and the anchors of its headings.
fn prose_and_anchors(text: &str) -> (String, Vec<String>) {
    let mut prose = String::new();
    let mut anchors: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut outside = String::new();
        for (k, piece) in line.split('`').enumerate() {
            if k % 2 == 0 {
                outside.push_str(piece);
            }
        }
        if let Some(heading) = line.strip_prefix('#') {
            let base = slug(heading.trim_start_matches('#'));
            let seen = anchors
                .iter()
                .filter(|a| {
                    **a == base
                        || a.strip_prefix(&format!("{base}-"))
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count();
            anchors.push(if seen == 0 {
                base
            } else {
                format!("{base}-{seen}")
            });
        }
        prose.push_str(&outside);
        prose.push('\n');
    }
    (prose, anchors)
}

/// The targets of the markdown links `[text](target)` of `prose`.
fn link_targets(prose: &str) -> Vec<String> {
    prose
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &prose[at + 2..];
            rest.find(')').map(|end| rest[..end].to_owned())
        })
        .collect()
}

#[test]
fn every_relative_link_of_the_docs_resolves() {
    let docs = docs();
    let anchors: BTreeMap<PathBuf, Vec<String>> = docs
        .iter()
        .chain(std::iter::once(&(
            "ARCHITECTURE.md".to_owned(),
            std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap(),
        )))
        .map(|(doc, text)| (PathBuf::from(doc), prose_and_anchors(text).1))
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in &docs {
        let (prose, _) = prose_and_anchors(text);
        for target in link_targets(&prose) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                PathBuf::from(doc)
            } else {
                normalize(&Path::new(doc).parent().unwrap().join(file))
            };
            if !root().join(&path).exists() {
                failures.push(format!(
                    "{doc}: link to {target}: {} does not exist",
                    path.display()
                ));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            match anchors.get(&path) {
                Some(known) if known.iter().any(|a| a == anchor) => {}
                Some(known) => failures.push(format!(
                    "{doc}: link to {target}: {} has no heading #{anchor} (it has {known:?})",
                    path.display()
                )),
                None => failures.push(format!(
                    "{doc}: link to {target}: an anchor into a file that is not a doc"
                )),
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} relative links found in the docs"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `docs/../README.md` as `README.md`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// ---- The checks themselves ----------------------------------------------------------------------

#[test]
fn the_checks_find_what_is_wrong() {
    // Commands: console prompts and their output, continuations, documented exit codes.
    let doc = "text\n<!-- exit: 2 -->\n```console\n$ dingrelay test a.yaml\n\nFAIL x\n$ cargo run --release -- \\\n  check b.yaml\n```\n\
               ```sh\nCI_TOKEN=t dingrelay check\nsudo dingrelay list\ncurl -d '{}' http://127.0.0.1:8060/hooks/ci  # post\n```\n";
    let commands = doc_commands("d.md", doc).unwrap();
    assert_eq!(commands.len(), 5, "{commands:#?}");
    assert_eq!((commands[0].at.as_str(), commands[0].exit), ("d.md:4", 2));
    assert_eq!(commands[0].args, ["test", "a.yaml"]);
    assert_eq!(commands[0].shown, ["FAIL x"]);
    assert_eq!(
        (
            commands[1].program == Program::Dingrelay,
            commands[1].args.as_slice()
        ),
        (true, &["check".to_owned(), "b.yaml".to_owned()][..])
    );
    assert_eq!(commands[2].env, [("CI_TOKEN".to_owned(), "t".to_owned())]);
    assert_eq!(commands[2].exit, 0);
    assert_eq!(commands[3].program, Program::Other);
    assert_eq!(commands[4].program, Program::Curl);
    assert!(doc_commands("d.md", "```text\n$ dingrelay check\n```\n").is_err());
    assert!(doc_commands("d.md", "```sh\ndingrelay events | head\n```\n").is_err());

    // Paths and links.
    assert_eq!(
        named_paths(
            "run `tests/fixtures/a.json`, see BENCHMARKS.md. Not /etc/systemd/x or ${D}/docs/y"
        ),
        ["tests/fixtures/a.json", "BENCHMARKS.md"]
    );
    assert_eq!(
        slug(" Health, metrics, reload, logs"),
        "health-metrics-reload-logs"
    );
    assert_eq!(slug(" `robots.<name>`"), "robotsname");
    assert_eq!(
        slug(" 6. Events first (issue 11)"),
        "6-events-first-issue-11"
    );
    let (prose, anchors) = prose_and_anchors(
        "# A\n```sh\n# not a heading [x](y.md)\n```\n## A\nsee [b](c.md#a-1) `[d](e.md)`\n",
    );
    assert_eq!(anchors, ["a", "a-1"]);
    assert_eq!(link_targets(&prose), ["c.md#a-1"]);
    assert_eq!(
        expand(
            "Bearer $T ${U}x",
            &BTreeMap::from([("T".into(), "t".into())])
        ),
        "Bearer t x"
    );
}

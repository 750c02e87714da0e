//! The command line: `dingrelay serve`, `check`, `render`, `test` and `outbox`.
//!
//! `main` parses [`Cli`], sets up logging and calls [`run`]; everything else lives here and in
//! its submodules, so the binary stays thin.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::ConfigError;
use output::exit_code;

pub mod check;
mod events;
mod format;
pub mod outbox;
mod output;
pub mod render;
pub mod serve;
pub mod test;

const EXAMPLES: &str = "\
Examples:
  dingrelay serve                          run the daemon on ./rules.yaml
  dingrelay check                          validate ./rules.yaml and try every rule
  dingrelay check --config /etc/dingrelay/rules.yaml
  dingrelay render --payload alert.json    show what an Alertmanager payload would send
  dingrelay render --payload push.json --source github --event push
  dingrelay test rules.test.yaml           run the rule tests
  dingrelay outbox list                    pending and dead messages, while the daemon runs

Every subcommand takes --config (default ./rules.yaml), or the path in DINGRELAY_CONFIG.
Results go to stdout; errors and diagnostics to stderr.";

/// Relays webhooks (Alertmanager, Grafana, GitHub, GitLab, any JSON) to DingTalk group robots.
#[derive(Debug, Parser)]
#[command(name = "dingrelay", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Log format: `text` (one line per event, for journald) or `json`.
    #[arg(
        long,
        global = true,
        env = "DINGRELAY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: receive webhooks, queue their messages durably, deliver them.
    #[command(after_help = "\
Examples:
  dingrelay serve
  dingrelay serve --config /etc/dingrelay/rules.yaml
  DINGRELAY_LOG=debug dingrelay serve --log-format json

Logs the URL of every source at start. SIGTERM or SIGINT stops intake, lets sends in flight
finish and exits 0; pending messages stay in the outbox for the next start.")]
    Serve {
        /// The config file.
        #[arg(long, env = "DINGRELAY_CONFIG", default_value = "rules.yaml")]
        config: PathBuf,
    },
    /// Run rule tests: payloads and the messages they must produce.
    #[command(after_help = "\
Examples:
  dingrelay test rules.test.yaml
  dingrelay test tests/*.test.yaml
  dingrelay test --config candidate.yaml rules.test.yaml

A test file names its config (`config:`; default: DINGRELAY_CONFIG if set, else rules.yaml next
to the test file; --config overrides both), a fixed time, the variables the config sees, and tests: a payload (a file or inline) and the messages it must produce, or how the
daemon must refuse it. Prints ok/FAIL per test with a diff; exits 0 only when all pass, 1 on
failures, 2 when a test file is invalid.")]
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The config to test, instead of the one each test file names.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Inspect and operate the outbox: pending and dead messages, retries, purges.
    #[command(after_help = "\
Examples:
  dingrelay outbox list
  dingrelay outbox show 42
  dingrelay outbox retry --dead
  dingrelay outbox purge --delivered --older-than 7d

Works while the daemon runs. The outbox is found through the config's `state_dir`, or --state-dir.")]
    Outbox {
        /// The config file, for its `state_dir`.
        #[arg(long, env = "DINGRELAY_CONFIG", default_value = "rules.yaml")]
        config: PathBuf,
        /// The state directory, instead of reading the config.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Validate rules.yaml and render every rule against built-in example payloads.
    #[command(after_help = "\
Examples:
  dingrelay check
  dingrelay check /etc/dingrelay/rules.yaml
  dingrelay check --config /etc/dingrelay/rules.yaml

Exits 0 only when the file loads and every rule renders messages DingTalk accepts.
Errors read `rules.yaml:LINE:COL: what is wrong`, with the offending line, on stderr.")]
    Check {
        /// The config file (same as --config).
        #[arg(value_name = "CONFIG")]
        file: Option<PathBuf>,
        /// The config file.
        #[arg(long, env = "DINGRELAY_CONFIG", default_value = "rules.yaml")]
        config: PathBuf,
        /// Do not ask DingTalk for each app's access token (which tells a wrong appSecret).
        #[arg(long)]
        offline: bool,
    },
    /// Print the exact DingTalk request bodies a payload would produce.
    #[command(after_help = "\
Examples:
  dingrelay render --payload alert.json
  dingrelay render --payload push.json --event push
  dingrelay render --payload hook.json --source ci --event deploy --pretty
  dingrelay render --payload mr.json --source gitlab --header 'X-Gitlab-Event: Merge Request Hook'

Prints one `# rule -> robot` line and one JSON body per message; when no rule matches,
says which rule conditions were false. Authentication is not checked.")]
    Render {
        /// The payload file (a request body as the sender posts it).
        #[arg(long)]
        payload: PathBuf,
        /// The source that receives it (guessed when only one source fits).
        #[arg(long)]
        source: Option<String>,
        /// The event: `X-GitHub-Event` for GitHub (push, pull_request, ...), `X-Gitlab-Event`
        /// for GitLab, the `event` query parameter for json sources.
        #[arg(long)]
        event: Option<String>,
        /// An extra request header, `Name: value`; repeatable.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// The config file.
        #[arg(long, env = "DINGRELAY_CONFIG", default_value = "rules.yaml")]
        config: PathBuf,
        /// Indent the JSON instead of printing it byte for byte as sent.
        #[arg(long)]
        pretty: bool,
    },
}

/// Runs a parsed command line: results go to `out`, errors to `err`. Returns the process exit
/// code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match cli.command {
        Command::Serve { config } => serve::run(&config, out, err),
        Command::Test { files, config } => {
            // The environment's config only stands in for the default: a test file that names
            // its config keeps it, unless --config says otherwise.
            let config = test::ConfigChoice {
                given: config,
                default: std::env::var_os("DINGRELAY_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            };
            test::run(&files, &config, out, err)
        }
        Command::Outbox {
            config,
            state_dir,
            command,
        } => {
            if let outbox::OutboxCommand::DryRun { .. } = command {
                let loaded = match crate::config::Config::load(&config) {
                    Ok(loaded) => loaded,
                    Err(error) => return exit_code(writeln!(err, "{error}").map(|()| 2), 2),
                };
                let state_dir = state_dir.unwrap_or_else(|| loaded.state_dir.clone());
                return outbox::dry_run_at(
                    &loaded,
                    &state_dir,
                    &command,
                    out,
                    err,
                    outbox::now_ms(),
                    &jiff::tz::TimeZone::system(),
                );
            }
            let state_dir = match state_dir {
                Some(dir) => dir,
                None => match crate::config::Config::load(&config) {
                    Ok(config) => config.state_dir,
                    Err(error) => return exit_code(no_outbox(&config, &error, err), 2),
                },
            };
            outbox::run(&state_dir, &command, out, err)
        }
        Command::Check {
            file,
            config,
            offline,
        } => check::run(&file.unwrap_or(config), !offline, out, err),
        Command::Render {
            payload,
            source,
            event,
            headers,
            config,
            pretty,
        } => {
            let request = render::RenderRequest {
                config,
                payload,
                source,
                event,
                headers,
                pretty,
            };
            match render::run(&request, out, err) {
                Ok(code) => code,
                Err(error) => exit_code(writeln!(err, "error: {error}").map(|()| 2), 2),
            }
        }
    }
}

/// Says why `outbox` cannot find the outbox: the config's errors, and how to get past them.
fn no_outbox(config: &Path, error: &ConfigError, err: &mut dyn Write) -> io::Result<u8> {
    writeln!(err, "{error}")?;
    writeln!(
        err,
        "error: cannot find the outbox: fix {} or give --state-dir",
        config.display()
    )?;
    Ok(2)
}

//! `dingrelay check`: loads, validates and compiles a config, describes its robots and sources,
//! then prints its [audit](crate::config::audit): every rule rendered against the built-in example
//! payloads of its source kind.

use std::io::Write;
use std::path::Path;

use crate::config::{self, Config, Finding};
use crate::dingtalk::Endpoint;
use crate::source::{Source, SourceKind};

/// Runs `check` on the config at `path`, writing a report to `out`. Returns the exit code: 0 only
/// when the config loads and every rule renders valid messages.
pub fn run(path: &Path, out: &mut dyn Write) -> u8 {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(out, "{error}");
            let _ = writeln!(
                out,
                "check failed: {} error{} in {}",
                error.diagnostics.len(),
                if error.diagnostics.len() == 1 {
                    ""
                } else {
                    "s"
                },
                path.display()
            );
            return 1;
        }
    };
    check(
        &config,
        &path.display().to_string(),
        jiff::Timestamp::now(),
        out,
    )
}

/// Checks a loaded config (the testable core of [`run`]).
pub fn check(config: &Config, file_name: &str, now: jiff::Timestamp, out: &mut dyn Write) -> u8 {
    let _ = writeln!(out, "{file_name}: loaded");
    for robot in config.robots.values() {
        let target = match &robot.endpoint {
            Endpoint::DryRun { .. } => {
                "dry run: prints each request instead of sending it".to_owned()
            }
            Endpoint::Webhook { url, .. } => url.redacted(),
        };
        let signed = if robot.endpoint.secret().is_some() {
            ", signed (加签)"
        } else {
            ""
        };
        let keywords = if robot.keywords.is_empty() {
            String::new()
        } else {
            format!(", keywords: {}", robot.keywords.join(", "))
        };
        let _ = writeln!(out, "  robot  `{}`: {target}{signed}{keywords}", robot.name);
    }
    for source in config.sources.values() {
        let _ = writeln!(
            out,
            "  source `{}`: {} on POST {}, {}",
            source.name,
            source.kind,
            source.path,
            describe_auth(source)
        );
    }
    for warning in &config.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }

    let audit = config::audit(config, now);
    for finding in &audit.findings {
        let _ = match finding {
            Finding::Valid {
                rule,
                example,
                robot,
                msgtype,
                bytes,
            } => writeln!(
                out,
                "ok     rule `{rule}` on example `{example}` -> robot `{robot}`: {msgtype} of {bytes} bytes"
            ),
            Finding::Problem(problem) => writeln!(out, "{}", problem.render(file_name)),
            Finding::Note(note) => writeln!(out, "note   {note}"),
        };
    }
    let errors = audit.problems().count();
    let renderings = audit.valid_messages();

    if errors == 0 {
        let _ = writeln!(
            out,
            "check passed: {} robots, {} sources, {} rules, {renderings} example messages valid",
            config.robots.len(),
            config.sources.len(),
            config.rules.rules().len()
        );
        0
    } else {
        let _ = writeln!(
            out,
            "check failed: {errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
        1
    }
}

fn describe_auth(source: &Source) -> String {
    let mut parts = Vec::new();
    if source.auth.bearer.is_some() {
        parts.push("bearer token");
    }
    if source.auth.basic.is_some() {
        parts.push("basic auth");
    }
    if source.secret.is_some() {
        parts.push(match source.kind {
            SourceKind::Github => "X-Hub-Signature-256",
            SourceKind::Gitlab => "X-Gitlab-Token",
            _ => "HMAC signature",
        });
    }
    if parts.is_empty() {
        "no authentication".to_owned()
    } else {
        parts.join(" or ")
    }
}

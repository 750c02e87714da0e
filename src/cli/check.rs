//! `dingrelay check`: loads, validates and compiles a config, describes its robots and sources,
//! then prints its [audit](mod@crate::config::audit): every rule rendered against the built-in example
//! payloads of its source kind.

use std::io::{self, Write};
use std::path::Path;

use std::sync::Arc;

use super::output::exit_code;
use crate::config::{self, Config, ConfigError, Finding};
use crate::delivery::app_send::AppClient;
use crate::delivery::app_token::TokenError;
use crate::delivery::transport::HttpTransport;
use crate::source::{Source, SourceKind};
use crate::text::plural;

/// Runs `check` on the config at `path`: what loaded and what rendered goes to `out`, every
/// error and warning to `err`. Returns the exit code: 0 only when the config loads and every
/// rule renders valid messages.
pub fn run(path: &Path, online: bool, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => return exit_code(load_failed(path, &error, err), 1),
    };
    let code = check(
        &config,
        &path.display().to_string(),
        jiff::Timestamp::now(),
        out,
        err,
    );
    if online && !config.apps.is_empty() {
        let apps = exit_code(verify_apps(&config, out, err), 1);
        return code.max(apps);
    }
    code
}

/// Asks DingTalk for each app's access token, as the daemon does at start-up: a refused appKey
/// or appSecret is an error (exit 1), DingTalk out of reach a warning. Neither shows the secret.
fn verify_apps(config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            writeln!(err, "error: cannot start the async runtime: {error}")?;
            return Ok(1);
        }
    };
    let transport = match HttpTransport::new(
        config.delivery.connect_timeout,
        config.delivery.send_timeout,
    ) {
        Ok(transport) => Arc::new(transport),
        Err(error) => {
            writeln!(err, "error: cannot build the HTTP client: {error}")?;
            return Ok(1);
        }
    };
    let mut code = 0;
    for (name, app) in &config.apps {
        let client = AppClient::new(
            app.clone(),
            transport.clone(),
            Arc::new(crate::metrics::Metrics::new()),
        );
        match runtime.block_on(client.verify(config.delivery.send_timeout)) {
            Ok(()) => writeln!(
                out,
                "ok     app `{name}`: DingTalk gave an access token for appKey {}",
                app.app_key
            )?,
            Err(error @ TokenError::Refused { .. }) => {
                writeln!(
                    err,
                    "error: {error}; fix apps.{name}.app_key and app_secret (the app's Client ID and Client Secret)"
                )?;
                code = 1;
            }
            Err(error) => writeln!(
                err,
                "warning: {error}; the appKey and appSecret are not verified (--offline skips this)"
            )?,
        }
    }
    if code != 0 {
        writeln!(err, "check failed: DingTalk refused an app's credentials")?;
    }
    Ok(code)
}

/// The report of a config that does not load: its errors and their count.
fn load_failed(path: &Path, error: &ConfigError, err: &mut dyn Write) -> io::Result<u8> {
    writeln!(err, "{error}")?;
    writeln!(
        err,
        "check failed: {} error{} in {}",
        error.diagnostics.len(),
        plural(error.diagnostics.len()),
        path.display()
    )?;
    Ok(1)
}

/// Checks a loaded config (the testable core of [`run`]).
pub fn check(
    config: &Config,
    file_name: &str,
    now: jiff::Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    exit_code(report(config, file_name, now, out, err), 1)
}

/// Writes the report of [`check`]; returns its exit code.
fn report(
    config: &Config,
    file_name: &str,
    now: jiff::Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    writeln!(out, "{file_name}: loaded")?;
    for robot in config.robots.values() {
        let target = robot.endpoint.target();
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
        writeln!(out, "  robot  `{}`: {target}{signed}{keywords}", robot.name)?;
    }
    for source in config.sources.values() {
        writeln!(
            out,
            "  source `{}`: {} on POST {}, {}",
            source.name,
            source.kind,
            source.path,
            describe_auth(source)
        )?;
    }
    for warning in &config.warnings {
        writeln!(err, "warning: {warning}")?;
    }

    let audit = config::audit(config, now);
    for finding in &audit.findings {
        match finding {
            Finding::Valid {
                rule,
                example,
                robot,
                msgtype,
                bytes,
            } => writeln!(
                out,
                "ok     rule `{rule}` on example `{example}` -> robot `{robot}`: {msgtype} of {bytes} bytes"
            )?,
            Finding::Problem(problem) => {
                writeln!(err, "{}", problem.render(file_name, &audit.source.0))?
            }
            Finding::Note(note) => writeln!(out, "note   {note}")?,
        }
    }
    let errors = audit.problems().count();
    let renderings = audit.valid_messages();

    if errors == 0 {
        writeln!(
            out,
            "check passed: {} robots, {} sources, {} rules, {renderings} example messages valid",
            config.robots.len(),
            config.sources.len(),
            config.rules.rules().len()
        )?;
        Ok(0)
    } else {
        writeln!(err, "{}", audit.failed_line())?;
        Ok(1)
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

//! `dingrelay render`: the exact DingTalk request bodies a payload would produce.

use std::io::{self, Write};
use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::output::exit_code;
use crate::config::Config;
use crate::delivery::app_send::request_body;
use crate::dingtalk::Endpoint;
use crate::routing::rows_of;
use crate::source::{Inbound, Source, SourceKind};

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    pub config: PathBuf,
    pub payload: PathBuf,
    /// The source name; guessed from the payload and headers when there is one candidate.
    pub source: Option<String>,
    /// The event name, as the sender's event header would carry it (`X-GitHub-Event`,
    /// `X-Gitlab-Event`) or, for json sources, the `event` query parameter.
    pub event: Option<String>,
    /// Extra request headers, `Name: value`.
    pub headers: Vec<String>,
    /// Pretty-print the bodies instead of printing them exactly as sent.
    pub pretty: bool,
}

/// Why render could not run. Printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read the payload {path}: {error}")]
    Payload { path: String, error: std::io::Error },
    #[error("{0}")]
    Usage(String),
}

/// Runs `render`: the bodies and what matched go to `out`, errors to `err`. Returns the process
/// exit code: 0 when the payload produced valid messages or matched no rule, 1 when a rule failed
/// to render or validate, 2 when the output could not be written.
pub fn run(
    request: &RenderRequest,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, RenderError> {
    let config = Config::load(&request.config)?;
    let body = std::fs::read(&request.payload).map_err(|error| RenderError::Payload {
        path: request.payload.display().to_string(),
        error,
    })?;
    render(&config, request, &body, jiff::Timestamp::now(), out, err)
}

/// Renders `body` with a loaded config (the testable core of [`run`]).
pub fn render(
    config: &Config,
    request: &RenderRequest,
    body: &[u8],
    now: jiff::Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, RenderError> {
    let mut headers = parse_headers(&request.headers)?;
    let source = choose_source(config, request.source.as_deref(), &headers, body)?;
    if request.event.is_none()
        && source.kind == SourceKind::Github
        && !headers.contains_key(crate::source::github::EVENT_HEADER)
    {
        return Err(RenderError::Usage(format!(
            "source `{}` is a github source: give the event with --event <name> (e.g. --event push); \
             GitHub sends it in the X-GitHub-Event header, not in the payload, so render cannot tell it",
            source.name
        )));
    }
    let mut query = String::new();
    if let Some(event) = &request.event {
        let header = match source.kind {
            SourceKind::Github | SourceKind::Gitlab => source.kind.event_header(),
            SourceKind::Json => {
                query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("event", event)
                    .finish();
                None
            }
            SourceKind::Alertmanager | SourceKind::Grafana => {
                return Err(RenderError::Usage(format!(
                    "--event does not apply to {} sources: their event (firing or resolved) comes from the payload's `status`",
                    source.kind
                )));
            }
        };
        if let Some(header) = header {
            let value = HeaderValue::from_str(event).map_err(|_| {
                RenderError::Usage(format!("--event `{event}` is not a valid header value"))
            })?;
            headers.insert(HeaderName::from_static(header), value);
        }
    }
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(source.kind.default_content_type(body)),
        );
    }

    let inbound = Inbound {
        headers: &headers,
        query: &query,
        body,
    };
    let printed = print(config, request, source, &inbound, now, out, err);
    Ok(exit_code(printed, 2))
}

/// Writes what the request renders to: the event, then each message or why none came out (to
/// `err`); returns the exit code of [`render`].
fn print(
    config: &Config,
    request: &RenderRequest,
    source: &Source,
    inbound: &Inbound<'_>,
    now: jiff::Timestamp,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let event = match source.parse(inbound) {
        Ok(event) => event,
        Err(rejection) => {
            // What the daemon would answer with a 4xx: not a render failure of a rule.
            let hint = match source.kind {
                SourceKind::Gitlab
                    if request.event.is_none()
                        && rejection
                            .to_string()
                            .contains("cannot tell the GitLab event") =>
                {
                    "; give the event with --event (e.g. --event 'Push Hook', as GitLab sends it in X-Gitlab-Event)"
                }
                _ => "",
            };
            writeln!(
                err,
                "error: source `{}` refuses this payload: {rejection}{hint}",
                source.name
            )?;
            return Ok(1);
        }
    };
    writeln!(
        out,
        "# source `{}` ({}), {}; authentication is not checked by render",
        source.name,
        source.kind,
        super::format::event_name(&event.name)
    )?;
    if let Some(reason) = &event.ignored {
        writeln!(
            out,
            "ignored: {reason}; no rule is evaluated (the daemon answers 202)"
        )?;
        return Ok(0);
    }

    let routing = config.rules.route(&event, now);
    for delivery in &routing.messages {
        let target = match &delivery.robot.endpoint {
            Endpoint::DryRun { .. } => "dry run".to_owned(),
            endpoint => endpoint.target(),
        };
        let mut notes = Vec::new();
        if delivery.omitted_alerts > 0 {
            notes.push(format!(
                "{} alerts left out to fit 20,000 bytes",
                delivery.omitted_alerts
            ));
        }
        if delivery.cut_bytes > 0 {
            notes.push(format!(
                "{} bytes cut to fit 20,000 bytes",
                delivery.cut_bytes
            ));
        }
        if let Some(tag) = &delivery.keyword_tag {
            notes.push(format!("the robot's keyword {tag} put in front"));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        };
        let Some(app) = delivery.robot.endpoint.app() else {
            writeln!(
                out,
                "# rule `{}` -> robot `{}` ({target}){notes}",
                delivery.rule, delivery.robot.name
            )?;
            writeln!(out, "{}", to_json(&delivery.message, request.pretty))?;
            continue;
        };
        // A robot of an app: the body of its API's request, one per row the daemon queues.
        for recipients in rows_of(&delivery.robot, &delivery.recipients) {
            let to = if recipients.is_empty() {
                String::new()
            } else {
                format!(" to {}", recipients.join(", "))
            };
            writeln!(
                out,
                "# rule `{}` -> robot `{}`{to} ({target}){notes}",
                delivery.rule, delivery.robot.name
            )?;
            if let Some(reason) = app.kind.no_recipient(&recipients) {
                writeln!(err, "error: robot `{}`: {reason}", delivery.robot.name)?;
                continue;
            }
            match request_body(&app.kind, &delivery.message, &recipients) {
                Ok(body) => writeln!(out, "{}", to_json(&body, request.pretty))?,
                Err(error) => writeln!(err, "error: robot `{}`: {error}", delivery.robot.name)?,
            }
        }
    }
    for error in &routing.errors {
        writeln!(
            err,
            "error: {error} (the daemon sends a fallback message in its place)"
        )?;
    }
    if routing.messages.is_empty() && routing.errors.is_empty() {
        writeln!(out, "no rule matched this event:")?;
        if routing.skipped.is_empty() {
            writeln!(out, "  no rule is configured for source `{}`", source.name)?;
        }
        for skipped in &routing.skipped {
            writeln!(out, "  {skipped}")?;
        }
    }
    Ok(if routing.errors.is_empty() { 0 } else { 1 })
}

fn parse_headers(raw: &[String]) -> Result<HeaderMap, RenderError> {
    let mut headers = HeaderMap::new();
    for line in raw {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RenderError::Usage(format!("--header `{line}` is not `Name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| RenderError::Usage(format!("--header `{line}`: invalid header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| RenderError::Usage(format!("--header `{line}`: invalid header value")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The source named, or the one source that can have sent this payload.
fn choose_source<'c>(
    config: &'c Config,
    name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'c Source, RenderError> {
    let names = || {
        config
            .sources
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = name {
        return config.sources.get(name).ok_or_else(|| {
            RenderError::Usage(format!("unknown source `{name}` (sources: {})", names()))
        });
    }
    if config.sources.len() == 1 {
        return Ok(&config.sources[0]);
    }
    let kind = SourceKind::guess(headers, body);
    let candidates: Vec<&Source> = config.sources.values().filter(|s| s.kind == kind).collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(RenderError::Usage(format!(
            "this looks like a {kind} payload but no source has kind {kind}; choose one with --source (sources: {})",
            names()
        ))),
        _ => Err(RenderError::Usage(format!(
            "several {kind} sources could take this payload; choose one with --source ({})",
            candidates
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `value` as JSON, indented when `pretty`.
fn to_json(value: &impl serde::Serialize, pretty: bool) -> String {
    let json = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    json.unwrap_or_default()
}

//! `mock-dingtalk`: the stand-in for DingTalk's custom-robot endpoint on loopback, with the
//! command line of the Python tool's custom-robot options (`shared/tools/mock-dingtalk`), for the
//! fault scripts (`scripts/lib.sh`).
//!
//! Serves `POST /robot/send` and the control endpoints `GET /_messages`, `GET /_stats`,
//! `POST /_fault` and `POST /_reset` (see the library). Like the Python tool it records every
//! accepted message, a repeated `msgUuid` included (`--dedupe-msg-uuid` drops repeats instead),
//! and answers an unknown token with 300005. It stops on SIGTERM or SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mock_dingtalk::{ErrmsgEra, MockDingTalk};

/// A strict stand-in for DingTalk's custom group robot (`POST /robot/send`), on loopback.
#[derive(Debug, Parser)]
#[command(
    name = "mock-dingtalk",
    version,
    after_help = "Control endpoints: GET /_messages[?channel=robot], GET /_stats, \
                  POST /_fault {\"mode\": \"none|http500|html|hang|reset|busy|ipthrottle\", \
                  \"count\": N?}, POST /_reset."
)]
struct Args {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the chosen port to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// A custom robot: TOKEN[:SECRET[:KEYWORD,KEYWORD...]] (repeatable; at least one).
    #[arg(
        long = "robot",
        value_name = "TOKEN[:SECRET[:KEYWORDS]]",
        required = true
    )]
    robots: Vec<String>,
    /// Messages per robot per window.
    #[arg(long, default_value_t = 20)]
    rate: usize,
    /// The sliding window, in seconds.
    #[arg(long, default_value_t = 60.0)]
    window: f64,
    /// The penalty once the rate is exceeded, in seconds.
    #[arg(long, default_value_t = 600.0)]
    ban: f64,
    /// The throttle errcode: 130101 or 410100.
    #[arg(long, default_value_t = 130101, value_parser = throttle_code)]
    throttle_code: i64,
    /// The wording of 310000 answers.
    #[arg(long, value_enum, default_value_t = Era::Zh)]
    errmsg_era: Era,
    /// Delays every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// The errcode for an unknown access token (the Python tool's: 300005).
    #[arg(long, default_value_t = 300005)]
    unknown_token_code: i64,
    /// Answer a repeated msgUuid (per robot) ok without recording it again, as DingTalk
    /// documents; by default every accepted message is recorded, like the Python tool.
    #[arg(long)]
    dedupe_msg_uuid: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Era {
    En,
    Desc,
    Zh,
}

fn throttle_code(text: &str) -> Result<i64, String> {
    match text {
        "130101" => Ok(130101),
        "410100" => Ok(410100),
        _ => Err("130101 or 410100".to_owned()),
    }
}

/// `TOKEN[:SECRET[:KW1,KW2]]` as the Python tool splits it: at the first two colons; an empty
/// secret is none, empty keywords are dropped.
fn robot_spec(spec: &str) -> (&str, Option<&str>, Vec<&str>) {
    let mut parts = spec.splitn(3, ':');
    let token = parts.next().unwrap_or("");
    let secret = parts.next().filter(|s| !s.is_empty());
    let keywords = parts
        .next()
        .map(|k| k.split(',').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default();
    (token, secret, keywords)
}

/// `127.*`, `localhost` or `::1`, like the Python tool.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() && (ip.is_ipv6() || host.starts_with("127.")))
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a duration in seconds"))
}

fn mock(args: &Args) -> Result<MockDingTalk, String> {
    let mut mock = MockDingTalk::new()
        .rate(args.rate)
        .window(seconds("window", args.window)?)
        .ban(seconds("ban", args.ban)?)
        .throttle_code(args.throttle_code)
        .errmsg_era(match args.errmsg_era {
            Era::En => ErrmsgEra::En,
            Era::Desc => ErrmsgEra::Desc,
            Era::Zh => ErrmsgEra::Zh,
        })
        .latency(Duration::from_millis(args.latency_ms))
        .unknown_token_code(args.unknown_token_code)
        .dedupe_msg_uuid(args.dedupe_msg_uuid);
    for spec in &args.robots {
        let (token, secret, keywords) = robot_spec(spec);
        mock = mock.robot(token, secret, &keywords);
    }
    Ok(mock)
}

async fn run(args: Args) -> Result<(), String> {
    if !is_loopback(&args.host) {
        return Err("listens on loopback only".to_owned());
    }
    let mock = mock(&args)?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?
        .port();
    if let Some(path) = &args.port_file {
        std::fs::write(path, port.to_string())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!(
        "mock-dingtalk listening on http://{}:{port}/robot/send",
        args.host
    );
    let server = axum::serve(listener, mock.router());
    tokio::select! {
        result = server => result.map_err(|e| format!("server failed: {e}")),
        () = stopped() => Ok(()),
    }
}

/// SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mock-dingtalk: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_specs_split_like_the_python_tool() {
        assert_eq!(robot_spec("tok"), ("tok", None, vec![]));
        assert_eq!(robot_spec("tok:"), ("tok", None, vec![]));
        assert_eq!(robot_spec("tok:SEC1"), ("tok", Some("SEC1"), vec![]));
        assert_eq!(robot_spec("tok::告警"), ("tok", None, vec!["告警"]));
        assert_eq!(
            robot_spec("tok:SEC1:告警,,发布"),
            ("tok", Some("SEC1"), vec!["告警", "发布"])
        );
        // Only the first two colons split.
        assert_eq!(robot_spec("t:s:a:b"), ("t", Some("s"), vec!["a:b"]));
    }

    #[test]
    fn only_loopback_hosts() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "10.0.0.1", "::", "example.com", ""] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn the_command_line_of_the_scripts_parses() {
        let args = Args::try_parse_from([
            "mock-dingtalk",
            "--host",
            "127.0.0.1",
            "--port-file",
            "/tmp/port",
            "--robot",
            "storm-robot-token:SECstorm:告警",
            "--rate",
            "20",
        ])
        .expect("parses");
        assert_eq!(args.robots, ["storm-robot-token:SECstorm:告警"]);
        assert_eq!((args.port, args.rate), (0, 20));
        assert!(mock(&args).is_ok());
        assert!(
            Args::try_parse_from(["mock-dingtalk"]).is_err(),
            "a robot is required"
        );
        assert!(
            Args::try_parse_from(["mock-dingtalk", "--robot", "t", "--throttle-code", "1"])
                .is_err()
        );
        let bad_window =
            Args::try_parse_from(["mock-dingtalk", "--robot", "t", "--window=-1"]).expect("parses");
        assert!(mock(&bad_window).is_err());
    }
}

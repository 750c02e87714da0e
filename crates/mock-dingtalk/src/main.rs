//! `mock-dingtalk`: the stand-in for DingTalk's custom-robot endpoint and app APIs on loopback,
//! with the command line of the Python tool (`shared/tools/mock-dingtalk`) for custom robots and
//! apps, for the fault scripts (`scripts/lib.sh`).
//!
//! Serves `POST /robot/send`, the app APIs of both hosts (tokens, app robots, work
//! notifications) and the control endpoints `GET /_messages`, `GET /_stats`, `POST /_fault`,
//! `POST /_expire` and `POST /_reset` (see the library). Like the Python tool it records every
//! accepted message, a repeated `msgUuid` included (`--dedupe-msg-uuid` drops repeats instead),
//! and answers an unknown token with 300005. It stops on SIGTERM or SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mock_dingtalk::{ErrmsgEra, MockDingTalk};

/// A strict stand-in for DingTalk's custom group robot (`POST /robot/send`) and an
/// enterprise internal app's APIs, on loopback. Point a client's oapi.dingtalk.com AND
/// api.dingtalk.com base URLs at it.
#[derive(Debug, Parser)]
#[command(
    name = "mock-dingtalk",
    version,
    group = clap::ArgGroup::new("who").args(["robots", "apps"]).required(true).multiple(true),
    after_help = "App endpoints: GET /gettoken?appkey=&appsecret=, POST /v1.0/oauth2/accessToken, \
                  POST /v1.0/robot/groupMessages/send, POST /v1.0/robot/oToMessages/batchSend \
                  (token in header x-acs-dingtalk-access-token), POST \
                  /topapi/message/corpconversation/asyncsend_v2|getsendresult|getsendprogress \
                  ?access_token=.\n\n\
                  Control endpoints: GET /_messages[?channel=robot|app_robot_group|app_robot_oto|\
                  work_notice], GET /_stats (adds channels, token_fetches, tokens_issued), \
                  POST /_fault {\"mode\": \"none|http500|html|hang|reset|busy|ipthrottle|errcode\", \
                  \"count\": N?, \"channels\": [\"robot\"|\"oapi\"|\"api\"|\"all\"]?} (default \
                  [\"robot\"]), POST /_expire[?appkey=K] (expire tokens now), POST /_reset (also \
                  forgets tokens and work tasks)."
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
    /// A custom robot: TOKEN[:SECRET[:KEYWORD,KEYWORD...]] (repeatable; at least one --robot or --app).
    #[arg(long = "robot", value_name = "TOKEN[:SECRET[:KEYWORDS]]")]
    robots: Vec<String>,
    /// An enterprise internal app: KEY:SECRET[:AGENTID] (repeatable). Its robot's robotCode is
    /// KEY; AGENTID defaults to 3000000001, 3000000002, ...
    #[arg(long = "app", value_name = "KEY:SECRET[:AGENTID]")]
    apps: Vec<String>,
    /// A member of the organisation, in department 1: ID:NAME (repeatable).
    #[arg(long = "user", value_name = "ID:NAME")]
    users: Vec<String>,
    /// A member whom one-to-one robot messages never reach (always in
    /// flowControlledStaffIdList): ID:NAME (repeatable).
    #[arg(long = "flow-controlled-user", value_name = "ID:NAME")]
    flow_controlled_users: Vec<String>,
    /// A group (openConversationId) and the app robots in it (all apps' when no list):
    /// CID[:ROBOTCODE,...] (repeatable).
    #[arg(long = "conversation", value_name = "CID[:ROBOTCODES]")]
    conversations: Vec<String>,
    /// Access-token lifetime in seconds: the same token while valid (renewed on each fetch), a
    /// new one after expiry; gettoken and accessToken share it.
    #[arg(long, default_value_t = 7200.0)]
    token_ttl: f64,
    /// The errcode of an expired token on oapi paths: 40014 (observed) or 42001.
    #[arg(long, default_value_t = 40014, value_parser = expired_errcode)]
    oapi_expired_errcode: i64,
    /// Calls per app per API in any second (0: off); over it 90018 (topapi: 88 + 90018) or
    /// HTTP 403 Forbidden.AccessDenied.QpsLimitForAppkeyAndApi.
    #[arg(long, default_value_t = 20)]
    app_qps: usize,
    /// App-robot sends per robot per group, and per robot per user, per window (modelled);
    /// over it: 400 send.too.fast, or the user in flowControlledStaffIdList.
    #[arg(long, default_value_t = 20)]
    app_robot_rate: usize,
    /// That window, in seconds.
    #[arg(long, default_value_t = 60.0)]
    app_robot_window: f64,
    /// userIds per oToMessages/batchSend call.
    #[arg(long, default_value_t = 20)]
    oto_max_users: usize,
    /// Work notifications per app per user per day; over it errcode 0 still, and 143105 in
    /// getsendresult.
    #[arg(long, default_value_t = 500)]
    work_daily_limit: usize,
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

fn expired_errcode(text: &str) -> Result<i64, String> {
    match text {
        "40014" => Ok(40014),
        "42001" => Ok(42001),
        _ => Err("40014 or 42001".to_owned()),
    }
}

/// `ID:NAME`.
fn user_spec(spec: &str) -> Result<(&str, &str), String> {
    match spec.split_once(':') {
        Some((id, name)) if !id.is_empty() && !name.is_empty() => Ok((id, name)),
        _ => Err(format!("a user is ID:NAME, not {spec:?}")),
    }
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
    mock = mock
        .token_ttl(seconds("token-ttl", args.token_ttl)?)
        .oapi_expired_errcode(args.oapi_expired_errcode)
        .app_qps(args.app_qps)
        .app_robot_rate(
            args.app_robot_rate,
            seconds("app-robot-window", args.app_robot_window)?,
        )
        .oto_max_users(args.oto_max_users)
        .work_daily_limit(args.work_daily_limit);
    let mut agents = Vec::new();
    for spec in &args.apps {
        let parts: Vec<&str> = spec.split(':').collect();
        let (key, secret, agent) = match parts.as_slice() {
            [k, s] => (*k, *s, None),
            [k, s, a] => (*k, *s, Some(*a)),
            _ => return Err(format!("--app wants KEY:SECRET[:AGENTID], got {spec:?}")),
        };
        if key.is_empty() || secret.is_empty() {
            return Err(format!("--app wants KEY:SECRET[:AGENTID], got {spec:?}"));
        }
        mock = mock.app(key, secret);
        if let Some(agent) = agent.filter(|a| !a.is_empty()) {
            let id: i64 = agent
                .parse()
                .map_err(|_| format!("AGENTID must be a number, got {agent:?}"))?;
            if agents.contains(&id) {
                return Err("two --app share an AGENTID".to_owned());
            }
            agents.push(id);
            mock = mock.agent_id(key, id);
        }
    }
    for spec in &args.users {
        let (id, name) = user_spec(spec)?;
        mock = mock.user(id, name);
    }
    for spec in &args.flow_controlled_users {
        let (id, name) = user_spec(spec)?;
        mock = mock.flow_controlled_user(id, name);
    }
    for spec in &args.conversations {
        let (cid, codes) = spec.split_once(':').unwrap_or((spec, ""));
        if cid.is_empty() {
            return Err(format!(
                "--conversation wants CID[:ROBOTCODE,...], got {spec:?}"
            ));
        }
        let codes: Vec<&str> = codes.split(',').filter(|c| !c.is_empty()).collect();
        if let Some(code) = codes
            .iter()
            .find(|c| !args.apps.iter().any(|a| a.split(':').next() == Some(**c)))
        {
            return Err(format!(
                "--conversation {cid}: robotCode {code:?} is not an --app key"
            ));
        }
        mock = mock.conversation(cid, &codes);
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
            "a robot or an app is required"
        );
        assert!(
            Args::try_parse_from(["mock-dingtalk", "--robot", "t", "--throttle-code", "1"])
                .is_err()
        );
        let bad_window =
            Args::try_parse_from(["mock-dingtalk", "--robot", "t", "--window=-1"]).expect("parses");
        assert!(mock(&bad_window).is_err());
    }

    #[test]
    fn the_app_options_parse() {
        let args = Args::try_parse_from([
            "mock-dingtalk",
            "--app",
            "dingkey:secret:1234567890",
            "--app",
            "dingother:s2",
            "--user",
            "oncall42:On call",
            "--flow-controlled-user",
            "busy7:Busy",
            "--conversation",
            "cid1==:dingkey",
            "--conversation",
            "cid2==",
            "--token-ttl",
            "60",
            "--oapi-expired-errcode",
            "42001",
        ])
        .expect("parses without --robot");
        assert!(mock(&args).is_ok());
        for bad in [
            vec!["--app", "nokey"],
            vec!["--app", "k:s:notanumber"],
            vec!["--app", "k:s", "--user", "nameless"],
            vec!["--app", "k:s", "--conversation", "cid:unknown"],
        ] {
            let mut argv = vec!["mock-dingtalk"];
            argv.extend(bad.iter().copied());
            let args = Args::try_parse_from(argv).expect("parses");
            assert!(mock(&args).is_err(), "{bad:?}");
        }
        assert!(
            Args::try_parse_from([
                "mock-dingtalk",
                "--app",
                "k:s",
                "--oapi-expired-errcode",
                "1"
            ])
            .is_err()
        );
    }
}

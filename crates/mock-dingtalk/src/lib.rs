//! A strict stand-in for DingTalk's custom robots and the app APIs, the Rust twin of the Python
//! tool `shared/tools/mock-dingtalk` (same checks, same order, same answers, same warnings). It
//! knows nothing of dingrelay, which it stands in front of in tests.
//!
//! - Custom group robot: `POST /robot/send` (checked as listed below).
//! - Enterprise internal apps (`shared/reference/dingtalk-app-api.md` §1–4, §9), both hosts on
//!   one server, each family answering in its own shape (oapi: HTTP 200 + errcode, topapi token
//!   errors wrapped in errcode 88; api: HTTP 4xx + `{"code","requestid","message"}`): tokens
//!   (`GET /gettoken`, `POST /v1.0/oauth2/accessToken`; module `token`), app robots
//!   (`POST /v1.0/robot/groupMessages/send`, `.../oToMessages/batchSend`; module `app_robot`)
//!   and work notifications (`POST /topapi/message/corpconversation/asyncsend_v2`,
//!   `.../getsendresult`, `.../getsendprogress`; module `work`). Apps, users and groups come
//!   from [`MockDingTalk::app`], [`MockDingTalk::user`], [`MockDingTalk::conversation`];
//!   [`MockDingTalk::app_messages`], [`MockDingTalk::app_stats`] and
//!   [`MockDingTalk::expire_tokens`] are for the tests. Token lifetimes, QPS and robot windows
//!   and work tasks' 24 h use tokio time; work notifications' days use the injected wall clock.
//!
//! Two faces share one state:
//! - in-process: [`MockDingTalk::handle`] (method, path and query, `Content-Type`, body),
//!   [`MockDingTalk::request`] (the same with headers both ways), [`MockDingTalk::post`] (a URL
//!   and a JSON body) and [`MockDingTalk::post_app`] (the same with an api token header)
//!   answer like the server would, with no socket:
//!   a test can wrap them in its client's transport and run under `tokio::time::pause()`;
//! - over loopback: [`MockDingTalk::serve`] runs the same handler as an axum server on
//!   `127.0.0.1:0` ([`MockDingTalk::router`] for another listener), for tests that start a real
//!   binary, and the `mock-dingtalk` binary serves it for the fault scripts.
//!
//! What `/robot/send` checks, in the Python tool's order (DingTalk's real order is undocumented):
//! 1. method: anything but POST on `/robot/send` gets 43002;
//! 2. fault injection ([`MockDingTalk::set_fault`]), before any other check;
//! 3. `access_token` present (40035) and known (300001 by default, see
//!    [`MockDingTalk::unknown_token_code`]); the query is decoded once, like any server;
//! 4. 加签, when the robot has a secret: `timestamp` and `sign` in the query (else 310000 "sign"),
//!    `timestamp` an integer within one hour of the injected wall clock (else 310000
//!    "timestamp"), `sign` equal, in constant time, to base64(HMAC-SHA256(secret,
//!    "{timestamp}\n{secret}")) (else 310000 "sign");
//! 5. `Content-Type: application/json` (parameters such as `charset` allowed), else 43004;
//! 6. the rate: every request that got this far counts in a sliding window of `rate` per
//!    `window` per robot; the one beyond it gets the throttle code and starts a `ban`-long block
//!    during which every request gets the throttle code (and is not counted, nor extends it);
//! 7. body ≤ 20,000 bytes (460101), a JSON object (40035 "缺少参数 json"), a known `msgtype`
//!    (400105), the required fields of that type in DingTalk's casing (400402 naming the field);
//! 8. keywords: at least one in some string of the `<msgtype>` object (310000 "keyword");
//! 9. `msgUuid`: a repeat (per robot) answers ok but is not recorded again (unless turned off
//!    with [`MockDingTalk::dedupe_msg_uuid`], as the Python tool and the binary do);
//! 10. records the message with its warnings (what DingTalk accepts but renders badly) and
//!     answers `{"errcode":0,"errmsg":"ok"}`.
//!
//! Time: windows and bans use `tokio::time::Instant`; the signature's freshness uses the wall
//! clock given to [`MockDingTalk::clock`] (default: the system clock), which tests under paused
//! time derive from the same tokio clock as the client's.

mod app;
mod app_robot;
mod login;
mod token;
mod work;

pub use app::{
    AppMessage, AppStats, Channel, ChannelStats, FIRST_AGENT_ID, Family, ROOT_DEPT, TOKEN_TTL,
};
pub use app_robot::{MSG_PARAM_MAX, ParamError, check_msg_param};
pub use work::{WORK_MAX_DEPTS, WORK_MAX_USERS, WORK_MSG_MAX, WORK_TO_ALL_PER_DAY, check_work_msg};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

/// The largest body DingTalk takes, in bytes.
pub const MAX_BODY: usize = 20_000;
/// How far the 加签 timestamp may be from the server's clock, in ms.
pub const SKEW_MS: i64 = 3_600_000;
/// How long [`Fault::Hang`] keeps a request waiting: far longer than any client timeout.
pub const HANG: Duration = Duration::from_secs(3600);
/// The two throttle codes DingTalk has been seen to answer.
pub const THROTTLE_CODES: [i64; 2] = [130101, 410100];

const MSGTYPES: [&str; 5] = ["text", "link", "markdown", "actionCard", "feedCard"];
const URL_SCHEMES: [&str; 3] = ["http://", "https://", "dingtalk://"];

/// Something other than a normal answer, for the next requests to `/robot/send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Normal answers.
    None,
    /// HTTP 500, `text/plain`.
    Http500,
    /// HTTP 200 with an HTML page (what a throttled edge sometimes returns).
    Html,
    /// No answer for [`HANG`] (then `-1`): the client's timeout fires first.
    Hang,
    /// The connection is dropped without an answer.
    Reset,
    /// `{"errcode":-1,"errmsg":"系统繁忙"}`.
    Busy,
    /// `{"errcode":N,"errmsg":...}` with DingTalk's wording for N when it is a known code.
    ErrCode(i64),
    /// The IP-level throttle's JSON, which has no `errcode`:
    /// `{"status":1111,"wait":5,"source":"x5","punish":"deny",...}`.
    NoErrcodeJson,
}

/// An HTTP answer, whatever its status: DingTalk answers 200 for refusals too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// An [`Answer`] with the headers the app APIs add: `x-acs-request-id`, `x-acs-trace-id` on
/// api answers, `X-Mock-Detail` (ASCII) where the answer is modelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status, `Content-Type` and body.
    pub answer: Answer,
    /// Further headers.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.answer.body).unwrap_or(Value::Null)
    }
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Reply {
        Reply {
            answer,
            headers: Vec::new(),
        }
    }
}

/// No answer at all: the connection is closed first ([`Fault::Reset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed before an answer (mock-dingtalk reset fault)")
    }
}

impl Error for Dropped {}

/// The wording of 310000 answers, which DingTalk has changed over the years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrmsgEra {
    /// `sign not match`, `invalid timestamp`, `keywords not in content`.
    En,
    /// `description:机器人发送签名不匹配;solution:...`.
    Desc,
    /// `错误描述:机器人发送签名不匹配;解决方案:...` (the Python tool's default).
    #[default]
    Zh,
}

#[derive(Debug, Clone, Copy)]
enum Why {
    Sign,
    Timestamp,
    Keyword,
}

impl ErrmsgEra {
    fn errmsg(self, why: Why) -> &'static str {
        match (self, why) {
            (ErrmsgEra::En, Why::Keyword) => "keywords not in content",
            (ErrmsgEra::En, Why::Sign) => "sign not match",
            (ErrmsgEra::En, Why::Timestamp) => "invalid timestamp",
            (ErrmsgEra::Desc, Why::Keyword) => {
                "description:关键词不匹配;solution:请联系群管理员查看此机器人的关键词，并在发送的信息中包含此关键词;"
            }
            (ErrmsgEra::Desc, Why::Sign) => {
                "description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳必须都放在调用的网址中;"
            }
            (ErrmsgEra::Desc, Why::Timestamp) => {
                "description:机器人发送签名过期;solution:签名生成时间和发送时间请保持在 timestampms 以内;"
            }
            (ErrmsgEra::Zh, Why::Keyword) => {
                "错误描述:关键词不匹配;解决方案:请联系群管理员查看此机器人的关键词，并在发送的信息中包含此关键词;"
            }
            (ErrmsgEra::Zh, Why::Sign) => {
                "错误描述:机器人发送签名不匹配;解决方案:请确认签名和生成签名的时间戳必须都放在调用的网址中;"
            }
            (ErrmsgEra::Zh, Why::Timestamp) => {
                "错误描述:机器人发送签名过期;解决方案:签名生成时间和发送时间请保持在 timestampms 以内;"
            }
        }
    }
}

/// DingTalk's wording for a code, for injected [`Fault::ErrCode`] answers.
fn errmsg_for(code: i64) -> &'static str {
    match code {
        0 => "ok",
        -1 => "系统繁忙",
        40035 => "缺少参数 json",
        43002 => "需要POST请求",
        43004 => "无效的HTTP HEADER Content-Type",
        130101 => "send too fast, exceed 20 times per minute",
        300001 | 300005 => "token is not exist",
        310000 => "sign not match",
        400013 => "群已被解散",
        400101 => "access_token不存在",
        400102 => "机器人已停用",
        400105 => "不支持的消息类型",
        400106 => "机器人不存在",
        410100 => "发送速度太快而限流",
        430101 => "含有不安全的外链",
        430102 => "含有不合适的文本",
        430103 => "含有不合适的图片",
        430104 => "含有不合适的内容",
        460101 => "message too long, exceed 20000 bytes",
        90030 => "webhook over limit",
        _ => "fault injected by mock-dingtalk",
    }
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The robot's access token.
    pub robot: String,
    /// When it was accepted, on tokio's clock.
    pub at: Instant,
    /// When it was accepted, on the injected wall clock (ms).
    pub at_ms: i64,
    /// The JSON body as sent.
    pub body: Value,
    /// What DingTalk accepts but renders badly: `mention_not_in_content`, `at_ignored_for_type`,
    /// `url_scheme`, `btns_ignored_with_single`, `more_than_50_mentions`, ...
    pub warnings: Vec<String>,
}

/// Counters since the start or the last [`MockDingTalk::reset`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests to `/robot/send` with the POST method, faulted ones included.
    pub requests: usize,
    /// Messages recorded (duplicates excluded).
    pub accepted: usize,
    /// Requests answered ok for a `msgUuid` already accepted for that robot.
    pub duplicates: usize,
    /// Every `errcode` answered, 0 included (accepted + duplicates).
    pub by_errcode: BTreeMap<i64, usize>,
    /// The most requests one robot had counted in its rate window at any time: the accepted ones
    /// plus the one that was refused and started a ban (requests during a ban are not counted).
    /// `> rate` means the client overshot DingTalk's limit.
    pub max_in_window: usize,
    /// The same, per robot token.
    pub max_in_window_by_robot: BTreeMap<String, usize>,
    /// Requests answered with the throttle code (the one that started a ban and those during it).
    pub throttled: usize,
    /// Warnings on accepted messages, by name.
    pub warnings: BTreeMap<String, usize>,
    /// Requests that got an injected fault.
    pub faults: usize,
}

struct Robot {
    secret: Option<String>,
    keywords: Vec<String>,
}

struct Config {
    robots: HashMap<String, Robot>,
    rate: usize,
    window: Duration,
    ban: Duration,
    throttle_code: i64,
    unknown_token_code: i64,
    era: ErrmsgEra,
    latency: Duration,
    dedupe_msg_uuid: bool,
    app: app::AppConfig,
}

#[derive(Default)]
struct Counters {
    messages: Vec<Recorded>,
    requests: usize,
    duplicates: usize,
    by_errcode: BTreeMap<i64, usize>,
    warnings: BTreeMap<String, usize>,
    throttled: usize,
    faults: usize,
    /// Per robot: when each counted request arrived, oldest first.
    sends: HashMap<String, VecDeque<Instant>>,
    max_in_window: BTreeMap<String, usize>,
    banned_until: HashMap<String, Instant>,
    /// (robot, msgUuid) already accepted.
    uuids: HashSet<(String, String)>,
    fault: Option<Fault>,
    fault_left: Option<usize>,
    /// Which families the fault hits; `None`: the custom robot only.
    fault_families: Option<Vec<Family>>,
    app: app::AppState,
}

impl Counters {
    /// The armed fault, counted as taken (and disarmed when its count runs out); `None` when
    /// none is armed. The caller has decided that the request is one the fault hits.
    fn consume_fault(&mut self) -> Option<Fault> {
        let fault = self.fault?;
        if let Some(left) = self.fault_left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.fault = None;
                self.fault_left = None;
            }
        }
        self.faults += 1;
        Some(fault)
    }
}

type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

struct Shared {
    config: Config,
    clock: WallClock,
    state: Counters,
}

/// The stand-in. Cheap to clone; clones share robots, options, records and faults.
#[derive(Clone)]
pub struct MockDingTalk {
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for MockDingTalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.lock();
        f.debug_struct("MockDingTalk")
            .field("robots", &shared.config.robots.len())
            .field("rate", &shared.config.rate)
            .field("window", &shared.config.window)
            .field("ban", &shared.config.ban)
            .field("accepted", &shared.state.messages.len())
            .finish_non_exhaustive()
    }
}

impl Default for MockDingTalk {
    fn default() -> Self {
        MockDingTalk::new()
    }
}

/// Wall-clock milliseconds from the system clock (the default clock).
pub fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `{base}/robot/send?access_token={token}`. `base` is an address (`127.0.0.1:8080`, a
/// `SocketAddr`), taken as `http://`, or a base URL (`https://oapi.dingtalk.com`).
pub fn webhook_url(base: impl fmt::Display, token: &str) -> String {
    let base = base.to_string();
    let base = base.trim_end_matches('/');
    let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    if base.contains("://") {
        format!("{base}/robot/send?access_token={token}")
    } else {
        format!("http://{base}/robot/send?access_token={token}")
    }
}

fn json_answer(status: u16, value: &Value) -> Answer {
    Answer {
        status,
        content_type: Some("application/json".to_owned()),
        body: value.to_string().into_bytes(),
    }
}

fn errcode_answer(code: i64, errmsg: &str) -> Answer {
    json_answer(200, &json!({ "errcode": code, "errmsg": errmsg }))
}

/// A refusal or an acceptance, as DingTalk words it.
struct Verdict {
    errcode: i64,
    errmsg: String,
}

impl Verdict {
    fn new(errcode: i64, errmsg: impl Into<String>) -> Verdict {
        Verdict {
            errcode,
            errmsg: errmsg.into(),
        }
    }
}

impl MockDingTalk {
    /// No robots yet; 20 messages per 60 s window, 600 s ban, throttle code 130101, unknown
    /// tokens 300001, 310000 wording of the `zh` era, repeated `msgUuid`s dropped, the system
    /// wall clock.
    pub fn new() -> MockDingTalk {
        MockDingTalk {
            shared: Arc::new(Mutex::new(Shared {
                config: Config {
                    robots: HashMap::new(),
                    rate: 20,
                    window: Duration::from_secs(60),
                    ban: Duration::from_secs(600),
                    throttle_code: 130101,
                    unknown_token_code: 300001,
                    era: ErrmsgEra::Zh,
                    latency: Duration::ZERO,
                    dedupe_msg_uuid: true,
                    app: app::AppConfig::default(),
                },
                clock: Arc::new(system_ms),
                state: Counters::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panicking test thread must not hide the records from the others.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn configure(self, f: impl FnOnce(&mut Shared)) -> MockDingTalk {
        f(&mut self.lock());
        self
    }

    /// Adds (or replaces) a robot: its access token, its 加签 secret and its keywords (empty:
    /// no keyword check).
    pub fn robot(self, token: &str, secret: Option<&str>, keywords: &[&str]) -> MockDingTalk {
        let robot = Robot {
            secret: secret.filter(|s| !s.is_empty()).map(str::to_owned),
            keywords: keywords
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| (*k).to_owned())
                .collect(),
        };
        self.configure(|s| {
            s.config.robots.insert(token.to_owned(), robot);
        })
    }

    /// Messages per robot per window (default 20).
    pub fn rate(self, rate: usize) -> MockDingTalk {
        self.configure(|s| s.config.rate = rate)
    }

    /// Length of the sliding window (default 60 s).
    pub fn window(self, window: Duration) -> MockDingTalk {
        self.configure(|s| s.config.window = window)
    }

    /// How long a robot stays blocked once it went over the rate (default 600 s).
    pub fn ban(self, ban: Duration) -> MockDingTalk {
        self.configure(|s| s.config.ban = ban)
    }

    /// 130101 (default) or 410100.
    ///
    /// # Panics
    ///
    /// On any other code.
    pub fn throttle_code(self, code: i64) -> MockDingTalk {
        assert!(
            THROTTLE_CODES.contains(&code),
            "throttle code {code}: DingTalk answers 130101 or 410100"
        );
        self.configure(|s| s.config.throttle_code = code)
    }

    /// The errcode for an unknown access token: 300001 (default), 300005 or 400101.
    pub fn unknown_token_code(self, code: i64) -> MockDingTalk {
        self.configure(|s| s.config.unknown_token_code = code)
    }

    /// The wording of 310000 answers (default [`ErrmsgEra::Zh`]).
    pub fn errmsg_era(self, era: ErrmsgEra) -> MockDingTalk {
        self.configure(|s| s.config.era = era)
    }

    /// Whether a repeated `msgUuid` (per robot) answers ok without being recorded again (default
    /// true, as DingTalk documents the key). The Python tool records every accepted message, so
    /// the `mock-dingtalk` binary turns this off unless asked: a client's resend then shows in
    /// the records.
    pub fn dedupe_msg_uuid(self, dedupe: bool) -> MockDingTalk {
        self.configure(|s| s.config.dedupe_msg_uuid = dedupe)
    }

    /// Delays every answer by this much (tokio time; default none).
    pub fn latency(self, latency: Duration) -> MockDingTalk {
        self.configure(|s| s.config.latency = latency)
    }

    /// The wall clock (ms since the Unix epoch) the 加签 timestamp is checked against. Under
    /// paused tokio time, give the same clock as dingrelay's, e.g.
    /// `let clock = Clock::starting_at(T); mock.clock(move || clock.now_ms())`.
    pub fn clock(self, now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> MockDingTalk {
        self.configure(|s| s.clock = Arc::new(now_ms))
    }

    /// Adds (or replaces) an enterprise internal app: its appKey (also its robot's robotCode)
    /// and appSecret. Its agent id is [`FIRST_AGENT_ID`] + its rank among the apps (1, 2, ...)
    /// unless [`MockDingTalk::agent_id`] sets one.
    pub fn app(self, app_key: &str, app_secret: &str) -> MockDingTalk {
        self.configure(|s| {
            let apps = &mut s.config.app.apps;
            let agent_id = apps
                .get(app_key)
                .map_or_else(|| FIRST_AGENT_ID + apps.len() as i64 + 1, |a| a.agent_id);
            apps.insert(
                app_key.to_owned(),
                app::App {
                    secret: app_secret.to_owned(),
                    agent_id,
                },
            );
        })
    }

    /// The AgentId of an app (for work notifications).
    ///
    /// # Panics
    ///
    /// When the app was not added first, or another app has that agent id.
    pub fn agent_id(self, app_key: &str, agent_id: i64) -> MockDingTalk {
        self.configure(|s| {
            let apps = &mut s.config.app.apps;
            assert!(
                !apps
                    .iter()
                    .any(|(k, a)| k != app_key && a.agent_id == agent_id),
                "agent id {agent_id} is another app's"
            );
            apps.get_mut(app_key)
                .unwrap_or_else(|| panic!("agent_id: add app {app_key} first"))
                .agent_id = agent_id;
        })
    }

    /// A member of the organisation (every user is in department [`ROOT_DEPT`]).
    pub fn user(self, user_id: &str, name: &str) -> MockDingTalk {
        self.configure(|s| {
            s.config
                .app
                .users
                .insert(user_id.to_owned(), name.to_owned());
        })
    }

    /// A member whom one-to-one robot messages never reach: always in
    /// `flowControlledStaffIdList` (besides the window of [`MockDingTalk::app_robot_rate`]).
    pub fn flow_controlled_user(self, user_id: &str, name: &str) -> MockDingTalk {
        self.user(user_id, name).configure(|s| {
            s.config.app.flow_controlled.insert(user_id.to_owned());
        })
    }

    /// A group (its `openConversationId`) and the app robots (robotCodes, i.e. appKeys)
    /// installed in it; an empty list: every app's robot.
    pub fn conversation(self, open_conversation_id: &str, robot_codes: &[&str]) -> MockDingTalk {
        let robots = (!robot_codes.is_empty())
            .then(|| robot_codes.iter().map(|c| (*c).to_owned()).collect());
        self.configure(|s| {
            s.config
                .app
                .conversations
                .insert(open_conversation_id.to_owned(), robots);
        })
    }

    /// Access-token lifetime (default [`TOKEN_TTL`], 7200 s).
    pub fn token_ttl(self, ttl: Duration) -> MockDingTalk {
        self.configure(|s| s.config.app.token_ttl = ttl)
    }

    /// The errcode of an expired token on oapi paths: 40014 (default, observed) or 42001.
    ///
    /// # Panics
    ///
    /// On any other code.
    pub fn oapi_expired_errcode(self, code: i64) -> MockDingTalk {
        assert!(code == 40014 || code == 42001, "40014 or 42001, not {code}");
        self.configure(|s| s.config.app.oapi_expired_errcode = code)
    }

    /// Calls per app per API in any second (default 20; 0 is off).
    pub fn app_qps(self, qps: usize) -> MockDingTalk {
        self.configure(|s| s.config.app.app_qps = qps)
    }

    /// App-robot sends per robot per group, and per robot per user, in `window` (default 20
    /// per 60 s, modelled: DingTalk publishes no number). Over it a group send gets 400
    /// `send.too.fast`, a user goes to `flowControlledStaffIdList`.
    pub fn app_robot_rate(self, rate: usize, window: Duration) -> MockDingTalk {
        self.configure(|s| {
            s.config.app.robot_rate = rate;
            s.config.app.robot_window = window;
        })
    }

    /// userIds per `oToMessages/batchSend` (default 20, the documented maximum).
    pub fn oto_max_users(self, max: usize) -> MockDingTalk {
        self.configure(|s| s.config.app.oto_max_users = max)
    }

    /// Work notifications per app per user per day (default 500).
    pub fn work_daily_limit(self, limit: usize) -> MockDingTalk {
        self.configure(|s| s.config.app.work_daily_limit = limit)
    }

    /// The next `count` requests to `/robot/send` (all of them until [`Fault::None`] when
    /// `None`) get `fault` instead of a normal answer. `Some(0)` injects nothing.
    pub fn set_fault(&self, fault: Fault, count: Option<usize>) {
        self.set_fault_for(&[Family::Robot], fault, count);
    }

    /// Like [`MockDingTalk::set_fault`] for requests of the given families (the count is
    /// shared). On api paths [`Fault::Busy`], [`Fault::ErrCode`] and the end of a
    /// [`Fault::Hang`] are HTTP 500 `system.error`; on oapi paths errcode -1 (or the code).
    pub fn set_fault_for(&self, families: &[Family], fault: Fault, count: Option<usize>) {
        let mut shared = self.lock();
        if fault == Fault::None || count == Some(0) {
            shared.state.fault = None;
            shared.state.fault_left = None;
        } else {
            shared.state.fault = Some(fault);
            shared.state.fault_left = count;
        }
        shared.state.fault_families = Some(families.to_vec());
    }

    /// Every accepted app message (app robots, work notifications), oldest first.
    pub fn app_messages(&self) -> Vec<AppMessage> {
        self.lock().state.app.messages.clone()
    }

    /// The app side's counters.
    pub fn app_stats(&self) -> AppStats {
        let shared = self.lock();
        let st = &shared.state.app;
        AppStats {
            channels: st.channels.clone(),
            token_fetches: st.token_fetches.clone(),
            tokens_issued: st.tokens_issued.clone(),
        }
    }

    /// Successful token fetches of an app (both endpoints).
    pub fn token_fetches(&self, app_key: &str) -> usize {
        let shared = self.lock();
        shared
            .state
            .app
            .token_fetches
            .get(app_key)
            .copied()
            .unwrap_or(0)
    }

    /// The app's current token while it is valid.
    pub fn current_token(&self, app_key: &str) -> Option<String> {
        let shared = self.lock();
        let st = &shared.state.app;
        let token = st.current.get(app_key)?;
        st.tokens
            .get(token)
            .is_some_and(|t| t.expires > Instant::now())
            .then(|| token.clone())
    }

    /// Expires the current token of `app_key` (every app's when `None`) now: the next call
    /// with it gets the expired-token answer, the next fetch a new token. Returns the apps whose
    /// token was expired.
    pub fn expire_tokens(&self, app_key: Option<&str>) -> Vec<String> {
        token::expire(&mut self.lock().state.app, app_key, Instant::now())
    }

    /// A one-time 免登 auth code for `user_id` with app `app_key`, valid for
    /// [`login::AUTH_CODE_TTL`]: what `requestAuthCode` gives a page inside DingTalk.
    pub fn issue_auth_code(&self, user_id: &str, app_key: &str) -> String {
        let mut shared = self.lock();
        let st = &mut shared.state.app;
        let code = format!("authcode{}", st.fresh_hex("authcode", 24));
        st.auth_codes.insert(
            code.clone(),
            (
                user_id.to_owned(),
                app_key.to_owned(),
                Instant::now() + login::AUTH_CODE_TTL,
            ),
        );
        code
    }

    /// The app's current jsapi_ticket while it is valid (what a dd.config signature is made with).
    pub fn current_ticket(&self, app_key: &str) -> Option<String> {
        let shared = self.lock();
        shared
            .state
            .app
            .tickets
            .get(app_key)
            .filter(|(_, expires)| Instant::now() < *expires)
            .map(|(ticket, _)| ticket.clone())
    }

    /// `POST /_authcode?userid=U&appkey=K`: [`MockDingTalk::issue_auth_code`], as `{"code"}`.
    fn authcode_control(&self, query: &str) -> Answer {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        match (query_value(&pairs, "userid"), query_value(&pairs, "appkey")) {
            (Some(user), Some(app)) => {
                json_answer(200, &json!({ "code": self.issue_auth_code(&user, &app) }))
            }
            _ => json_answer(400, &json!({ "error": "give userid and appkey" })),
        }
    }

    /// Every accepted message, oldest first.
    pub fn messages(&self) -> Vec<Recorded> {
        self.lock().state.messages.clone()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let shared = self.lock();
        let st = &shared.state;
        Stats {
            requests: st.requests,
            accepted: st.messages.len(),
            duplicates: st.duplicates,
            by_errcode: st.by_errcode.clone(),
            max_in_window: st.max_in_window.values().copied().max().unwrap_or(0),
            max_in_window_by_robot: st.max_in_window.clone(),
            throttled: st.throttled,
            warnings: st.warnings.clone(),
            faults: st.faults,
        }
    }

    /// How long `token` stays blocked, if it is.
    pub fn banned_for(&self, token: &str) -> Option<Duration> {
        let shared = self.lock();
        let until = *shared.state.banned_until.get(token)?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    /// Forgets messages, counters, rate windows, bans, seen `msgUuid`s and faults; keeps robots
    /// and options.
    pub fn reset(&self) {
        self.lock().state = Counters::default();
    }

    /// Handles one HTTP request, as the server face does: `target` is the path and the raw
    /// (still percent-encoded) query. `Err` is a connection dropped without an answer
    /// ([`Fault::Reset`]).
    pub async fn handle(
        &self,
        method: &str,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, Dropped> {
        self.request(method, target, &[], content_type, body)
            .await
            .map(|reply| reply.answer)
    }

    /// [`MockDingTalk::handle`] with request headers (e.g. `x-acs-dingtalk-access-token`,
    /// which the api family reads) and the answer's own headers.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, Dropped> {
        let reply = self
            .route(method, target, headers, content_type, body)
            .await;
        let latency = self.lock().config.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        reply
    }

    /// POSTs a JSON body to an app API in-process: `url`'s path and query as the server reads
    /// them, `token` (when given) in header `x-acs-dingtalk-access-token`.
    pub async fn post_app(
        &self,
        url: &Url,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Reply, Dropped> {
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let headers: Vec<(String, String)> = token
            .map(|t| vec![("x-acs-dingtalk-access-token".to_owned(), t.to_owned())])
            .unwrap_or_default();
        self.request(
            "POST",
            &target,
            &headers,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await
    }

    /// POSTs `body` to `url` in-process, as a client would: the URL's path and raw query are read
    /// exactly as the server reads them (the query decoded once; scheme and host are ignored),
    /// the body is taken as `application/json`.
    pub async fn post(&self, url: &Url, body: &[u8]) -> Result<Answer, Dropped> {
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        self.handle("POST", &target, Some("application/json"), body)
            .await
    }

    async fn route(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, Dropped> {
        let target = target.split('#').next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let answer = match (method, path) {
            ("POST", "/robot/send") => self.robot_send(query, content_type, body).await,
            (_, "/robot/send") => Ok(self.refuse(Verdict::new(43002, "需要POST请求"))),
            ("GET", "/_messages") => Ok(json_answer(200, &self.messages_json(query))),
            ("GET", "/_stats") => Ok(json_answer(200, &self.stats_json())),
            ("POST", "/_reset") => {
                self.reset();
                Ok(json_answer(200, &json!({ "ok": true })))
            }
            ("POST", "/_fault") => Ok(self.fault_control(body)),
            ("POST", "/_expire") => Ok(self.expire_control(query, body)),
            ("POST", "/_authcode") => Ok(self.authcode_control(query)),
            _ => {
                return self
                    .app_route(method, path, query, headers, content_type, body)
                    .await;
            }
        };
        answer.map(Reply::from)
    }

    /// The app endpoints of both hosts (`dingtalk-app-api.md` §9's paths).
    async fn app_route(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, Dropped> {
        type Endpoint = fn(&app::AppConfig, &mut app::AppState, &app::Call) -> Reply;
        let (family, channel, endpoint): (Family, &str, Endpoint) = match path {
            "/gettoken" => (Family::Oapi, "token", token::gettoken),
            "/topapi/message/corpconversation/asyncsend_v2" => {
                (Family::Oapi, "work_notice", work::asyncsend_v2)
            }
            "/topapi/message/corpconversation/getsendresult" => {
                (Family::Oapi, "work_result", work::getsendresult)
            }
            "/topapi/message/corpconversation/getsendprogress" => {
                (Family::Oapi, "work_result", work::getsendprogress)
            }
            "/v1.0/oauth2/accessToken" => (Family::Api, "token", token::access_token),
            "/topapi/v2/user/getuserinfo" => (Family::Oapi, "login", login::getuserinfo_v2),
            "/v1.0/oauth2/jsapiTickets" => (Family::Api, "ticket", login::jsapi_tickets),
            "/v1.0/robot/groupMessages/send" => {
                (Family::Api, "app_robot_group", app_robot::group_send)
            }
            "/v1.0/robot/oToMessages/batchSend" => {
                (Family::Api, "app_robot_oto", app_robot::oto_send)
            }
            _ => return Ok(self.app_unknown(path)),
        };
        {
            let mut shared = self.lock();
            let st = &mut shared.state.app;
            st.channel(channel).requests += 1;
            let wrong_method = match (path, method) {
                ("/gettoken", "GET") => None,
                ("/gettoken", _) => Some(app::oapi_error(
                    st,
                    channel,
                    43001,
                    "需要GET请求",
                    false,
                    Some("this path is GET-only"),
                )),
                (p, "POST") if p.starts_with('/') => None,
                (p, _) if p.starts_with("/topapi/") => Some(app::oapi_error(
                    st,
                    channel,
                    43002,
                    "需要POST请求",
                    true,
                    Some("this path is POST-only"),
                )),
                _ => {
                    st.count("unknown", "404", &[], false);
                    Some(Reply::from(json_answer(
                        200,
                        &json!({ "errcode": 404, "errmsg": "请求的URI地址不存在" }),
                    )))
                }
            };
            if let Some(reply) = wrong_method {
                return Ok(reply);
            }
        }
        if let Some(fault) = self.take_app_fault(family) {
            return self.app_fault(family, fault).await;
        }
        let now_ms = (self.lock().clock.clone())();
        let mut shared = self.lock();
        let Shared { config, state, .. } = &mut *shared;
        let call = app::Call {
            path,
            query: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            content_type: content_type
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
            body,
            now: Instant::now(),
            now_ms,
        };
        Ok(endpoint(&config.app, &mut state.app, &call))
    }

    /// A path of neither host's APIs served here: topapi's errcode 22, the api host's HTTP 200
    /// errcode 404, a plain 404 for anything else.
    fn app_unknown(&self, path: &str) -> Reply {
        let mut shared = self.lock();
        let st = &mut shared.state.app;
        if let Some(api) = path.strip_prefix("/topapi/") {
            st.channel("unknown").requests += 1;
            let api = format!("dingtalk.oapi.{}", api.trim_matches('/').replace('/', "."));
            let sub = format!("不合法ApiName，ApiName = {api}");
            let obj = json!({
                "errcode": 22,
                "sub_msg": sub,
                "errmsg": format!("Invalid method[submsg={sub}]"),
                "request_id": st.request_id(),
            });
            return app::oapi_reply(st, "unknown", obj, true, None, &[], false);
        }
        if path.starts_with("/v1.0/") {
            st.channel("unknown").requests += 1;
            st.count("unknown", "404", &[], false);
            return json_answer(
                200,
                &json!({ "errcode": 404, "errmsg": "请求的URI地址不存在" }),
            )
            .into();
        }
        json_answer(404, &json!({ "error": "not found" })).into()
    }

    /// Takes the pending fault if it hits `family`.
    fn take_app_fault(&self, family: Family) -> Option<Fault> {
        let mut shared = self.lock();
        let st = &mut shared.state;
        let hits = st
            .fault_families
            .as_ref()
            .is_some_and(|f| f.contains(&family) || f.contains(&Family::All));
        if !hits {
            return None;
        }
        st.consume_fault()
    }

    async fn app_fault(&self, family: Family, fault: Fault) -> Result<Reply, Dropped> {
        let busy = |code: i64| -> Reply {
            if family == Family::Api {
                let mut shared = self.lock();
                app::api_error(
                    &mut shared.state.app,
                    "unknown",
                    500,
                    "system.error",
                    "未知的系统错误",
                    Some("fault injected by mock-dingtalk"),
                )
            } else {
                json_answer(200, &json!({ "errcode": code, "errmsg": errmsg_for(code) })).into()
            }
        };
        Ok(match fault {
            Fault::None => unreachable!("no fault is stored as None"),
            Fault::Http500 => Answer {
                status: 500,
                content_type: Some("text/plain".to_owned()),
                body: b"Internal Server Error".to_vec(),
            }
            .into(),
            Fault::Html => Answer {
                status: 200,
                content_type: Some("text/html".to_owned()),
                body: b"<html><body>busy</body></html>".to_vec(),
            }
            .into(),
            Fault::Hang => {
                tokio::time::sleep(HANG).await;
                busy(-1)
            }
            Fault::Reset => return Err(Dropped),
            Fault::Busy => busy(-1),
            Fault::ErrCode(code) => busy(code),
            Fault::NoErrcodeJson => json_answer(
                200,
                &json!({ "status": 1111, "wait": 5, "source": "x5", "punish": "deny" }),
            )
            .into(),
        })
    }

    /// `POST /_expire[?appkey=K]`: expires the current token of K (every app's) now.
    fn expire_control(&self, query: &str, body: &[u8]) -> Answer {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let spec: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
        let app = query_value(&pairs, "appkey").or_else(|| {
            spec.get("appkey")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if let Some(key) = &app
            && !self.lock().config.app.apps.contains_key(key)
        {
            return json_answer(404, &json!({ "error": format!("unknown appkey {key:?}") }));
        }
        let done = self.expire_tokens(app.as_deref());
        json_answer(200, &json!({ "expired": done, "what": "token" }))
    }

    /// `POST /_fault {"mode": "none|http500|html|hang|reset|busy|ipthrottle|errcode",
    /// "count": N?, "errcode": N?, "channels": ["robot"|"oapi"|"api"|"all"]?}`, like the
    /// Python tool's (channels default to `["robot"]`).
    fn fault_control(&self, body: &[u8]) -> Answer {
        let spec: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
        let count = spec
            .get("count")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let fault = match spec.get("mode").and_then(Value::as_str).unwrap_or("none") {
            "none" => Fault::None,
            "http500" => Fault::Http500,
            "html" => Fault::Html,
            "hang" => Fault::Hang,
            "reset" => Fault::Reset,
            "busy" => Fault::Busy,
            "ipthrottle" => Fault::NoErrcodeJson,
            "errcode" => Fault::ErrCode(spec.get("errcode").and_then(Value::as_i64).unwrap_or(-1)),
            other => {
                return json_answer(400, &json!({ "error": format!("unknown mode {other}") }));
            }
        };
        let names: Vec<&str> = match spec.get("channels") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec!["robot"],
        };
        let mut families = Vec::new();
        for name in names {
            match Family::parse(name) {
                Some(family) => families.push(family),
                None => {
                    return json_answer(
                        400,
                        &json!({ "error": format!("unknown channel {name}: robot, oapi, api or all") }),
                    );
                }
            }
        }
        self.set_fault_for(&families, fault, count);
        json_answer(200, &json!({ "ok": true }))
    }

    /// `GET /_messages[?channel=C]`: custom-robot records (`robot`), then app records
    /// (`app_robot_group`, `app_robot_oto`, `work_notice`), each with its `channel`.
    fn messages_json(&self, query: &str) -> Value {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let want = query_value(&pairs, "channel");
        let robot = want.as_deref().is_none_or(|c| c == "robot");
        let mut messages: Vec<Value> = self
            .messages()
            .into_iter()
            .filter(|_| robot)
            .map(|m| {
                json!({
                    "channel": "robot",
                    "robot": m.robot,
                    "at_ms": m.at_ms,
                    "body": m.body,
                    "warnings": m.warnings,
                })
            })
            .collect();
        messages.extend(
            self.app_messages()
                .into_iter()
                .filter(|m| want.as_deref().is_none_or(|c| c == m.channel.name()))
                .map(|m| m.record),
        );
        json!({ "messages": messages })
    }

    fn stats_json(&self) -> Value {
        let stats = self.stats();
        let app = self.app_stats();
        let by_errcode: Map<String, Value> = stats
            .by_errcode
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        json!({
            "requests": stats.requests,
            "accepted": stats.accepted,
            "duplicates": stats.duplicates,
            "by_errcode": by_errcode,
            "max_in_window": stats.max_in_window_by_robot,
            "throttled": stats.throttled,
            "warnings": stats.warnings,
            "faults": stats.faults,
            "channels": app.channels.iter().map(|(name, ch)| (name.clone(), json!({
                "requests": ch.requests,
                "accepted": ch.accepted,
                "by_code": ch.by_code,
                "warnings": ch.warnings,
            }))).collect::<Map<String, Value>>(),
            "token_fetches": app.token_fetches,
            "tokens_issued": app.tokens_issued,
        })
    }

    /// Answers a business error (HTTP 200, errcode in the body) and counts it.
    fn refuse(&self, verdict: Verdict) -> Answer {
        *self
            .lock()
            .state
            .by_errcode
            .entry(verdict.errcode)
            .or_default() += 1;
        errcode_answer(verdict.errcode, &verdict.errmsg)
    }

    /// Counts the request and takes the fault it gets, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut shared = self.lock();
        let st = &mut shared.state;
        st.requests += 1;
        if st
            .fault_families
            .as_ref()
            .is_some_and(|f| !f.contains(&Family::Robot) && !f.contains(&Family::All))
        {
            return None;
        }
        st.consume_fault()
    }

    async fn robot_send(
        &self,
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, Dropped> {
        match self.take_fault() {
            None | Some(Fault::None) => {}
            Some(Fault::Http500) => {
                return Ok(Answer {
                    status: 500,
                    content_type: Some("text/plain".to_owned()),
                    body: b"Internal Server Error".to_vec(),
                });
            }
            Some(Fault::Html) => {
                return Ok(Answer {
                    status: 200,
                    content_type: Some("text/html".to_owned()),
                    body: b"<html><body>busy</body></html>".to_vec(),
                });
            }
            Some(Fault::Hang) => {
                tokio::time::sleep(HANG).await;
                return Ok(self.refuse(Verdict::new(-1, "系统繁忙")));
            }
            Some(Fault::Reset) => {
                return Err(Dropped);
            }
            Some(Fault::Busy) => return Ok(self.refuse(Verdict::new(-1, "系统繁忙"))),
            Some(Fault::ErrCode(code)) => {
                return Ok(self.refuse(Verdict::new(code, errmsg_for(code))));
            }
            Some(Fault::NoErrcodeJson) => {
                return Ok(json_answer(
                    200,
                    &json!({
                        "status": 1111,
                        "wait": 5,
                        "source": "x5",
                        "punish": "deny",
                    }),
                ));
            }
        }

        let clock = self.lock().clock.clone();
        let now_ms = clock();
        let now = Instant::now();
        let verdict = self.judge(query, content_type, body, now, now_ms);
        Ok(errcode_answer(verdict.errcode, &verdict.errmsg))
    }

    /// Every check of a `/robot/send` request, in order; counts and records as it goes.
    fn judge(
        &self,
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
        now: Instant,
        now_ms: i64,
    ) -> Verdict {
        let mut shared = self.lock();
        let verdict = judge(&mut shared, query, content_type, body, now, now_ms);
        *shared.state.by_errcode.entry(verdict.errcode).or_default() += 1;
        verdict
    }

    /// Serves the same handler over HTTP on `127.0.0.1:0`: `POST /robot/send`, `GET /_stats`,
    /// `GET /_messages`, `POST /_fault`, `POST /_reset`. Abort the handle to stop accepting.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn serve(self) -> (SocketAddr, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock-dingtalk binds a loopback port");
        let addr = listener
            .local_addr()
            .expect("mock-dingtalk knows its address");
        let app = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, handle)
    }

    /// The server face as an axum router, for a listener of the caller's (what
    /// [`MockDingTalk::serve`] runs on `127.0.0.1:0`).
    pub fn router(self) -> Router {
        Router::new()
            .fallback(serve_one)
            .layer(DefaultBodyLimit::disable())
            .with_state(self)
    }
}

async fn serve_one(
    State(mock): State<MockDingTalk>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let request_headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    match mock
        .request(
            method.as_str(),
            target,
            &request_headers,
            content_type,
            &body,
        )
        .await
    {
        Ok(Reply { answer, headers }) => {
            let mut response = Response::new(Body::from(answer.body));
            *response.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(ct) = answer
                .content_type
                .and_then(|ct| HeaderValue::from_str(&ct).ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        // Fault::Reset: end the connection's task without an answer. `resume_unwind` skips the
        // panic hook, so nothing is printed; tokio contains the unwind to this connection.
        Err(_) => std::panic::resume_unwind(Box::new("mock-dingtalk: reset fault")),
    }
}

/// The first non-empty value of `key` in a query decoded once (`+` is a space, like Python's
/// `parse_qs`, which also drops blank values).
fn query_value(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

fn sign_matches(secret: &str, timestamp: &str, sign: &str) -> bool {
    let Ok(given) = STANDARD.decode(sign) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    // Constant-time. Comparing the decoded digests is comparing the base64 strings: the standard
    // engine only decodes canonical, padded base64, and that encoding is one-to-one.
    mac.verify_slice(&given).is_ok()
}

fn judge(
    shared: &mut Shared,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
    now: Instant,
    now_ms: i64,
) -> Verdict {
    let config = &shared.config;
    let st = &mut shared.state;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();

    let Some(token) = query_value(&pairs, "access_token") else {
        return Verdict::new(40035, "缺少参数 access_token");
    };
    let Some(robot) = config.robots.get(&token) else {
        return Verdict::new(config.unknown_token_code, "token is not exist");
    };
    let era = config.era;

    if let Some(secret) = &robot.secret {
        let (Some(timestamp), Some(sign)) = (
            query_value(&pairs, "timestamp"),
            query_value(&pairs, "sign"),
        ) else {
            return Verdict::new(310000, era.errmsg(Why::Sign));
        };
        let Ok(ts_ms) = timestamp.parse::<i64>() else {
            return Verdict::new(310000, era.errmsg(Why::Timestamp));
        };
        if (i128::from(now_ms) - i128::from(ts_ms)).abs() > i128::from(SKEW_MS) {
            return Verdict::new(310000, era.errmsg(Why::Timestamp));
        }
        if !sign_matches(secret, &timestamp, &sign) {
            return Verdict::new(310000, era.errmsg(Why::Sign));
        }
    }

    let media_type = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type != "application/json" {
        return Verdict::new(43004, "无效的HTTP HEADER Content-Type");
    }

    // The rate window counts every request that got this far, whatever happens to it next.
    let throttled = if st
        .banned_until
        .get(&token)
        .is_some_and(|until| *until > now)
    {
        true
    } else {
        let sends = st.sends.entry(token.clone()).or_default();
        while sends
            .front()
            .is_some_and(|first| *first + config.window <= now)
        {
            sends.pop_front();
        }
        sends.push_back(now);
        let count = sends.len();
        let max = st.max_in_window.entry(token.clone()).or_default();
        *max = (*max).max(count);
        if count > config.rate {
            st.banned_until.insert(token.clone(), now + config.ban);
            true
        } else {
            false
        }
    };
    if throttled {
        st.throttled += 1;
        return if config.throttle_code == 410100 {
            Verdict::new(410100, "发送速度太快而限流")
        } else {
            Verdict::new(130101, "send too fast, exceed 20 times per minute")
        };
    }

    if body.len() > MAX_BODY {
        return Verdict::new(460101, "message too long, exceed 20000 bytes");
    }
    let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(body) else {
        return Verdict::new(40035, "缺少参数 json");
    };
    let warnings = match check_message(&msg) {
        Ok(warnings) => warnings,
        Err(verdict) => return verdict,
    };
    if !robot.keywords.is_empty() {
        let mut leaves = Vec::new();
        if let Some(mtype) = msg.get("msgtype").and_then(Value::as_str) {
            string_leaves(msg.get(mtype), &mut leaves);
        }
        let found = robot
            .keywords
            .iter()
            .any(|k| leaves.iter().any(|s| s.contains(k.as_str())));
        if !found {
            return Verdict::new(310000, era.errmsg(Why::Keyword));
        }
    }

    if config.dedupe_msg_uuid
        && let Some(uuid) = msg.get("msgUuid").and_then(Value::as_str)
        && !uuid.is_empty()
        && !st.uuids.insert((token.clone(), uuid.to_owned()))
    {
        st.duplicates += 1;
        return Verdict::new(0, "ok");
    }
    for warning in &warnings {
        *st.warnings.entry(warning.clone()).or_default() += 1;
    }
    st.messages.push(Recorded {
        robot: token,
        at: now,
        at_ms: now_ms,
        body: Value::Object(msg),
        warnings,
    });
    Verdict::new(0, "ok")
}

fn nonempty_str(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if !s.trim().is_empty())
}

/// Python's truthiness, which the Python tool applies to `btns` and `at` lists.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn string_leaves<'a>(v: Option<&'a Value>, out: &mut Vec<&'a str>) {
    match v {
        Some(Value::String(s)) => out.push(s),
        Some(Value::Object(o)) => o.values().for_each(|x| string_leaves(Some(x), out)),
        Some(Value::Array(a)) => a.iter().for_each(|x| string_leaves(Some(x), out)),
        _ => {}
    }
}

/// The people an `at` list names, as strings.
fn mentions(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// DingTalk's judgement of a parsed body: the warnings when it accepts it, the refusal when not.
fn check_message(msg: &Map<String, Value>) -> Result<Vec<String>, Verdict> {
    let mut warnings: Vec<String> = Vec::new();
    let mtype = match msg.get("msgtype") {
        Some(Value::String(t)) if MSGTYPES.contains(&t.as_str()) => t.as_str(),
        _ => return Err(Verdict::new(400105, "不支持的消息类型")),
    };
    let Some(Value::Object(body)) = msg.get(mtype) else {
        return Err(Verdict::new(
            400402,
            format!("错误描述:参数 {mtype} 缺失，或者参数格式不正确;解决方案:请填充上对应参数;"),
        ));
    };
    let missing = |field: &str| {
        Verdict::new(
            400402,
            format!(
                "错误描述:参数 {mtype} --》 {field} 缺失，或者参数格式不正确;解决方案:请填充上对应参数;"
            ),
        )
    };
    let require = |fields: &[&str]| -> Result<(), Verdict> {
        match fields.iter().find(|f| !nonempty_str(body.get(**f))) {
            Some(field) => Err(missing(field)),
            None => Ok(()),
        }
    };
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();

    let mut urls: Vec<String> = Vec::new();
    match mtype {
        "text" => require(&["content"])?,
        "link" => {
            require(&["title", "text", "messageUrl"])?;
            urls.push(str_of(body.get("messageUrl")));
            if let Some(pic) = body.get("picUrl")
                && !(pic.is_null() || pic.as_str() == Some(""))
                && !nonempty_str(Some(pic))
            {
                return Err(missing("picUrl"));
            }
        }
        "markdown" => require(&["title", "text"])?,
        "actionCard" => {
            require(&["title", "text"])?;
            let single =
                nonempty_str(body.get("singleTitle")) && nonempty_str(body.get("singleURL"));
            let btns = body.get("btns");
            if single {
                urls.push(str_of(body.get("singleURL")));
                if btns.is_some_and(truthy) {
                    warnings.push("btns_ignored_with_single".to_owned());
                }
            } else {
                let Some(Value::Array(btns)) = btns else {
                    return Err(missing("btns"));
                };
                if btns.is_empty() {
                    return Err(missing("btns"));
                }
                for btn in btns {
                    if !nonempty_str(btn.get("title")) || !nonempty_str(btn.get("actionURL")) {
                        return Err(missing("btns"));
                    }
                    urls.push(str_of(btn.get("actionURL")));
                }
            }
            for field in ["btnOrientation", "hideAvatar"] {
                if let Some(v) = body.get(field)
                    && !matches!(v.as_str(), Some("0" | "1"))
                {
                    warnings.push(format!("{field}_not_0_or_1_string"));
                }
            }
        }
        "feedCard" => {
            let Some(Value::Array(links)) = body.get("links") else {
                return Err(missing("links"));
            };
            if links.is_empty() {
                return Err(missing("links"));
            }
            for link in links {
                if !link.is_object() {
                    return Err(missing("links"));
                }
                for field in ["title", "messageURL", "picURL"] {
                    if !nonempty_str(link.get(field)) {
                        return Err(missing(&format!("links.{field}")));
                    }
                }
                urls.push(str_of(link.get("messageURL")));
            }
        }
        _ => unreachable!("msgtype checked above"),
    }
    for url in &urls {
        if !URL_SCHEMES.iter().any(|s| url.starts_with(s)) {
            warnings.push("url_scheme".to_owned());
        }
    }

    match msg.get("at") {
        None | Some(Value::Null) => {}
        Some(Value::Object(at)) => {
            let mut who = mentions(at.get("atMobiles"));
            who.extend(mentions(at.get("atUserIds")));
            if matches!(mtype, "link" | "feedCard")
                && (!who.is_empty() || at.get("isAtAll").is_some_and(truthy))
            {
                warnings.push("at_ignored_for_type".to_owned());
            }
            if matches!(mtype, "text" | "markdown") {
                let content = str_of(body.get(if mtype == "text" { "content" } else { "text" }));
                if who.iter().any(|w| !content.contains(&format!("@{w}"))) {
                    warnings.push("mention_not_in_content".to_owned());
                }
            }
            if who.len() > 50 {
                warnings.push("more_than_50_mentions".to_owned());
            }
        }
        Some(_) => warnings.push("at_not_object".to_owned()),
    }
    Ok(warnings)
}

//! Enterprise internal apps: the org (apps, users, groups), the options of the app APIs, their
//! state (tokens, windows, records, work tasks) and the answer shapes of the two API families
//! (`shared/reference/dingtalk-app-api.md` §1). The endpoints live in [`crate::token`],
//! [`crate::app_robot`] and [`crate::work`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{Answer, Reply};

/// The token lifetime DingTalk hands out, in seconds.
pub const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// The first default agent id (`--app` without one gets 3000000001, 3000000002, ...).
pub const FIRST_AGENT_ID: i64 = 3_000_000_000;
/// The root department: every user is in it.
pub const ROOT_DEPT: &str = "1";

/// Where a request went, for faults: the custom robot, the oapi host or the api host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `POST /robot/send`.
    Robot,
    /// `oapi.dingtalk.com` paths: `/gettoken`, `/topapi/...`.
    Oapi,
    /// `api.dingtalk.com` paths: `/v1.0/...`.
    Api,
    /// All of them.
    All,
}

impl Family {
    /// `robot`, `oapi`, `api` or `all`, as `/_fault` spells them.
    pub fn parse(name: &str) -> Option<Family> {
        match name {
            "robot" => Some(Family::Robot),
            "oapi" => Some(Family::Oapi),
            "api" => Some(Family::Api),
            "all" => Some(Family::All),
            _ => None,
        }
    }
}

/// What kind of app message a record is (the Python tool's `channel` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `POST /v1.0/robot/groupMessages/send`.
    AppRobotGroup,
    /// `POST /v1.0/robot/oToMessages/batchSend`.
    AppRobotOto,
    /// `POST /topapi/message/corpconversation/asyncsend_v2`.
    WorkNotice,
}

impl Channel {
    /// `app_robot_group`, `app_robot_oto` or `work_notice`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::AppRobotGroup => "app_robot_group",
            Channel::AppRobotOto => "app_robot_oto",
            Channel::WorkNotice => "work_notice",
        }
    }
}

/// One accepted app message.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMessage {
    /// Which API took it.
    pub channel: Channel,
    /// The app (its appKey) whose token sent it.
    pub app: String,
    /// When it was accepted, on tokio's clock.
    pub at: Instant,
    /// When it was accepted, on the injected wall clock (ms).
    pub at_ms: i64,
    /// Who got it: the delivered userIds (one-to-one, work notification); empty for a group.
    pub delivered: Vec<String>,
    /// The record as `GET /_messages` shows it (the Python tool's keys: `robotCode`,
    /// `openConversationId`, `msgKey`, `msgParam` parsed, `processQueryKey`, `userIds`,
    /// `invalidStaffIdList`, `flowControlledStaffIdList`; for work notifications `agent_id`,
    /// `task_id`, `msg`, `delivered`, `forbidden`, `invalid_user_id_list`, ...).
    pub record: Value,
    /// What DingTalk accepts but ignores or renders badly: `unknown_param:K`,
    /// `at_not_supported_by_api`, `url_scheme`, `form_body`, `agent_id_is_a_string`, ...
    pub warnings: Vec<String>,
}

/// Per-channel counters of the app side (channels: `token`, `app_robot_group`,
/// `app_robot_oto`, `work_notice`, `work_result`, `unknown`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Requests, faulted ones included.
    pub requests: usize,
    /// Requests that were accepted (a token issued, a message recorded, a result read).
    pub accepted: usize,
    /// Answers by code: errcode (oapi), `code` (api errors), 0 for api successes.
    pub by_code: BTreeMap<String, usize>,
    /// Warnings by name.
    pub warnings: BTreeMap<String, usize>,
}

/// The counters of the app side since the start or the last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppStats {
    /// Per channel.
    pub channels: BTreeMap<String, ChannelStats>,
    /// Successful token fetches per appKey (both endpoints): what a single-flight cache keeps
    /// at one per expiry.
    pub token_fetches: BTreeMap<String, usize>,
    /// New tokens issued per appKey (a fetch while valid renews the same token).
    pub tokens_issued: BTreeMap<String, usize>,
}

pub(crate) struct App {
    pub(crate) secret: String,
    pub(crate) agent_id: i64,
}

pub(crate) struct AppConfig {
    pub(crate) apps: BTreeMap<String, App>,
    /// userid -> name.
    pub(crate) users: BTreeMap<String, String>,
    pub(crate) flow_controlled: HashSet<String>,
    /// openConversationId -> the robotCodes in the group (None: every app's robot).
    pub(crate) conversations: HashMap<String, Option<Vec<String>>>,
    pub(crate) token_ttl: Duration,
    pub(crate) oapi_expired_errcode: i64,
    pub(crate) app_qps: usize,
    pub(crate) robot_rate: usize,
    pub(crate) robot_window: Duration,
    pub(crate) oto_max_users: usize,
    pub(crate) work_daily_limit: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            flow_controlled: HashSet::new(),
            conversations: HashMap::new(),
            token_ttl: TOKEN_TTL,
            oapi_expired_errcode: 40014,
            app_qps: 20,
            robot_rate: 20,
            robot_window: Duration::from_secs(60),
            oto_max_users: 20,
            work_daily_limit: 500,
        }
    }
}

pub(crate) struct Token {
    pub(crate) app: String,
    pub(crate) expires: Instant,
}

pub(crate) struct Task {
    pub(crate) agent_id: i64,
    pub(crate) created: Instant,
    pub(crate) delivered: Vec<String>,
    pub(crate) forbidden: Vec<Value>,
    pub(crate) invalid_users: Vec<String>,
    pub(crate) invalid_depts: Vec<Value>,
}

#[derive(Default)]
pub(crate) struct AppState {
    pub(crate) tokens: HashMap<String, Token>,
    /// appKey -> its current token.
    pub(crate) current: HashMap<String, String>,
    pub(crate) token_fetches: BTreeMap<String, usize>,
    pub(crate) tokens_issued: BTreeMap<String, usize>,
    /// (appKey, path) -> calls in the last second.
    pub(crate) qps: HashMap<(String, String), VecDeque<Instant>>,
    /// (robotCode, "group"|"oto", cid|userid) -> delivered sends in the window.
    pub(crate) robot_sends: HashMap<(String, &'static str, String), VecDeque<Instant>>,
    pub(crate) channels: BTreeMap<String, ChannelStats>,
    pub(crate) messages: Vec<AppMessage>,
    pub(crate) tasks: HashMap<i64, Task>,
    pub(crate) next_task: i64,
    /// (agent, userid, day) -> work notifications delivered.
    pub(crate) work_daily: HashMap<(i64, String, i64), usize>,
    /// (agent, userid, day, content hash).
    pub(crate) work_seen: HashSet<(i64, String, i64, String)>,
    /// (agent, day) -> to_all_user sends.
    pub(crate) work_to_all: HashMap<(i64, i64), usize>,
    /// Makes tokens, request ids and query keys unique.
    pub(crate) serial: u64,
    /// 免登 auth codes: code -> (userid, appKey, expiry).
    pub(crate) auth_codes: HashMap<String, (String, String, Instant)>,
    /// appKey -> its jsapi_ticket and when it expires.
    pub(crate) tickets: HashMap<String, (String, Instant)>,
}

impl AppState {
    pub(crate) fn channel(&mut self, channel: &str) -> &mut ChannelStats {
        self.channels.entry(channel.to_owned()).or_default()
    }

    pub(crate) fn count(&mut self, channel: &str, code: &str, warnings: &[String], accepted: bool) {
        let ch = self.channel(channel);
        *ch.by_code.entry(code.to_owned()).or_default() += 1;
        if accepted {
            ch.accepted += 1;
        }
        for w in warnings {
            *ch.warnings.entry(w.clone()).or_default() += 1;
        }
    }

    /// A fresh hex string of `len` characters (unique in this mock, not guessable in practice).
    pub(crate) fn fresh_hex(&mut self, salt: &str, len: usize) -> String {
        self.serial += 1;
        let digest = Sha256::digest(format!("{salt}:{}:{}", self.serial, crate::system_ms()));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex[..len.min(64)].to_owned()
    }

    /// A topapi `request_id`: 13 lower-case characters.
    pub(crate) fn request_id(&mut self) -> String {
        self.fresh_hex("request", 13)
    }

    /// An api `requestid` / `x-acs-request-id`: an upper-case UUID.
    pub(crate) fn acs_request_id(&mut self) -> String {
        let h = self.fresh_hex("acs", 32).to_uppercase();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Sliding one-second window of calls per app per API; `limit` 0 is off. A refused call is
    /// not counted.
    pub(crate) fn over_qps(&mut self, limit: usize, app: &str, api: &str, now: Instant) -> bool {
        if limit == 0 {
            return false;
        }
        let dq = self
            .qps
            .entry((app.to_owned(), api.to_owned()))
            .or_default();
        while dq
            .front()
            .is_some_and(|t| *t + Duration::from_secs(1) <= now)
        {
            dq.pop_front();
        }
        if dq.len() >= limit {
            return true;
        }
        dq.push_back(now);
        false
    }

    /// The app-robot window per robot per group or user; only delivered sends count.
    pub(crate) fn over_robot_rate(
        &mut self,
        config: &AppConfig,
        key: (String, &'static str, String),
        now: Instant,
    ) -> bool {
        let dq = self.robot_sends.entry(key).or_default();
        while dq.front().is_some_and(|t| *t + config.robot_window <= now) {
            dq.pop_front();
        }
        if dq.len() >= config.robot_rate {
            return true;
        }
        dq.push_back(now);
        false
    }
}

/// A parsed request to an app endpoint.
pub(crate) struct Call<'a> {
    pub(crate) path: &'a str,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) content_type: String,
    pub(crate) body: &'a [u8],
    pub(crate) now: Instant,
    pub(crate) now_ms: i64,
}

impl Call<'_> {
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The China (UTC+8) day number of the wall clock: DingTalk's days.
    pub(crate) fn day(&self) -> i64 {
        (self.now_ms / 1000 + 8 * 3600).div_euclid(86_400)
    }
}

fn with_detail(mut headers: Vec<(String, String)>, detail: Option<&str>) -> Vec<(String, String)> {
    if let Some(d) = detail {
        headers.push(("X-Mock-Detail".to_owned(), d.to_owned()));
    }
    headers
}

/// An oapi answer: HTTP 200, `application/json` (topapi: `;charset=UTF-8`).
pub(crate) fn oapi_reply(
    st: &mut AppState,
    channel: &str,
    obj: Value,
    topapi: bool,
    detail: Option<&str>,
    warnings: &[String],
    accepted: bool,
) -> Reply {
    let code = obj
        .get("errcode")
        .map_or_else(|| "none".to_owned(), |c| c.to_string());
    st.count(channel, &code, warnings, accepted);
    Reply {
        answer: Answer {
            status: 200,
            content_type: Some(
                if topapi {
                    "application/json;charset=UTF-8"
                } else {
                    "application/json"
                }
                .to_owned(),
            ),
            body: obj.to_string().into_bytes(),
        },
        headers: with_detail(Vec::new(), detail),
    }
}

/// `{"errcode","errmsg"}` (topapi: plus `request_id`).
pub(crate) fn oapi_error(
    st: &mut AppState,
    channel: &str,
    errcode: i64,
    errmsg: &str,
    topapi: bool,
    detail: Option<&str>,
) -> Reply {
    let mut obj = json!({ "errcode": errcode, "errmsg": errmsg });
    if topapi {
        obj["request_id"] = json!(st.request_id());
    }
    oapi_reply(st, channel, obj, topapi, detail, &[], false)
}

/// topapi's wrapper of token, permission and throttle errors: errcode 88 with a string
/// `sub_code`.
pub(crate) fn top88(
    st: &mut AppState,
    channel: &str,
    sub_code: i64,
    sub_msg: &str,
    detail: Option<&str>,
) -> Reply {
    let obj = json!({
        "errcode": 88,
        "sub_code": sub_code.to_string(),
        "sub_msg": sub_msg,
        "errmsg": format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
        "request_id": st.request_id(),
    });
    oapi_reply(st, channel, obj, true, detail, &[], false)
}

/// An api answer: `application/json;charset=utf-8` with `x-acs-request-id` and
/// `x-acs-trace-id`.
#[expect(
    clippy::too_many_arguments,
    reason = "the answer's parts and what stats count of it"
)]
pub(crate) fn api_reply(
    st: &mut AppState,
    channel: &str,
    status: u16,
    obj: &Value,
    code: &str,
    detail: Option<&str>,
    warnings: &[String],
    accepted: bool,
) -> Reply {
    st.count(channel, code, warnings, accepted);
    let headers = vec![
        ("x-acs-request-id".to_owned(), st.acs_request_id()),
        ("x-acs-trace-id".to_owned(), st.fresh_hex("trace", 32)),
    ];
    Reply {
        answer: Answer {
            status,
            content_type: Some("application/json;charset=utf-8".to_owned()),
            body: obj.to_string().into_bytes(),
        },
        headers: with_detail(headers, detail),
    }
}

/// `{"code","requestid","message"}` with a 4xx/5xx status.
pub(crate) fn api_error(
    st: &mut AppState,
    channel: &str,
    status: u16,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Reply {
    let obj = json!({ "code": code, "requestid": st.acs_request_id(), "message": message });
    api_reply(st, channel, status, &obj, code, detail, &[], false)
}

pub(crate) fn nonempty_str(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if !s.trim().is_empty())
}

/// A JSON number that is not a bool.
pub(crate) fn is_number(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Number(_)))
}

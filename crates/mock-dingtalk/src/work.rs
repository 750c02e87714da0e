//! Work notifications (`dingtalk-app-api.md` §4): `POST
//! /topapi/message/corpconversation/asyncsend_v2` and `.../getsendresult`, `.../getsendprogress`.
//! Over the silent limits (500 per app per user per China day, the same content to the same
//! user once a day) the send still answers errcode 0 and the user shows up in getsendresult's
//! `forbidden_list` (143105, 143106). Malformed requests get the modelled `40035 不合法的参数`
//! with an `X-Mock-Detail` header.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::Reply;
use crate::app::{
    AppConfig, AppMessage, AppState, Call, Channel, ROOT_DEPT, Task, is_number, nonempty_str,
    oapi_error, oapi_reply,
};
use crate::token::{topapi_auth, topapi_body};

/// The largest `msg` object, in bytes of compact JSON.
pub const WORK_MSG_MAX: usize = 2048;
/// Receivers per `userid_list`.
pub const WORK_MAX_USERS: usize = 100;
/// Departments per `dept_id_list`.
pub const WORK_MAX_DEPTS: usize = 20;
/// `to_all_user` sends per app per day.
pub const WORK_TO_ALL_PER_DAY: usize = 3;
const WORK_TYPES: [&str; 8] = [
    "text",
    "image",
    "voice",
    "file",
    "link",
    "oa",
    "markdown",
    "action_card",
];
const URL_SCHEMES: [&str; 3] = ["http://", "https://", "dingtalk://"];
const TASK_LIFETIME: Duration = Duration::from_secs(86_400);

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Judges the `msg` object of asyncsend_v2: the warnings when DingTalk would accept it, an
/// ASCII description of the first problem when not.
pub fn check_work_msg(msg: &Value) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let Value::Object(msg) = msg else {
        return Err("msg must be a JSON object".into());
    };
    let mtype = msg.get("msgtype").and_then(Value::as_str).unwrap_or("");
    if mtype == "actionCard" || mtype == "feedCard" {
        return Err(format!(
            "msgtype {mtype} is the custom-robot spelling; work notifications use action_card (no feedCard)"
        ));
    }
    if !WORK_TYPES.contains(&mtype) {
        return Err(format!("unsupported msgtype {mtype:?}"));
    }
    let Some(Value::Object(body)) = msg.get(mtype) else {
        return Err(format!("msg.{mtype} must be an object"));
    };
    if msg.keys().any(|k| k != "msgtype" && k != mtype) {
        warnings.push("extra_msg_keys".into());
    }
    let need = |fields: &[&str]| -> Result<(), String> {
        match fields
            .iter()
            .find(|f| !(nonempty_str(body.get(**f)) || is_number(body.get(**f))))
        {
            Some(f) => Err(format!("msg.{mtype}.{f} is required")),
            None => Ok(()),
        }
    };
    match mtype {
        "text" => {
            need(&["content"])?;
            if chars(&body["content"]) > 500 {
                warnings.push("text_over_500_chars".into());
            }
        }
        "image" | "file" => need(&["media_id"])?,
        "voice" => need(&["media_id", "duration"])?,
        "link" => {
            if body.contains_key("message_url") || body.contains_key("pic_url") {
                warnings.push("snake_case_link_keys".into());
            }
            need(&["messageUrl", "picUrl", "title", "text"])?;
            let url = body["messageUrl"].as_str().unwrap_or("");
            if !URL_SCHEMES.iter().any(|s| url.starts_with(s)) {
                warnings.push("url_scheme".into());
            }
        }
        "markdown" => {
            need(&["title", "text"])?;
            if chars(&body["text"]) > 5000 {
                warnings.push("markdown_over_5000_chars".into());
            }
        }
        "oa" => {
            if body.contains_key("messageUrl") || !body.contains_key("message_url") {
                need(&["message_url"])?;
            }
            let head = body.get("head");
            if !(nonempty_str(head.and_then(|h| h.get("bgcolor")))
                && nonempty_str(head.and_then(|h| h.get("text"))))
            {
                return Err("msg.oa.head.bgcolor and msg.oa.head.text are required".into());
            }
            if chars(&head.unwrap_or(&Value::Null)["bgcolor"]) != 8 {
                warnings.push("oa_bgcolor_not_8_hex".into());
            }
            let Some(Value::Object(oa_body)) = body.get("body") else {
                return Err("msg.oa.body is required".into());
            };
            if let Some(Value::Array(form)) = oa_body.get("form")
                && form.len() > 6
            {
                warnings.push("oa_form_over_6_hidden".into());
            }
        }
        "action_card" => {
            let robot_keys: Vec<&str> =
                ["text", "singleTitle", "singleURL", "btns", "btnOrientation"]
                    .into_iter()
                    .filter(|k| body.contains_key(*k))
                    .collect();
            if !robot_keys.is_empty() {
                warnings.push("robot_style_action_card_keys".into());
            }
            if !nonempty_str(body.get("markdown")) {
                let mut d = "msg.action_card.markdown is required".to_owned();
                if !robot_keys.is_empty() {
                    d += &format!(
                        " (robot actionCard keys were sent: {})",
                        robot_keys.join(",")
                    );
                }
                return Err(d);
            }
            let (title, url) = (body.get("single_title"), body.get("single_url"));
            if nonempty_str(title) || nonempty_str(url) {
                if !(nonempty_str(title) && nonempty_str(url)) {
                    return Err("msg.action_card.single_title and single_url go together".into());
                }
                if chars(&body["single_title"]) > 20 {
                    warnings.push("single_title_over_20_chars".into());
                }
                if chars(&body["single_url"]) > 500 {
                    warnings.push("single_url_over_500_chars".into());
                }
            } else {
                let orientation = body.get("btn_orientation");
                let Some(Value::Array(btns)) = body.get("btn_json_list") else {
                    return Err("msg.action_card needs single_title+single_url or btn_orientation+btn_json_list".into());
                };
                if btns.is_empty()
                    || matches!(orientation, None | Some(Value::Null))
                    || orientation.and_then(Value::as_str) == Some("")
                {
                    return Err("msg.action_card needs single_title+single_url or btn_orientation+btn_json_list".into());
                }
                for b in btns {
                    if !(nonempty_str(b.get("title")) && nonempty_str(b.get("action_url"))) {
                        return Err(
                            "msg.action_card.btn_json_list[] needs title and action_url".into()
                        );
                    }
                    if chars(&b["title"]) > 20 {
                        warnings.push("btn_title_over_20_chars".into());
                    }
                    if chars(&b["action_url"]) > 700 {
                        warnings.push("action_url_over_700_chars".into());
                    }
                }
                let o = match orientation {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                if o != "0" && o != "1" {
                    warnings.push("btn_orientation_not_0_or_1".into());
                }
                if Value::Array(btns.clone()).to_string().chars().count() > 1000 {
                    warnings.push("btn_json_list_over_1000_chars".into());
                }
            }
        }
        _ => {}
    }
    if Value::Object(msg.clone()).to_string().len() > WORK_MSG_MAX {
        return Err(format!("msg is longer than {WORK_MSG_MAX} bytes"));
    }
    Ok(warnings)
}

fn bad(st: &mut AppState, channel: &str, detail: &str) -> Reply {
    oapi_error(st, channel, 40035, "不合法的参数", true, Some(detail))
}

fn bad_agent(st: &mut AppState, channel: &str, detail: &str) -> Reply {
    oapi_error(st, channel, 40056, "不合法的agentid", true, Some(detail))
}

/// A comma-separated id list: `Ok(ids)` or the problem.
fn id_list(form: &Map<String, Value>, name: &str, limit: usize) -> Result<Vec<String>, String> {
    match form.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => {
            let ids: Vec<String> = s
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect();
            if ids.len() > limit {
                Err(format!("{name} has {} ids, at most {limit}", ids.len()))
            } else {
                Ok(ids)
            }
        }
        Some(other) => Err(format!(
            "{name} must be a comma-separated string, not {}",
            match other {
                Value::Array(_) => "list",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "object",
            }
        )),
    }
}

/// `POST /topapi/message/corpconversation/asyncsend_v2?access_token=`.
pub(crate) fn asyncsend_v2(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = Channel::WorkNotice.name();
    let form = topapi_body(call);
    let app = match topapi_auth(config, st, channel, call, form.as_ref().ok()) {
        Ok(app) => app,
        Err(reply) => return reply,
    };
    let form = match form {
        Ok(form) => form,
        Err(problem) => return bad(st, channel, problem),
    };
    let agent_id = config.apps[&app].agent_id;
    let is_form = call.content_type == "application/x-www-form-urlencoded";
    let mut warnings: Vec<String> = Vec::new();
    if is_form {
        warnings.push("form_body".into());
    }
    let agent = match form.get("agent_id") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            if !is_form {
                warnings.push("agent_id_is_a_string".into());
            }
            s.parse().ok()
        }
        _ => None,
    };
    let Some(agent) = agent else {
        return bad_agent(st, channel, "agent_id missing or not a number");
    };
    if agent != agent_id {
        return bad_agent(st, channel, "agent_id does not belong to the token's app");
    }
    let users = id_list(&form, "userid_list", WORK_MAX_USERS);
    let depts = id_list(&form, "dept_id_list", WORK_MAX_DEPTS);
    let (users, depts) = match (users, depts) {
        (Ok(u), Ok(d)) => (u, d),
        (Err(e), _) | (_, Err(e)) => return bad(st, channel, &e),
    };
    let to_all = match form.get("to_all_user") {
        Some(Value::String(s)) => {
            if !is_form {
                warnings.push("to_all_user_is_a_string".into());
            }
            s.eq_ignore_ascii_case("true")
        }
        Some(Value::Bool(b)) => *b,
        _ => false,
    };
    if !to_all && users.is_empty() && depts.is_empty() {
        return bad(
            st,
            channel,
            "no receivers: give userid_list, dept_id_list or to_all_user",
        );
    }
    let msg = match form.get("msg") {
        None | Some(Value::Null) => return bad(st, channel, "msg is required"),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(_) => return bad(st, channel, "msg is not JSON"),
        },
        Some(v) => v.clone(),
    };
    match check_work_msg(&msg) {
        Ok(w) => warnings.extend(w),
        Err(detail) => return bad(st, channel, &detail),
    }
    if msg["msgtype"] == "oa"
        && msg["oa"]
            .get("status_bar")
            .is_some_and(|s| !s.is_null() && s != &json!({}))
        && (to_all || !depts.is_empty() || users.len() > 5)
    {
        return bad(
            st,
            channel,
            "an oa status_bar allows only userid_list, at most 5 users",
        );
    }
    let day = call.day();
    if to_all {
        let sent = st.work_to_all.entry((agent_id, day)).or_default();
        if *sent >= WORK_TO_ALL_PER_DAY {
            let detail = format!("to_all_user at most {WORK_TO_ALL_PER_DAY} times a day");
            return oapi_error(
                st,
                channel,
                41045,
                "单应用全员消息/每天总量超限",
                true,
                Some(&detail),
            );
        }
        *sent += 1;
    }
    let content_hash: String = Sha256::digest(msg.to_string())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut candidates: Vec<String> = Vec::new();
    let mut invalid_users = Vec::new();
    let mut invalid_depts = Vec::new();
    for u in &users {
        if config.users.contains_key(u) {
            candidates.push(u.clone());
        } else {
            invalid_users.push(u.clone());
        }
    }
    for d in &depts {
        if d == ROOT_DEPT {
            candidates.extend(config.users.keys().cloned());
        } else {
            invalid_depts.push(d.parse::<i64>().map_or_else(|_| json!(d), |n| json!(n)));
        }
    }
    if to_all {
        candidates.extend(config.users.keys().cloned());
    }
    let (mut delivered, mut forbidden) = (Vec::<String>::new(), Vec::new());
    let limit = config.work_daily_limit;
    for u in candidates {
        if delivered.contains(&u) || forbidden.iter().any(|f: &Value| f["userid"] == u.as_str()) {
            continue;
        }
        let seen_key = (agent_id, u.clone(), day, content_hash.clone());
        if st.work_seen.contains(&seen_key) {
            forbidden.push(json!({ "code": "143106", "count": 1, "userid": u }));
            continue;
        }
        let count = st.work_daily.entry((agent_id, u.clone(), day)).or_default();
        if *count >= limit {
            forbidden.push(json!({ "code": "143105", "count": limit, "userid": u }));
            continue;
        }
        *count += 1;
        st.work_seen.insert(seen_key);
        delivered.push(u);
    }
    if st.next_task == 0 {
        st.next_task = 256_271_667_526;
    }
    st.next_task += 1;
    let task_id = st.next_task;
    st.tasks.insert(
        task_id,
        Task {
            agent_id,
            created: call.now,
            delivered: delivered.clone(),
            forbidden: forbidden.clone(),
            invalid_users: invalid_users.clone(),
            invalid_depts: invalid_depts.clone(),
        },
    );
    st.messages.push(AppMessage {
        channel: Channel::WorkNotice,
        app: app.clone(),
        at: call.now,
        at_ms: call.now_ms,
        delivered: delivered.clone(),
        record: json!({
            "channel": channel, "app": app, "agent_id": agent_id, "task_id": task_id,
            "at_ms": call.now_ms, "msg": msg, "delivered": delivered, "forbidden": forbidden,
            "invalid_user_id_list": invalid_users, "invalid_dept_id_list": invalid_depts,
            "to_all_user": to_all, "warnings": warnings,
        }),
        warnings: warnings.clone(),
    });
    let request_id = st.request_id();
    oapi_reply(
        st,
        channel,
        json!({ "errcode": 0, "errmsg": "ok", "task_id": task_id, "request_id": request_id }),
        true,
        None,
        &warnings,
        true,
    )
}

/// The task of a getsendresult/getsendprogress call, or the answer refusing it.
fn find_task(
    config: &AppConfig,
    st: &mut AppState,
    channel: &str,
    call: &Call,
) -> Result<i64, Reply> {
    let form = topapi_body(call);
    let app = topapi_auth(config, st, channel, call, form.as_ref().ok())?;
    let form = form.map_err(|problem| bad(st, channel, problem))?;
    let agent_id = config.apps[&app].agent_id;
    let agent = match form.get("agent_id") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if agent != Some(agent_id) {
        return Err(bad_agent(
            st,
            channel,
            "agent_id does not belong to the token's app",
        ));
    }
    let task_id = match form.get("task_id") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let found = task_id.and_then(|id| st.tasks.get(&id).map(|t| (id, t)));
    match found {
        Some((id, task))
            if task.agent_id == agent_id && call.now < task.created + TASK_LIFETIME =>
        {
            Ok(id)
        }
        _ => Err(bad(
            st,
            channel,
            "unknown task_id, another app's task, or older than 24 h (answer modelled)",
        )),
    }
}

/// `POST /topapi/message/corpconversation/getsendresult {"agent_id","task_id"}`.
pub(crate) fn getsendresult(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "work_result";
    let id = match find_task(config, st, channel, call) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let task = &st.tasks[&id];
    let forbidden_ids: Vec<Value> = task.forbidden.iter().map(|f| f["userid"].clone()).collect();
    let result = json!({
        "invalid_user_id_list": task.invalid_users,
        "forbidden_user_id_list": forbidden_ids,
        "failed_user_id_list": [],
        "read_user_id_list": [],
        "unread_user_id_list": task.delivered,
        "invalid_dept_id_list": task.invalid_depts,
        "forbidden_list": task.forbidden,
    });
    let request_id = st.request_id();
    oapi_reply(
        st,
        channel,
        json!({ "errcode": 0, "send_result": result, "errmsg": "ok", "request_id": request_id }),
        true,
        None,
        &[],
        true,
    )
}

/// `POST /topapi/message/corpconversation/getsendprogress {"agent_id","task_id"}`: always done.
pub(crate) fn getsendprogress(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "work_result";
    if let Err(reply) = find_task(config, st, channel, call) {
        return reply;
    }
    let request_id = st.request_id();
    oapi_reply(
        st,
        channel,
        json!({ "errcode": 0, "progress": { "progress_in_percent": 100, "status": 2 },
                "errmsg": "ok", "request_id": request_id }),
        true,
        None,
        &[],
        true,
    )
}

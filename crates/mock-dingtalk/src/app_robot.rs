//! App robots (`dingtalk-app-api.md` §3): `POST /v1.0/robot/groupMessages/send` and
//! `POST /v1.0/robot/oToMessages/batchSend`, with the msgKey/msgParam catalogue (§3.4), the
//! HTTP 400 validation answers (§3.5), the per-user outcome lists and the modelled rate limits
//! (§3.6), in the Python tool's order: body, token, QPS, required fields, robotCode, group or
//! userIds, msgParam, rate.

use serde_json::{Map, Value, json};

use crate::Reply;
use crate::app::{
    AppConfig, AppMessage, AppState, Call, Channel, api_error, api_reply, is_number, nonempty_str,
};
use crate::token::{api_auth, api_json_body};

/// The largest msgParam string, in bytes.
pub const MSG_PARAM_MAX: usize = 15_000;
const MSGPARAM_INVALID: &str = "错误描述:msgParam格式不正确;解决方案:请使用json格式;";
const LINK_HINT: &str = "参考链接:请参考本接口对应文档查看参数获取方式，或者在https://open.dingtalk.com/document/  搜索对应文档;";
const URL_SCHEMES: [&str; 3] = ["http://", "https://", "dingtalk://"];
const FILE_TYPES: [&str; 6] = ["xlsx", "pdf", "zip", "rar", "doc", "docx"];

/// msgKey -> (required, optional) msgParam fields.
fn catalogue(msg_key: &str) -> Option<(Vec<String>, Vec<&'static str>)> {
    let own = |fields: &[&str]| fields.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
    Some(match msg_key {
        "sampleText" => (own(&["content"]), vec![]),
        "sampleMarkdown" => (own(&["title", "text"]), vec![]),
        "sampleImageMsg" => (own(&["photoURL"]), vec![]),
        "sampleLink" => (own(&["text", "title", "messageUrl"]), vec!["picUrl"]),
        "sampleActionCard" => (own(&["title", "text", "singleTitle", "singleURL"]), vec![]),
        "sampleActionCard6" => (
            own(&[
                "title",
                "text",
                "buttonTitle1",
                "buttonUrl1",
                "buttonTitle2",
                "buttonUrl2",
            ]),
            vec![],
        ),
        "sampleAudio" => (own(&["mediaId", "duration"]), vec![]),
        "sampleFile" => (own(&["mediaId", "fileName", "fileType"]), vec![]),
        "sampleVideo" => (
            own(&["duration", "videoMediaId", "videoType", "picMediaId"]),
            vec!["height", "width"],
        ),
        key => {
            let n: usize = key.strip_prefix("sampleActionCard")?.parse().ok()?;
            if !(2..=5).contains(&n) {
                return None;
            }
            let mut fields = own(&["title", "text"]);
            for i in 1..=n {
                fields.push(format!("actionTitle{i}"));
                fields.push(format!("actionURL{i}"));
            }
            (fields, vec![])
        }
    })
}

/// (code, object name, field name) of a missing msgParam field.
fn missing_code(msg_key: &str, field: &str) -> (String, &'static str, String) {
    let f = field.to_owned();
    match msg_key {
        "sampleText" => ("miss.param.contentOfText".into(), "text", f),
        "sampleMarkdown" => (format!("miss.param.markdownTo{field}"), "markdown", f),
        "sampleLink" => (format!("miss.param.{field}OfLink"), "link", f),
        "sampleImageMsg" => (
            "miss.param.photoTophotoUrl".into(),
            "photo",
            "photoURL".into(),
        ),
        "sampleAudio" => ("miss.param.audio".into(), "audio", f),
        "sampleFile" => ("miss.param.file".into(), "file", f),
        "sampleVideo" => ("miss.param.video".into(), "video", f),
        _ => {
            let code = match field {
                "title" | "text" => format!("miss.param.actionCardTo{field}"),
                "singleTitle" => "miss.param.actionCardTosingleTitle".into(),
                "singleURL" => "miss.param.actionCardTosingleUrl".into(),
                _ if field.contains("Title") => "miss.param.actionCardTobtnsTotitle".into(),
                _ => "miss.param.actionCardTobtnsToactionUrl".into(),
            };
            (code, "actionCard", f)
        }
    }
}

/// A refusal of a msgKey/msgParam pair: (code, message).
pub type ParamError = (String, String);

/// Judges an app-robot (msgKey, msgParam) pair as both send APIs do: the parsed msgParam and
/// the warnings when accepted, the HTTP-400 code and message when not.
pub fn check_msg_param(
    msg_key: &Value,
    msg_param: &Value,
) -> Result<(Map<String, Value>, Vec<String>), ParamError> {
    let mut warnings = Vec::new();
    let key = msg_key.as_str().unwrap_or("");
    let Some((required, optional)) = catalogue(key) else {
        let shown = match msg_key {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Err((
            "invalidParameter.msgKey.invalid".into(),
            format!(
                "错误描述: 不支持类型 {shown} ;解决方案:请使用支持的类型;参考链接:请参考本接口对应文档查看支持的消息类型，或者在https://open.dingtalk.com/document/ 搜索对应文档;"
            ),
        ));
    };
    let invalid = || {
        (
            "invalidParameter.msgParam.invalid".to_owned(),
            MSGPARAM_INVALID.to_owned(),
        )
    };
    let Value::String(text) = msg_param else {
        return Err(invalid());
    };
    if text.len() > MSG_PARAM_MAX {
        return Err((
            "invalidParameter.msgParam.tooLong".into(),
            "消息内容太长".into(),
        ));
    }
    let Ok(Value::Object(p)) = serde_json::from_str::<Value>(text) else {
        return Err(invalid());
    };
    for field in &required {
        let v = p.get(field);
        if nonempty_str(v) {
            continue;
        }
        if is_number(v) {
            warnings.push(format!("{field}_not_a_string"));
            continue;
        }
        let (code, obj, name) = missing_code(key, field);
        return Err((
            code,
            format!(
                "错误描述:参数 {obj} --》 {name} 缺失，或者参数格式不正确; 解决方案:请填充上对应参数;{LINK_HINT}"
            ),
        ));
    }
    for k in p.keys() {
        if ["at", "atUserIds", "atMobiles", "isAtAll", "atDingtalkIds"].contains(&k.as_str()) {
            warnings.push("at_not_supported_by_api".into());
        } else if !required.contains(k) && !optional.contains(&k.as_str()) {
            warnings.push(format!("unknown_param:{k}"));
        }
    }
    for (k, v) in &p {
        if k.to_lowercase().contains("url")
            && k != "photoURL"
            && k != "picUrl"
            && let Value::String(v) = v
            && !URL_SCHEMES.iter().any(|s| v.starts_with(s))
        {
            warnings.push("url_scheme".into());
        }
    }
    if key == "sampleLink" && !nonempty_str(p.get("picUrl")) {
        warnings.push("picUrl_missing".into());
    }
    if key == "sampleFile"
        && let Some(Value::String(t)) = p.get("fileType")
        && !FILE_TYPES.contains(&t.as_str())
    {
        warnings.push("fileType_unsupported".into());
    }
    if key == "sampleVideo"
        && p.get("videoType")
            .is_some_and(|t| t.as_str() != Some("mp4"))
    {
        warnings.push("videoType_not_mp4".into());
    }
    Ok((p, warnings))
}

/// Missing fields, then the robotCode: an app's robot is its appKey, and only that app's token
/// may send as it.
fn robot_checks(
    config: &AppConfig,
    st: &mut AppState,
    channel: &str,
    app: &str,
    obj: &Map<String, Value>,
    required: &[&str],
) -> Result<String, Reply> {
    for field in required {
        let missing = match obj.get(*field) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if missing {
            return Err(api_error(
                st,
                channel,
                400,
                &format!("Missing{field}"),
                &format!("{field} is mandatory for this action."),
                Some("required parameter missing"),
            ));
        }
    }
    let code = obj["robotCode"].as_str().unwrap_or("");
    if !config.apps.contains_key(code) {
        return Err(api_error(
            st,
            channel,
            400,
            "invalidParameter.robotCode.notExsit",
            "错误描述: robot 不存在；解决方案:请确认 robotCode 是否正确；",
            Some("robotCode of an internal app robot is its AppKey"),
        ));
    }
    if code != app {
        return Err(api_error(
            st,
            channel,
            400,
            "invalidParameter.robotCode.auth",
            "此应用appkey和机器人robotCode不匹配，请使用机器人应用的appkey",
            None,
        ));
    }
    Ok(code.to_owned())
}

fn process_query_key(st: &mut AppState) -> String {
    use base64::Engine;
    let hex = st.fresh_hex("pqk", 64);
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /v1.0/robot/groupMessages/send`.
pub(crate) fn group_send(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = Channel::AppRobotGroup.name();
    let result = (|| {
        let obj = api_json_body(st, channel, call)?;
        let app = api_auth(config, st, channel, call)?;
        let robot = robot_checks(
            config,
            st,
            channel,
            &app,
            &obj,
            &["robotCode", "openConversationId", "msgKey", "msgParam"],
        )?;
        let cid = obj["openConversationId"].as_str().unwrap_or("");
        let Some(members) = config.conversations.get(cid) else {
            return Err(api_error(
                st,
                channel,
                400,
                "invalid.openConversationId",
                "无效的openConversationId",
                Some("openConversationId not declared with .conversation / --conversation"),
            ));
        };
        if members.as_ref().is_some_and(|m| !m.contains(&robot)) {
            return Err(api_error(
                st,
                channel,
                400,
                "resource.unavailable",
                "资源不可用，可能是机器人已停用或会话未安装酷应用",
                Some("the robot is not in this group (answer modelled)"),
            ));
        }
        let (param, mut warnings) = check_msg_param(&obj["msgKey"], &obj["msgParam"])
            .map_err(|(code, message)| api_error(st, channel, 400, &code, &message, None))?;
        if st.over_robot_rate(config, (robot.clone(), "group", cid.to_owned()), call.now) {
            return Err(api_error(
                st,
                channel,
                400,
                "send.too.fast",
                "限流错误",
                Some("app-robot-rate exceeded (limit modelled)"),
            ));
        }
        let mut extra: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| {
                ![
                    "robotCode",
                    "openConversationId",
                    "msgKey",
                    "msgParam",
                    "coolAppCode",
                ]
                .contains(k)
            })
            .collect();
        if !extra.is_empty() {
            extra.sort_unstable();
            warnings.push(format!("unknown_body_keys:{}", extra.join(",")));
        }
        let pqk = process_query_key(st);
        st.messages.push(AppMessage {
            channel: Channel::AppRobotGroup,
            app: app.clone(),
            at: call.now,
            at_ms: call.now_ms,
            delivered: Vec::new(),
            record: json!({
                "channel": channel, "app": app, "robotCode": robot, "openConversationId": cid,
                "msgKey": obj["msgKey"], "msgParam": param, "processQueryKey": pqk,
                "at_ms": call.now_ms, "warnings": warnings,
            }),
            warnings: warnings.clone(),
        });
        Ok(api_reply(
            st,
            channel,
            200,
            &json!({ "processQueryKey": pqk }),
            "0",
            None,
            &warnings,
            true,
        ))
    })();
    result.unwrap_or_else(|reply| reply)
}

/// `POST /v1.0/robot/oToMessages/batchSend`.
pub(crate) fn oto_send(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = Channel::AppRobotOto.name();
    let result = (|| {
        let obj = api_json_body(st, channel, call)?;
        let app = api_auth(config, st, channel, call)?;
        let robot = robot_checks(
            config,
            st,
            channel,
            &app,
            &obj,
            &["robotCode", "userIds", "msgKey", "msgParam"],
        )?;
        let ids: Vec<String> = match &obj["userIds"] {
            Value::Array(items) if items.iter().all(nonempty_str_value) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                return Err(api_error(
                    st,
                    channel,
                    400,
                    "invalidParameter.param.invalid",
                    "参数不合法",
                    Some("userIds must be an array of userid strings (answer modelled)"),
                ));
            }
        };
        if ids.len() > config.oto_max_users {
            let detail = format!("at most {} userIds per call", config.oto_max_users);
            return Err(api_error(
                st,
                channel,
                400,
                "invalidParameter.userIds.overMax",
                "用户userId列表超过最大限制",
                Some(&detail),
            ));
        }
        let (param, mut warnings) = check_msg_param(&obj["msgKey"], &obj["msgParam"])
            .map_err(|(code, message)| api_error(st, channel, 400, &code, &message, None))?;
        let (mut invalid, mut limited, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
        let mut unique: Vec<&String> = Vec::new();
        for id in &ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        for user in &unique {
            if !config.users.contains_key(*user) {
                invalid.push((*user).clone());
            } else if config.flow_controlled.contains(*user)
                || st.over_robot_rate(config, (robot.clone(), "oto", (*user).clone()), call.now)
            {
                limited.push((*user).clone());
            } else {
                delivered.push((*user).clone());
            }
        }
        if unique.len() != ids.len() {
            warnings.push("duplicate_userIds".into());
        }
        let pqk = process_query_key(st);
        if !delivered.is_empty() {
            st.messages.push(AppMessage {
                channel: Channel::AppRobotOto,
                app: app.clone(),
                at: call.now,
                at_ms: call.now_ms,
                delivered: delivered.clone(),
                record: json!({
                    "channel": channel, "app": app, "robotCode": robot, "userIds": delivered,
                    "invalidStaffIdList": invalid, "flowControlledStaffIdList": limited,
                    "msgKey": obj["msgKey"], "msgParam": param, "processQueryKey": pqk,
                    "at_ms": call.now_ms, "warnings": warnings,
                }),
                warnings: warnings.clone(),
            });
        }
        Ok(api_reply(
            st,
            channel,
            200,
            &json!({
                "processQueryKey": pqk,
                "invalidStaffIdList": invalid,
                "flowControlledStaffIdList": limited,
            }),
            "0",
            None,
            &warnings,
            !delivered.is_empty(),
        ))
    })();
    result.unwrap_or_else(|reply| reply)
}

fn nonempty_str_value(v: &Value) -> bool {
    matches!(v, Value::String(s) if !s.is_empty())
}

//! What an answer from DingTalk means: delivered, throttled, worth retrying, or never going to
//! work.
//!
//! DingTalk answers HTTP 200 to refusals too, so the decision rests on the body's `errcode`, never
//! on the HTTP status alone:
//!
//! | answer | outcome |
//! |---|---|
//! | HTTP 2xx and errcode 0 | [`Verdict::Delivered`] |
//! | errcode 0 with any other status | [`Verdict::Transient`] (something between us and DingTalk is wrong) |
//! | errcode 130101 or 410100 ("send too fast"), any status | [`Verdict::Throttled`] |
//! | a known permanent errcode (below) with a status below 500 | [`Verdict::Permanent`] |
//! | -1 (system busy), 90002 (platform throttle), any unknown errcode | [`Verdict::Transient`] |
//! | HTTP 5xx (whatever the errcode, except throttling), 3xx (redirects are not followed) | [`Verdict::Transient`] |
//! | no answer: timeout, connection error | [`Verdict::Transient`] |
//! | an empty, HTML or non-JSON body, JSON that is not an object, or has no usable errcode (such as the IP-level throttle's `{"status":1111,"source":"x5","punish":"deny",...}`) | [`Verdict::Transient`] |
//!
//! Permanent errcodes, dead-lettered at once with advice for the operator:
//! - 310000: a security check failed (keyword, 加签 signature or timestamp, IP whitelist); the
//!   errmsg, whose wording changed at least three times, picks the advice by substrings only;
//! - 300001, 300005, 400101: the access_token is wrong; 400102: the robot is disabled; 400106: the
//!   robot no longer exists; 400013: the group was dissolved;
//! - 40035, 43002, 43004, 400105, 400402, 460101 (and 101002, its 2019 form): the request or
//!   message is malformed; validation should have caught it;
//! - 430101 to 430104: DingTalk's content moderation refused the message.
//!
//! **Unknown errcodes are transient**: a code DingTalk adds tomorrow must never make a message
//! disappear. The message is retried with backoff until its maximum age, and then it is
//! dead-lettered with the last errcode and errmsg in its reason, so a permanent refusal that is
//! not in the table costs retries, not messages. 90030 ("webhook over limit", reportedly the
//! organisation's monthly quota) is deliberately left transient too, with a reason saying so.
//!
//! `errcode` is read as a JSON integer or a string of digits (DingTalk's own documentation shows
//! `"0"`). `errmsg` is kept for the operator: control characters become spaces, anything that looks
//! like an `access_token=`/`sign=` value or URL credentials is masked, and it is cut to
//! [`MAX_ERRMSG_CHARS`] characters. Bodies that are not DingTalk's JSON (a proxy's error page may
//! repeat the request URL, token included) are described by type and size, never quoted.
//!
//! Nothing here panics, whatever the answer.

use serde_json::{Map, Value};

use super::transport::{HttpAnswer, TransportError, redact_secrets};

/// The longest errmsg kept, in characters.
pub const MAX_ERRMSG_CHARS: usize = 300;

/// What to do with a message after one answer (or no answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// HTTP 2xx with errcode 0: DingTalk has it.
    Delivered,
    /// 130101, 410100: the robot is blocked for DingTalk's penalty; pause, then resume.
    Throttled { errcode: i64, errmsg: String },
    /// -1, HTTP 5xx, timeouts, connection errors, HTML or non-JSON bodies, JSON without errcode
    /// (incl. the x5 IP-throttle body `{"status":1111,...}`), unknown errcodes: retry with backoff.
    Transient { reason: String },
    /// 310000 security checks; token/robot errors 300001 300005 400101 400102 400106 400013;
    /// invalid message 40035 43002 43004 400105 400402 460101 101002; moderation 430101-430104:
    /// dead-letter at once. `advice` tells the operator what to do.
    Permanent {
        errcode: i64,
        errmsg: String,
        advice: &'static str,
    },
}

/// Classifies one answer by its errcode (see the module documentation for the table).
pub fn classify(answer: Result<HttpAnswer, TransportError>) -> Verdict {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            return Verdict::Transient {
                reason: clean(&error.to_string(), MAX_ERRMSG_CHARS),
            };
        }
    };
    let status = answer.status;
    match read_body(&answer) {
        Body::Answer { errcode, errmsg } => by_errcode(status, errcode, errmsg),
        Body::Other(what) => Verdict::Transient {
            reason: format!("{} with {what}", describe_status(status)),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The body

/// What the body says.
enum Body {
    /// DingTalk's JSON answer.
    Answer { errcode: i64, errmsg: String },
    /// Anything else, described for a human without quoting it.
    Other(String),
}

fn read_body(answer: &HttpAnswer) -> Body {
    let bytes = answer
        .body
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(&answer.body);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Body::Other("an empty body".to_owned());
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(_) => return Body::Other(describe_non_json(answer, bytes)),
    };
    let Value::Object(object) = value else {
        return Body::Other(format!(
            "a JSON {} instead of DingTalk's answer object",
            json_kind(&value)
        ));
    };
    let Some(errcode) = object.get("errcode").and_then(errcode_of) else {
        return Body::Other(describe_object_without_errcode(&object));
    };
    let errmsg = match object.get("errmsg") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        // Its texts as they are, not as JSON: an escape (`\u0001`) glued to a secret would hide
        // it from masking.
        Some(other) => {
            let mut texts = Vec::new();
            leaves(other, &mut texts);
            texts.join(" ")
        }
    };
    Body::Answer {
        errcode,
        errmsg: clean(&errmsg, MAX_ERRMSG_CHARS),
    }
}

/// The strings, numbers and booleans inside a JSON value, in order.
fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| leaves(item, out)),
        Value::Object(map) => map.values().for_each(|item| leaves(item, out)),
        other => out.push(other.to_string()),
    }
}

/// `errcode` as an integer: a JSON integer (or an integral float), or a string of one.
fn errcode_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn describe_non_json(answer: &HttpAnswer, bytes: &[u8]) -> String {
    let html = answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().contains("html"))
        || bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'<');
    let size = bytes.len();
    if html {
        format!(
            "an HTML page ({size} bytes) instead of DingTalk's JSON answer: a proxy or gateway \
             error, or DingTalk's IP-level throttle (about 5 minutes)"
        )
    } else {
        let kind = answer
            .content_type
            .as_deref()
            .map(|t| clean(t.split(';').next().unwrap_or(t), 60))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "no content type".to_owned());
        format!("a body that is not JSON ({kind}, {size} bytes)")
    }
}

fn describe_object_without_errcode(object: &Map<String, Value>) -> String {
    let text = |key: &str| match object.get(key) {
        Some(Value::String(text)) => Some(clean(text, 40)),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    };
    if text("source").as_deref() == Some("x5") || object.contains_key("punish") {
        let wait = text("wait")
            .map(|wait| format!(", wait {wait}"))
            .unwrap_or_default();
        let punish = text("punish").unwrap_or_else(|| "deny".to_owned());
        return format!(
            "DingTalk's IP-level throttle (x5 {punish}{wait}): requests from this host are refused \
             for about 5 minutes (more than 10,000 calls in 20 s from this IP across all DingTalk APIs)"
        );
    }
    let mut keys: Vec<String> = object.keys().take(6).map(|k| clean(k, 30)).collect();
    if object.len() > keys.len() {
        keys.push("...".to_owned());
    }
    if object.get("errcode").is_some() {
        format!(
            "an errcode that is not a number (keys: {})",
            keys.join(", ")
        )
    } else {
        format!("JSON without an errcode (keys: {})", keys.join(", "))
    }
}

fn describe_status(status: u16) -> String {
    match status {
        300..=399 => format!("HTTP {status} (a redirect, not followed)"),
        _ => format!("HTTP {status}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The errcode

fn by_errcode(status: u16, errcode: i64, errmsg: String) -> Verdict {
    let success = (200..300).contains(&status);
    let quoted = || {
        if errmsg.is_empty() {
            format!("errcode {errcode}")
        } else {
            format!("errcode {errcode}: {errmsg}")
        }
    };
    match errcode {
        0 if success => Verdict::Delivered,
        0 => Verdict::Transient {
            reason: format!(
                "{} with errcode 0: not a delivery confirmation",
                describe_status(status)
            ),
        },
        130101 | 410100 => Verdict::Throttled { errcode, errmsg },
        _ => match advice(errcode, &errmsg) {
            Some(advice) if status < 500 && !(300..400).contains(&status) => Verdict::Permanent {
                errcode,
                errmsg,
                advice,
            },
            Some(_) => Verdict::Transient {
                reason: format!(
                    "{} with {}: retried, since the server failed",
                    describe_status(status),
                    quoted()
                ),
            },
            None => Verdict::Transient {
                reason: match errcode {
                    -1 => format!("DingTalk is busy ({})", quoted()),
                    90002 => format!("DingTalk's per-API throttle ({})", quoted()),
                    90030 => format!(
                        "{}: probably the organisation's monthly webhook quota is used up \
                         (DingTalk admin console: 资源管理 / 用量管控)",
                        quoted()
                    ),
                    _ => format!(
                        "unknown {}: retried until the message's maximum age, then dead-lettered",
                        quoted()
                    ),
                },
            },
        },
    }
}

const TOKEN_ADVICE: &str =
    "the access_token is wrong or the robot was deleted: copy the webhook URL again";
const BUG_ADVICE: &str = "DingTalk refused the request itself: this is a dingrelay bug, please report it \
     (the message stays in the outbox and can be retried with `dingrelay outbox retry`)";

/// The operator's advice for a permanent errcode; `None` for anything to retry.
fn advice(errcode: i64, errmsg: &str) -> Option<&'static str> {
    Some(match errcode {
        310000 => security_advice(errmsg),
        300001 | 300005 | 400101 => TOKEN_ADVICE,
        400102 => {
            "the robot is disabled (机器人已停用): enable it again in the group's robot settings"
        }
        400106 => {
            "the robot no longer exists in the group: add it again and copy its new webhook URL"
        }
        400013 => {
            "the group was dissolved: point the robot's webhook at a robot in another group, or \
             remove the robot from rules.yaml"
        }
        40035 => {
            "DingTalk got no usable JSON body or access_token: check that the webhook URL is \
             complete (it must carry access_token=...); if it is, this is a dingrelay bug, please \
             report it"
        }
        43002 | 43004 | 400105 => BUG_ADVICE,
        400402 => {
            "DingTalk says a required field is missing or malformed (its errmsg names the field): \
             dingrelay's validation missed it, please report it, and fix the rule's template \
             meanwhile"
        }
        460101 | 101002 => {
            "the body is over DingTalk's 20,000-byte limit: dingrelay cuts messages to fit, so \
             this is a bug, please report it; shortening the rule's template avoids it meanwhile"
        }
        430101 => {
            "DingTalk's moderation refused a link as unsafe (含有不安全的外链): change or remove \
             the rule's links"
        }
        430102 => {
            "DingTalk's moderation refused the text (含有不合适的文本): change the rule's template"
        }
        430103 => {
            "DingTalk's moderation refused a picture (含有不合适的图片): change the rule's picture"
        }
        430104 => {
            "DingTalk's moderation refused the content (含有不合适的内容): change the rule's template"
        }
        _ => return None,
    })
}

/// 310000 is one code for several causes; its errmsg has had at least four wordings (English,
/// English with `more: [url]`, `description:`/`solution:`, `错误描述:`/`解决方案:`), so the cause
/// is guessed from substrings, most specific first.
fn security_advice(errmsg: &str) -> &'static str {
    let msg = errmsg.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| msg.contains(n));
    if has(&["whitelist", "白名单"]) {
        "this host's IP is not in the robot's whitelist: add this host's public egress IP (IPv4) \
         to the robot's security settings"
    } else if has(&["keyword", "关键词"]) {
        "a security keyword is missing: add one of the robot's keywords to the rule's title or \
         text, or list the robot's keywords in rules.yaml"
    } else if has(&["not match", "不匹配"]) {
        "the 加签 secret is wrong: copy it again from the robot's settings"
    } else if has(&["timestamp", "过期"]) {
        "the clock is off by more than an hour: fix NTP"
    } else if has(&["sign", "签名"]) {
        "the 加签 secret is wrong: copy it again from the robot's settings"
    } else {
        "one of the robot's security settings (keywords, 加签 secret, IP whitelist) refused the \
         message: compare them with the robot's settings in rules.yaml"
    }
}

/// For the operator's eyes: secrets masked, on one line, at most `max` chars.
pub(super) fn clean(text: &str, max: usize) -> String {
    crate::text::shorten(&crate::text::one_line(&redact_secrets(text)), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<HttpAnswer, TransportError> {
        Ok(HttpAnswer {
            status,
            content_type: Some("application/json".to_owned()),
            body: body.as_bytes().to_vec(),
        })
    }

    fn typed(status: u16, content_type: &str, body: &str) -> Result<HttpAnswer, TransportError> {
        Ok(HttpAnswer {
            status,
            content_type: Some(content_type.to_owned()),
            body: body.as_bytes().to_vec(),
        })
    }

    /// What kind of outcome, and for permanent ones the start of the advice.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Delivered,
        Throttled,
        Transient,
        Permanent(&'static str),
    }

    fn kind(outcome: &Verdict) -> Kind {
        match outcome {
            Verdict::Delivered => Kind::Delivered,
            Verdict::Throttled { .. } => Kind::Throttled,
            Verdict::Transient { .. } => Kind::Transient,
            Verdict::Permanent { advice, .. } => Kind::Permanent(advice),
        }
    }

    const KEYWORD: &str = "a security keyword is missing";
    const SIGN: &str = "the 加签 secret is wrong";
    const CLOCK: &str = "the clock is off";
    const WHITELIST: &str = "this host's IP is not in the robot's whitelist";
    const TOKEN: &str = "the access_token is wrong";

    /// Real response bodies (and their eras) from the DingTalk reference, HTTP 200 unless noted.
    #[test]
    fn real_answers() {
        let table: &[(u16, &str, Kind)] = &[
            (200, r#"{"errcode":0,"errmsg":"ok"}"#, Kind::Delivered),
            (200, r#"{"errcode":"0","errmsg":"ok"}"#, Kind::Delivered),
            (200, r#"{"errmsg":"ok","errcode":0}"#, Kind::Delivered),
            (204, r#"{"errcode":0}"#, Kind::Delivered),
            // Throttling, both codes and eras.
            (
                200,
                r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
                Kind::Throttled,
            ),
            (
                200,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#,
                Kind::Throttled,
            ),
            (
                200,
                r#"{"errcode":410100,"errmsg":"发送速度太快而限流"}"#,
                Kind::Throttled,
            ),
            (
                429,
                r#"{"errcode":"410100","errmsg":"发送速度太快而限流"}"#,
                Kind::Throttled,
            ),
            // Keywords, four eras.
            (
                200,
                r#"{"errcode":310000,"errmsg":"keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                Kind::Permanent(KEYWORD),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
                Kind::Permanent(KEYWORD),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"description:关键词不匹配;solution:请联系群管理员查看此机器人的关键词，并在发送的信息中包含此关键词;"}"#,
                Kind::Permanent(KEYWORD),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"错误描述:关键词不匹配;解决方案:请联系群管理员查看此机器人的关键词，并在发送的信息中包含此关键词;"}"#,
                Kind::Permanent(KEYWORD),
            ),
            // 加签, three eras; the 2025 one mentions 时间戳 but is a mismatch.
            (
                200,
                r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                Kind::Permanent(SIGN),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"sign not match"}"#,
                Kind::Permanent(SIGN),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳必须都放在调用的网址中，并且签名的生成方式正确;"}"#,
                Kind::Permanent(SIGN),
            ),
            // Timestamps, two eras.
            (
                200,
                r#"{"errcode":310000,"errmsg":"invalid timestamp"}"#,
                Kind::Permanent(CLOCK),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"invalid timestamp, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                Kind::Permanent(CLOCK),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"description:机器人发送签名过期;solution:签名生成时间和发送时间请保持在 timestampms 以内;"}"#,
                Kind::Permanent(CLOCK),
            ),
            // IP whitelist, two eras.
            (
                200,
                r#"{"errcode":310000,"errmsg":"ip 203.0.113.7 not in whitelist"}"#,
                Kind::Permanent(WHITELIST),
            ),
            (
                200,
                r#"{"errcode":310000,"errmsg":"description:ip 不在白名单中;solution:请联系对应群的管理员，设置机器人安全ip地址段"}"#,
                Kind::Permanent(WHITELIST),
            ),
            // 310000 with an errmsg nobody has seen yet: still permanent, generic advice.
            (
                200,
                r#"{"errcode":310000,"errmsg":"安全设置校验失败"}"#,
                Kind::Permanent("one of the robot's security settings"),
            ),
            // Tokens and robots.
            (
                200,
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Kind::Permanent(TOKEN),
            ),
            (
                200,
                r#"{"errcode":300005,"errmsg":"token is not exist"}"#,
                Kind::Permanent(TOKEN),
            ),
            (
                200,
                r#"{"errcode":400101,"errmsg":"access_token不存在"}"#,
                Kind::Permanent(TOKEN),
            ),
            (
                200,
                r#"{"errcode":400102,"errmsg":"机器人已停用"}"#,
                Kind::Permanent("the robot is disabled"),
            ),
            (
                200,
                r#"{"errcode":400106,"errmsg":"机器人不存在"}"#,
                Kind::Permanent("the robot no longer exists"),
            ),
            (
                200,
                r#"{"errcode":400013,"errmsg":"群已被解散"}"#,
                Kind::Permanent("the group was dissolved"),
            ),
            // Malformed requests.
            (
                200,
                r#"{"errcode":40035,"errmsg":"缺少参数 json"}"#,
                Kind::Permanent("DingTalk got no usable JSON"),
            ),
            (
                200,
                r#"{"errcode":40035,"errmsg":"缺少参数 access_token"}"#,
                Kind::Permanent("DingTalk got no usable JSON"),
            ),
            (
                200,
                r#"{"errcode":43002,"errmsg":"需要POST请求"}"#,
                Kind::Permanent(BUG_ADVICE),
            ),
            (
                200,
                r#"{"errcode":43004,"errmsg":"无效的HTTP HEADER Content-Type"}"#,
                Kind::Permanent(BUG_ADVICE),
            ),
            (
                200,
                r#"{"errcode":400105,"errmsg":"不支持的消息类型"}"#,
                Kind::Permanent(BUG_ADVICE),
            ),
            (
                200,
                r#"{"errcode":400402,"errmsg":"description:参数 markdown --》 title 缺失，或者参数格式不正确; solution:请填充上对应参数;link:https://open.dingtalk.com/document/"}"#,
                Kind::Permanent("DingTalk says a required field"),
            ),
            (
                200,
                r#"{"errcode":400402,"errmsg":"错误描述:参数 markdown --》 title 缺失，或者参数格式不正确;解决方案:请填充上对应参数;参考链接:https://open.dingtalk.com/document/"}"#,
                Kind::Permanent("DingTalk says a required field"),
            ),
            (
                200,
                r#"{"errcode":460101,"errmsg":"message too long, exceed 20000 bytes"}"#,
                Kind::Permanent("the body is over"),
            ),
            (
                200,
                r#"{"errcode":460101,"errmsg":"description: body 大小不合法;solution:请保持大小在 20000bytes 以内;"}"#,
                Kind::Permanent("the body is over"),
            ),
            (
                200,
                r#"{"errcode":101002,"errmsg":"message is too long"}"#,
                Kind::Permanent("the body is over"),
            ),
            // Moderation.
            (
                200,
                r#"{"errcode":430101,"errmsg":"含有不安全的外链"}"#,
                Kind::Permanent("DingTalk's moderation refused a link"),
            ),
            (
                200,
                r#"{"errcode":430102,"errmsg":"含有不合适的文本"}"#,
                Kind::Permanent("DingTalk's moderation refused the text"),
            ),
            (
                200,
                r#"{"errcode":430103,"errmsg":"含有不合适的图片"}"#,
                Kind::Permanent("DingTalk's moderation refused a picture"),
            ),
            (
                200,
                r#"{"errcode":430104,"errmsg":"含有不合适的内容"}"#,
                Kind::Permanent("DingTalk's moderation refused the content"),
            ),
            // Transient.
            (
                200,
                r#"{"errcode":-1,"errmsg":"系统繁忙"}"#,
                Kind::Transient,
            ),
            (
                200,
                r#"{"errcode":-1,"errmsg":"system busy"}"#,
                Kind::Transient,
            ),
            (
                200,
                r#"{"errcode":90002,"errmsg":"调用太频繁"}"#,
                Kind::Transient,
            ),
            (
                200,
                r#"{"errcode":90030,"errmsg":"webhook over limit"}"#,
                Kind::Transient,
            ),
            (
                200,
                r#"{"errcode":123456,"errmsg":"something new"}"#,
                Kind::Transient,
            ),
            (
                200,
                r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"b8b6c1ce-5e4f-4c1e-8f8f-2f6b2d1c0a11"}"#,
                Kind::Transient,
            ),
            (200, r#"{"success":false}"#, Kind::Transient),
            (200, r#"{"errcode":null,"errmsg":"?"}"#, Kind::Transient),
            (200, r#"{"errcode":"abc"}"#, Kind::Transient),
            (200, r#"{"errcode":true}"#, Kind::Transient),
            (200, r#"[{"errcode":0}]"#, Kind::Transient),
            (200, r#""ok""#, Kind::Transient),
            (200, "", Kind::Transient),
            (200, "  \n", Kind::Transient),
            (200, r#"{"errcode":0,"errmsg":"ok""#, Kind::Transient),
            // errcode 0 without a 2xx, and 5xx with a permanent code: not trusted.
            (500, r#"{"errcode":0,"errmsg":"ok"}"#, Kind::Transient),
            (302, r#"{"errcode":0,"errmsg":"ok"}"#, Kind::Transient),
            (
                502,
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Kind::Transient,
            ),
            (503, "", Kind::Transient),
            // A 4xx that carries DingTalk's answer is classified by its errcode.
            (
                400,
                r#"{"errcode":40035,"errmsg":"缺少参数 json"}"#,
                Kind::Permanent("DingTalk got"),
            ),
        ];
        for (status, body, expected) in table {
            let outcome = classify(answer(*status, body));
            match (expected, kind(&outcome)) {
                (Kind::Permanent(want), Kind::Permanent(got)) => assert!(
                    got.starts_with(want),
                    "HTTP {status} {body}: advice {got:?}, expected {want:?}"
                ),
                (want, got) => assert_eq!(got, *want, "HTTP {status} {body}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn keeps_errcode_and_errmsg() {
        assert_eq!(
            classify(answer(
                200,
                r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#
            )),
            Verdict::Throttled {
                errcode: 130101,
                errmsg: "send too fast, exceed 20 times per minute".to_owned()
            }
        );
        let Verdict::Permanent {
            errcode, errmsg, ..
        } = classify(answer(
            200,
            r#"{"errcode":" 310000 ","errmsg":"keywords not in content"}"#,
        ))
        else {
            panic!("permanent expected");
        };
        assert_eq!(errcode, 310000);
        assert_eq!(errmsg, "keywords not in content");
        // Integral floats and a byte-order mark are tolerated.
        assert_eq!(
            classify(answer(200, "\u{feff}{\"errcode\":0.0}")),
            Verdict::Delivered
        );
    }

    #[test]
    fn transient_reasons_say_what_happened() {
        let reason = |outcome: Verdict| match outcome {
            Verdict::Transient { reason } => reason,
            other => panic!("transient expected, got {other:?}"),
        };
        let x5 = reason(classify(answer(
            200,
            r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"x"}"#,
        )));
        assert!(x5.contains("IP-level throttle"), "{x5}");
        assert!(x5.contains("wait 5"), "{x5}");
        let unknown = reason(classify(answer(200, r#"{"errcode":777,"errmsg":"new"}"#)));
        assert!(unknown.contains("unknown errcode 777: new"), "{unknown}");
        assert!(unknown.contains("maximum age"), "{unknown}");
        let html = reason(classify(typed(
            502,
            "text/html; charset=utf-8",
            "<html><body>Bad gateway for https://oapi.dingtalk.com/robot/send?access_token=SECRET</body></html>",
        )));
        assert!(html.starts_with("HTTP 502 with an HTML page"), "{html}");
        assert!(!html.contains("SECRET"), "{html}");
        // HTML without a content type, and plain text that is not JSON, are never quoted.
        let sniffed = reason(classify(Ok(HttpAnswer {
            status: 200,
            content_type: None,
            body: b"  <!DOCTYPE html><p>deny</p>".to_vec(),
        })));
        assert!(sniffed.contains("HTML page"), "{sniffed}");
        let text = reason(classify(typed(
            200,
            "text/plain",
            "proxy error: https://oapi.dingtalk.com/robot/send?access_token=SECRET",
        )));
        assert!(text.contains("not JSON (text/plain"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        let redirect = reason(classify(typed(302, "text/plain", "")));
        assert!(redirect.contains("redirect"), "{redirect}");
        let busy = reason(classify(answer(
            200,
            r#"{"errcode":-1,"errmsg":"系统繁忙"}"#,
        )));
        assert_eq!(busy, "DingTalk is busy (errcode -1: 系统繁忙)");
        let timeout = reason(classify(Err(TransportError::Timeout)));
        assert_eq!(timeout, "timed out");
        let refused = reason(classify(Err(TransportError::Connect(
            "tcp connect error: Connection refused (os error 111)".to_owned(),
        ))));
        assert!(
            refused.starts_with("connection failed: tcp connect error"),
            "{refused}"
        );
        let other = reason(classify(Err(TransportError::Other("reset".to_owned()))));
        assert_eq!(other, "request failed: reset");
    }

    #[test]
    fn errmsg_is_cleaned_and_cut() {
        let long = "很".repeat(1000);
        let body = format!(r#"{{"errcode":310000,"errmsg":"keywords not in content {long}"}}"#);
        let Verdict::Permanent { errmsg, advice, .. } = classify(answer(200, &body)) else {
            panic!("permanent expected");
        };
        assert_eq!(errmsg.chars().count(), MAX_ERRMSG_CHARS);
        assert!(errmsg.ends_with('…'));
        assert!(advice.starts_with(KEYWORD));

        let body = r#"{"errcode":300001,"errmsg":"token is not exist\n\u0000 https://oapi.dingtalk.com/robot/send?access_token=abc123&sign=xyz%3D"}"#;
        let Verdict::Permanent { errmsg, .. } = classify(answer(200, body)) else {
            panic!("permanent expected");
        };
        assert!(
            !errmsg.contains("abc123") && !errmsg.contains("xyz"),
            "{errmsg}"
        );
        assert!(!errmsg.contains('\n') && !errmsg.contains('\0'), "{errmsg}");
        assert!(errmsg.contains("access_token=***"), "{errmsg}");

        // A non-string errmsg is shown as its texts, so an escape cannot hide a secret.
        let Verdict::Transient { reason } = classify(answer(
            200,
            r#"{"errcode":5,"errmsg":[1,"two",{"x":"\u0001access_token=abc"}]}"#,
        )) else {
            panic!("transient expected");
        };
        assert!(reason.contains("1 two"), "{reason}");
        assert!(!reason.contains("abc"), "{reason}");
    }

    #[test]
    fn never_panics_on_odd_bodies() {
        let bodies: &[&[u8]] = &[
            b"\xff\xfe\x00garbage",
            b"\xEF\xBB\xBF",
            b"{\"errcode\": 99999999999999999999999}",
            b"{\"errcode\": -9223372036854775808}",
            b"{\"errcode\": 1e300}",
            b"{\"errcode\": \"\"}",
            b"{\"errcode\": {}}",
            b"null",
            b"{}",
            b"{\"errcode\":0,\"errmsg\":\"\\ud800\"}",
        ];
        for body in bodies {
            for status in [0u16, 100, 200, 301, 404, 500, 999, u16::MAX] {
                let outcome = classify(Ok(HttpAnswer {
                    status,
                    content_type: Some("\u{0}weird/\ntype".to_owned()),
                    body: body.to_vec(),
                }));
                if status != 200 {
                    assert_ne!(outcome, Verdict::Delivered);
                }
            }
        }
    }
}

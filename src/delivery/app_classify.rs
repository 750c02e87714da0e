//! What an answer of DingTalk's app robot API means (issue 14): `POST /v1.0/robot/groupMessages/send`
//! and `/v1.0/robot/oToMessages/batchSend` answer in the api family's shape, an HTTP status with
//! `{"code", "message"}` for a refusal, and `{"processQueryKey", "invalidStaffIdList",
//! "flowControlledStaffIdList"}` for a send.
//!
//! | answer | outcome |
//! |---|---|
//! | HTTP 200 with `processQueryKey` | [`AppVerdict::Sent`], with the users DingTalk reported invalid (dead-lettered for them, with the reason) and flow-controlled (retried for them) |
//! | `InvalidAuthentication` (expired or wrong token) | [`AppVerdict::TokenRefused`]: drop the token, fetch another, send again once |
//! | `send.too.fast`, `send.byToken.tooFast`, `too.many.group`, `too.many.people`, HTTP 403 `Forbidden.AccessDenied.QpsLimit*` | [`AppVerdict::Throttled`] |
//! | a known permanent code (below), with a status below 500 | [`AppVerdict::Permanent`] |
//! | HTTP 5xx, `system.error`, `unknown.send.result`, no answer, a body that is not the API's JSON, any unknown code | [`AppVerdict::Transient`] |
//!
//! Permanent codes: the request (`invalidParameter.*`, `miss.param.*`, `MissinguserIds`,
//! `miss.openConversationId`), the robot or the group (`invalidParameter.robotCode.*`,
//! `resource.not.found`, `resource.unavailable`, `invalid.openConversationId`, `group.disbanded`,
//! `bot.stopped`, `conversation.org.notMatch`, `bot.forbidden.sendMessage`), the person
//! (`staffId.notExisted`, `robot.oto.notExist`, `chatbotId.notAllow.sendOTO`), moderation
//! (`contain.*`). As for webhook robots, **an unknown code is transient**: retried until the
//! message's maximum age, never dropped on a guess. The monthly quota
//! (`Forbidden.AccessDenied.ApiCountLimitForOrg`) is transient too, with a reason saying so.
//!
//! `message` is kept for the operator as the webhook classifier keeps `errmsg`: control characters
//! removed, token-like values masked, cut to [`MAX_ERRMSG_CHARS`]. Nothing here panics.

use serde::Deserialize;

use super::classify::{MAX_ERRMSG_CHARS, clean};
use super::transport::{HttpAnswer, TransportError};

/// What to do with a message after one answer of the app robot API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppVerdict {
    /// DingTalk took it. For a one-to-one send, the users it did not reach: `invalid` ones will
    /// never be (dead-lettered for them), `flow_controlled` ones may be later (retried for them).
    Sent {
        invalid: Vec<String>,
        flow_controlled: Vec<String>,
    },
    /// The token is expired or wrong: fetch another and send again, once.
    TokenRefused,
    /// DingTalk says too fast: pause the robot, then resume.
    Throttled { code: String, message: String },
    /// Worth retrying with backoff.
    Transient { reason: String },
    /// Never going to work as it is: dead-letter with the reason and what to do.
    Permanent {
        code: String,
        message: String,
        advice: &'static str,
    },
}

/// The api family's answer, as far as it matters here.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    process_query_key: Option<String>,
    #[serde(default)]
    invalid_staff_id_list: Vec<String>,
    #[serde(default)]
    flow_controlled_staff_id_list: Vec<String>,
    code: Option<String>,
    message: Option<String>,
}

const THROTTLE_CODES: [&str; 4] = [
    "send.too.fast",
    "send.byToken.tooFast",
    "too.many.group",
    "too.many.people",
];

/// Classifies one answer of the app robot API (see the module documentation for the table).
pub fn classify_app(answer: Result<HttpAnswer, TransportError>) -> AppVerdict {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            return AppVerdict::Transient {
                reason: shown(&error.to_string()),
            };
        }
    };
    let status = answer.status;
    let Ok(parsed) = serde_json::from_slice::<Answer>(&answer.body) else {
        return AppVerdict::Transient {
            reason: format!(
                "HTTP {status} with {} bytes that are not the app API's JSON",
                answer.body.len()
            ),
        };
    };
    if (200..300).contains(&status)
        && parsed
            .process_query_key
            .as_deref()
            .is_some_and(|k| !k.is_empty())
    {
        return AppVerdict::Sent {
            invalid: parsed.invalid_staff_id_list,
            flow_controlled: parsed.flow_controlled_staff_id_list,
        };
    }
    let code = parsed.code.unwrap_or_default();
    let message = shown(parsed.message.as_deref().unwrap_or(""));
    if code == "InvalidAuthentication" {
        return AppVerdict::TokenRefused;
    }
    if THROTTLE_CODES.contains(&code.as_str())
        || code.starts_with("Forbidden.AccessDenied.QpsLimit")
    {
        return AppVerdict::Throttled { code, message };
    }
    if status < 500
        && let Some(advice) = permanent_advice(&code)
    {
        return AppVerdict::Permanent {
            code,
            message,
            advice,
        };
    }
    let what = if code.is_empty() {
        "no code".to_owned()
    } else {
        code.clone()
    };
    let quota = if code == "Forbidden.AccessDenied.ApiCountLimitForOrg" {
        " (the organisation's monthly API quota is used up; retried until the message's max_age)"
    } else {
        ""
    };
    AppVerdict::Transient {
        reason: format!("HTTP {status}, {what}: {message}{quota}"),
    }
}

/// Classifies one answer of `asyncsend_v2` (work notifications), in the old OAPI family's shape:
/// HTTP 200 with `errcode` 0 and a `task_id` is a send (DingTalk delivers asynchronously; over its
/// per-person limits it still answers 0); `errcode` 88 wraps token, permission and throttle
/// errors in `sub_code`.
///
/// | answer | verdict |
/// |---|---|
/// | errcode 0 | `Sent` |
/// | 40014, 42001, 40001 (or 88 with one as `sub_code`) | `TokenRefused` |
/// | 90018, 90002, 41046–41048 (or 88 with 90018/90002) | `Throttled` |
/// | 40056 (agent id), 33012 (user id), 41049 (content), 60011 (permission), 60020 (IP whitelist) | `Permanent` |
/// | anything else, HTTP 5xx, no answer, non-JSON | `Transient` |
pub fn classify_work_notice(answer: Result<HttpAnswer, TransportError>) -> AppVerdict {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            return AppVerdict::Transient {
                reason: shown(&error.to_string()),
            };
        }
    };
    let status = answer.status;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
        return AppVerdict::Transient {
            reason: format!(
                "HTTP {status} with {} bytes that are not DingTalk's JSON",
                answer.body.len()
            ),
        };
    };
    let errcode = value["errcode"].as_i64();
    let errmsg = shown(value["errmsg"].as_str().unwrap_or(""));
    let sub_code = value["sub_code"]
        .as_str()
        .and_then(|code| code.parse::<i64>().ok());
    let code = match (errcode, sub_code) {
        (Some(88), Some(sub)) => sub,
        (Some(code), _) => code,
        (None, _) => {
            return AppVerdict::Transient {
                reason: format!("HTTP {status} with JSON without an errcode"),
            };
        }
    };
    if code == 0 && (200..300).contains(&status) {
        return AppVerdict::Sent {
            invalid: Vec::new(),
            flow_controlled: Vec::new(),
        };
    }
    let shown_code = code.to_string();
    match code {
        40014 | 42001 | 40001 => AppVerdict::TokenRefused,
        90018 | 90002 | 41046..=41048 => AppVerdict::Throttled {
            code: shown_code,
            message: errmsg,
        },
        40056 | 33012 | 41049 | 60011 | 60020 if status < 500 => AppVerdict::Permanent {
            code: shown_code,
            message: errmsg,
            advice: match code {
                40056 => {
                    "check the app's agent_id (the AgentId in the developer console, not the AppKey)"
                }
                33012 => "check the user ids the robot sends to",
                41049 => "DingTalk's content moderation refused the message",
                60011 => "give the app the permission to send work notifications",
                _ => "add this machine's egress IP to the app's IP whitelist",
            },
        },
        _ => AppVerdict::Transient {
            reason: format!("HTTP {status}, errcode {code}: {errmsg}"),
        },
    }
}

/// What the operator should do about a permanent refusal, or `None` for a code not known to be
/// permanent.
fn permanent_advice(code: &str) -> Option<&'static str> {
    Some(match code {
        c if c.starts_with("invalidParameter.robotCode") || c == "resource.not.found" => {
            "check the robot's robot_code, and that it belongs to the app whose appKey sends"
        }
        c if c.starts_with("invalidParameter.") || c.starts_with("miss.param.") => {
            "the message is malformed for the app robot API; dingrelay's validation should have caught it: please report it"
        }
        "MissinguserIds" | "miss.openConversationId" | "invalid.openConversationId" => {
            "check the robot's conversation or user ids in rules.yaml"
        }
        "resource.unavailable"
        | "bot.stopped"
        | "group.disbanded"
        | "conversation.org.notMatch" => {
            "the robot is stopped or not in that group (or the group is gone): add it to the group again, or fix the conversation id"
        }
        "bot.forbidden.sendMessage" => "the robot is muted in the group",
        "staffId.notExisted" | "robot.oto.notExist" | "chatbotId.notAllow.sendOTO" => {
            "the person cannot get one-to-one messages from this robot: check the user id, and that the robot is enabled for one-to-one chats"
        }
        c if c.starts_with("contain.") => "DingTalk's content moderation refused the message",
        _ => return None,
    })
}

/// `text` as the operator may see it, as the webhook classifier keeps `errmsg`.
fn shown(text: &str) -> String {
    clean(text, MAX_ERRMSG_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<HttpAnswer, TransportError> {
        Ok(HttpAnswer {
            status,
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn a_send_names_the_users_it_did_not_reach() {
        assert_eq!(
            classify_app(answer(200, r#"{"processQueryKey":"pq1"}"#)),
            AppVerdict::Sent {
                invalid: vec![],
                flow_controlled: vec![]
            }
        );
        assert_eq!(
            classify_app(answer(
                200,
                r#"{"processQueryKey":"pq2","invalidStaffIdList":["ghost"],"flowControlledStaffIdList":["busy"]}"#
            )),
            AppVerdict::Sent {
                invalid: vec!["ghost".into()],
                flow_controlled: vec!["busy".into()]
            }
        );
    }

    #[test]
    fn an_expired_or_wrong_token_is_refetched() {
        assert_eq!(
            classify_app(answer(
                400,
                r#"{"code":"InvalidAuthentication","message":"不合法的access_token"}"#
            )),
            AppVerdict::TokenRefused
        );
    }

    #[test]
    fn too_fast_is_throttled() {
        for (status, code) in [
            (400, "send.too.fast"),
            (400, "send.byToken.tooFast"),
            (400, "too.many.people"),
            (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
            (403, "Forbidden.AccessDenied.QpsLimitForApi"),
        ] {
            let verdict = classify_app(answer(
                status,
                &format!(r#"{{"code":"{code}","message":"限流"}}"#),
            ));
            assert!(
                matches!(&verdict, AppVerdict::Throttled { code: c, .. } if c == code),
                "{code}: {verdict:?}"
            );
        }
    }

    #[test]
    fn known_refusals_are_permanent_with_advice() {
        for code in [
            "invalidParameter.robotCode.notExsit",
            "resource.not.found",
            "invalidParameter.msgParam.invalid",
            "miss.param.markdownTotitle",
            "invalid.openConversationId",
            "resource.unavailable",
            "staffId.notExisted",
            "chatbotId.notAllow.sendOTO",
            "contain.unsafe.url",
        ] {
            let verdict = classify_app(answer(
                400,
                &format!(r#"{{"code":"{code}","message":"错误描述"}}"#),
            ));
            assert!(
                matches!(&verdict, AppVerdict::Permanent { code: c, message, advice }
                    if c == code && message == "错误描述" && !advice.is_empty()),
                "{code}: {verdict:?}"
            );
        }
    }

    #[test]
    fn everything_else_is_retried() {
        for (status, body) in [
            (500, r#"{"code":"system.error","message":"busy"}"#),
            (400, r#"{"code":"unknown.send.result","message":"?"}"#),
            (400, r#"{"code":"a.code.added.tomorrow","message":"new"}"#),
            (
                500,
                r#"{"code":"invalidParameter.msgParam.invalid","message":"on a 5xx"}"#,
            ),
            (200, r#"{"processQueryKey":""}"#),
            (502, "<html>bad gateway</html>"),
            (200, ""),
        ] {
            let verdict = classify_app(answer(status, body));
            assert!(
                matches!(verdict, AppVerdict::Transient { .. }),
                "{status} {body}: {verdict:?}"
            );
        }
        let quota = classify_app(answer(
            403,
            r#"{"code":"Forbidden.AccessDenied.ApiCountLimitForOrg","message":"quota"}"#,
        ));
        assert!(
            matches!(&quota, AppVerdict::Transient { reason } if reason.contains("monthly API quota")),
            "{quota:?}"
        );
        assert!(matches!(
            classify_app(Err(TransportError::Timeout)),
            AppVerdict::Transient { .. }
        ));
    }

    #[test]
    fn messages_are_cleaned_for_the_operator() {
        let verdict = classify_app(answer(
            400,
            r#"{"code":"contain.notAllowed.text","message":"bad\nword at https://x/?access_token=abc123"}"#,
        ));
        let AppVerdict::Permanent { message, .. } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            !message.contains('\n') && !message.contains("abc123"),
            "{message}"
        );
    }
}

//! 免登 (`dingtalk-app-api.md` §5): one-time auth codes, as `requestAuthCode` gives a page
//! ([`MockDingTalk::issue_auth_code`](crate::MockDingTalk::issue_auth_code) or
//! `POST /_authcode?userid=U&appkey=K`), and `POST /topapi/v2/user/getuserinfo {"code"}` turning
//! one into the user. A code is valid for [`AUTH_CODE_TTL`], once, and only with a token of the
//! app it was issued for; otherwise the answer is `40078 不存在的临时授权码`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Reply;
use crate::app::{AppConfig, AppState, Call, oapi_error, oapi_reply};
use crate::token::{topapi_auth, topapi_body};

/// How long an auth code is valid.
pub const AUTH_CODE_TTL: Duration = Duration::from_secs(300);

/// `POST /topapi/v2/user/getuserinfo`.
pub(crate) fn getuserinfo_v2(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "login";
    let body = topapi_body(call);
    let app = match topapi_auth(config, st, channel, call, body.as_ref().ok()) {
        Ok(app) => app,
        Err(reply) => return reply,
    };
    let code = body
        .ok()
        .and_then(|b| b.get("code").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let issued = st.auth_codes.remove(&code);
    let user = match issued {
        Some((user, for_app, expires)) if for_app == app && call.now < expires => user,
        _ => {
            return oapi_error(
                st,
                channel,
                40078,
                "不存在的临时授权码",
                true,
                Some("unknown, used, expired or another app's code"),
            );
        }
    };
    let name = config.users.get(&user).cloned().unwrap_or_default();
    let request_id = st.request_id();
    oapi_reply(
        st,
        channel,
        json!({"errcode": 0, "errmsg": "ok", "request_id": request_id,
               "result": {"userid": user, "name": name, "sys": false, "sys_level": 0,
                          "unionid": format!("union-{user}"), "device_id": "mock-device"}}),
        true,
        None,
        &[],
        true,
    )
}

/// How long a jsapi_ticket lives (renewed by a fetch while valid, as DingTalk does).
pub const TICKET_TTL: Duration = Duration::from_secs(7200);

/// `POST /v1.0/oauth2/jsapiTickets` (header token, no body needed) → `{"jsapiTicket","expireIn"}`:
/// one ticket per app, the same while valid.
pub(crate) fn jsapi_tickets(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "ticket";
    let app = match crate::token::api_auth(config, st, channel, call) {
        Ok(app) => app,
        Err(reply) => return reply,
    };
    let ticket = match st.tickets.get(&app) {
        Some((ticket, expires)) if call.now < *expires => ticket.clone(),
        _ => st.fresh_hex("ticket", 40),
    };
    st.tickets
        .insert(app, (ticket.clone(), call.now + TICKET_TTL));
    crate::app::api_reply(
        st,
        channel,
        200,
        &json!({ "jsapiTicket": ticket, "expireIn": TICKET_TTL.as_secs() }),
        "0",
        None,
        &[],
        true,
    )
}

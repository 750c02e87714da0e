//! App access tokens (`dingtalk-app-api.md` §2): `GET /gettoken` (oapi) and
//! `POST /v1.0/oauth2/accessToken` (api) share one token per app; a fetch while it is valid
//! returns the same token and renews its lifetime, a fetch after expiry issues a new one. Also
//! the token checks of both families (§2.5) and the per-app QPS limit (§2.4).

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::Reply;
use crate::app::{
    AppConfig, AppState, Call, Token, api_error, api_reply, nonempty_str, oapi_error, oapi_reply,
    top88,
};

const QPS_MSG: &str = "当前企业应用调用该接口次数过多，请求被暂时禁用了";
const QPS_API_MSG: &str = "您的企业应用调用钉钉开放平台当前接口的所有请求都被暂时禁用了";

/// Where a token stands.
pub(crate) enum TokenState {
    Ok(String),
    Expired,
    Unknown,
}

pub(crate) fn token_state(st: &AppState, token: &str, now: Instant) -> TokenState {
    match st.tokens.get(token) {
        None => TokenState::Unknown,
        Some(t) if t.expires <= now => TokenState::Expired,
        Some(t) => TokenState::Ok(t.app.clone()),
    }
}

/// Returns the app's token (the current one renewed, or a new one) and its lifetime in s.
pub(crate) fn fetch(
    config: &AppConfig,
    st: &mut AppState,
    app: &str,
    now: Instant,
) -> (String, u64) {
    let ttl = config.token_ttl;
    let current = st.current.get(app).cloned();
    let token = match current {
        Some(tok) if st.tokens.get(&tok).is_some_and(|t| t.expires > now) => {
            if let Some(t) = st.tokens.get_mut(&tok) {
                t.expires = now + ttl;
            }
            tok
        }
        _ => {
            let tok = st.fresh_hex(app, 32);
            st.tokens.insert(
                tok.clone(),
                Token {
                    app: app.to_owned(),
                    expires: now + ttl,
                },
            );
            st.current.insert(app.to_owned(), tok.clone());
            *st.tokens_issued.entry(app.to_owned()).or_default() += 1;
            tok
        }
    };
    *st.token_fetches.entry(app.to_owned()).or_default() += 1;
    (token, ttl.as_secs())
}

/// Expires the current token of `app` (every app when `None`) now. Returns the apps touched.
pub(crate) fn expire(st: &mut AppState, app: Option<&str>, now: Instant) -> Vec<String> {
    let mut done = Vec::new();
    for (key, tok) in &st.current {
        if app.is_none_or(|a| a == key)
            && let Some(t) = st.tokens.get_mut(tok)
        {
            t.expires = now;
            done.push(key.clone());
        }
    }
    done.sort();
    done
}

fn secret_ok(config: &AppConfig, key: &str, secret: &str) -> bool {
    // Constant time over the secret's bytes.
    config.apps.get(key).is_some_and(|a| {
        let (want, given) = (a.secret.as_bytes(), secret.as_bytes());
        want.len() == given.len() && want.iter().zip(given).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    })
}

/// `GET /gettoken?appkey=&appsecret=`.
pub(crate) fn gettoken(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "token";
    let Some(key) = call.query("appkey") else {
        return oapi_error(
            st,
            channel,
            40035,
            "缺少参数 corpid or appkey",
            false,
            Some("appkey/appsecret go in the query string (a GET body is ignored)"),
        );
    };
    if !secret_ok(config, key, call.query("appsecret").unwrap_or("")) {
        return oapi_error(st, channel, 40096, "不合法的appKey或appSecret", false, None);
    }
    if st.over_qps(config.app_qps, key, "/gettoken", call.now) {
        return oapi_error(
            st,
            channel,
            90018,
            QPS_MSG,
            false,
            Some("app-qps exceeded (message text modelled)"),
        );
    }
    let (token, ttl) = fetch(config, st, key, call.now);
    oapi_reply(
        st,
        channel,
        json!({ "errcode": 0, "access_token": token, "errmsg": "ok", "expires_in": ttl }),
        false,
        None,
        &[],
        true,
    )
}

/// `POST /v1.0/oauth2/accessToken {"appKey","appSecret"}`.
pub(crate) fn access_token(config: &AppConfig, st: &mut AppState, call: &Call) -> Reply {
    let channel = "token";
    let obj = match api_json_body(st, channel, call) {
        Ok(obj) => obj,
        Err(reply) => return reply,
    };
    for field in ["appKey", "appSecret"] {
        if !nonempty_str(obj.get(field)) {
            return api_error(
                st,
                channel,
                400,
                &format!("Missing{field}"),
                &format!("{field} is mandatory for this action."),
                Some("modelled on the gateway's Missing<param> answers"),
            );
        }
    }
    let key = obj["appKey"].as_str().unwrap_or("");
    if !secret_ok(config, key, obj["appSecret"].as_str().unwrap_or("")) {
        return api_error(
            st,
            channel,
            400,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
            None,
        );
    }
    if st.over_qps(config.app_qps, key, "/v1.0/oauth2/accessToken", call.now) {
        return qps_api_error(st, channel);
    }
    let (token, ttl) = fetch(config, st, key, call.now);
    api_reply(
        st,
        channel,
        200,
        &json!({ "expireIn": ttl, "accessToken": token }),
        "0",
        None,
        &[],
        true,
    )
}

pub(crate) fn qps_api_error(st: &mut AppState, channel: &str) -> Reply {
    api_error(
        st,
        channel,
        403,
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        QPS_API_MSG,
        Some("app-qps exceeded"),
    )
}

/// The api family's body: `Content-Type: application/json` and a JSON object.
pub(crate) fn api_json_body(
    st: &mut AppState,
    channel: &str,
    call: &Call,
) -> Result<Map<String, Value>, Reply> {
    if call.content_type != "application/json" || call.body.is_empty() {
        return Err(api_error(
            st,
            channel,
            400,
            "Missingbody",
            "body is mandatory for this action.",
            Some("send Content-Type: application/json with a JSON body"),
        ));
    }
    match serde_json::from_slice::<Value>(call.body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(api_error(
            st,
            channel,
            400,
            "Invalidbody",
            "Specified parameter body is not valid. JSON parsing error",
            None,
        )),
    }
}

/// The api family's token check (header `x-acs-dingtalk-access-token` only) and the QPS limit.
/// Returns the token's appKey.
pub(crate) fn api_auth(
    config: &AppConfig,
    st: &mut AppState,
    channel: &str,
    call: &Call,
) -> Result<String, Reply> {
    let Some(token) = call.header("x-acs-dingtalk-access-token") else {
        return Err(api_error(
            st,
            channel,
            400,
            "AuthenticationFailed.MissingParameter",
            "缺少参数：x-acs-dingtalk-access-token",
            Some(
                "the token goes in header x-acs-dingtalk-access-token, not the query or Authorization",
            ),
        ));
    };
    match token_state(st, token, call.now) {
        TokenState::Ok(app) => {
            if st.over_qps(config.app_qps, &app, call.path, call.now) {
                return Err(qps_api_error(st, channel));
            }
            Ok(app)
        }
        state => {
            let detail = match state {
                TokenState::Expired => "token expired",
                _ => "token unknown",
            };
            Err(api_error(
                st,
                channel,
                400,
                "InvalidAuthentication",
                "不合法的access_token",
                Some(detail),
            ))
        }
    }
}

/// The topapi token check (`?access_token=`, or a form-body `access_token`) and the QPS
/// limit: token errors wrapped in errcode 88. Returns the token's appKey.
pub(crate) fn topapi_auth(
    config: &AppConfig,
    st: &mut AppState,
    channel: &str,
    call: &Call,
    form: Option<&Map<String, Value>>,
) -> Result<String, Reply> {
    let token = call.query("access_token").map(str::to_owned).or_else(|| {
        form.and_then(|f| f.get("access_token"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    });
    let Some(token) = token else {
        return Err(top88(
            st,
            channel,
            40000,
            "access_token is blank",
            Some("no access_token in query or form body"),
        ));
    };
    match token_state(st, &token, call.now) {
        TokenState::Ok(app) => {
            if st.over_qps(config.app_qps, &app, call.path, call.now) {
                return Err(top88(
                    st,
                    channel,
                    90018,
                    QPS_MSG,
                    Some("app-qps exceeded (message text modelled)"),
                ));
            }
            Ok(app)
        }
        TokenState::Expired if config.oapi_expired_errcode == 42001 => Err(top88(
            st,
            channel,
            42001,
            "access_token超时",
            Some("token expired"),
        )),
        state => {
            let detail = match state {
                TokenState::Expired => "token expired",
                _ => "token unknown",
            };
            Err(top88(
                st,
                channel,
                40014,
                "不合法的access_token",
                Some(detail),
            ))
        }
    }
}

/// A topapi body, JSON or form-encoded (form values are strings). `Err` is the problem.
pub(crate) fn topapi_body(call: &Call) -> Result<Map<String, Value>, &'static str> {
    if call.content_type == "application/x-www-form-urlencoded" {
        return Ok(url::form_urlencoded::parse(call.body)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    if call.body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(call.body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err("body must be a JSON object"),
        Err(_) => Err("body is neither JSON nor form-encoded"),
    }
}

//! The stand-in's app APIs (shared/reference/dingtalk-app-api.md §2–4): tokens of both families
//! with their lifetime and renewal under tokio's paused clock, the app-robot sends with the exact
//! error shapes, work notifications and their results, faults per family, and the loopback
//! control endpoints.

use std::time::Duration;

use mock_dingtalk::{Channel, Family, Fault, MockDingTalk, Reply};
use serde_json::{Value, json};
use tokio::time::advance;
use url::Url;

const KEY: &str = "dingappkey01";
const SECRET: &str = "app-secret-01";
const OTHER: &str = "dingappkey02";
const CID: &str = "cid6KeBBLoveMJOGXoYKF5x7EeiodoA==";
/// Wall time of paused tests: 2025-06-15.
const T0: i64 = 1_750_000_000_000;

fn mock() -> MockDingTalk {
    MockDingTalk::new()
        .clock(|| T0)
        .app(KEY, SECRET)
        .app(OTHER, "other-secret")
        .agent_id(KEY, 1_234_567_890)
        .user("manager1234", "Manager")
        .user("oncall42", "On call")
        .flow_controlled_user("busy7", "Busy")
        .conversation(CID, &[KEY])
        .conversation("cidOther==", &[OTHER])
}

fn url(path: &str) -> Url {
    Url::parse(&format!("https://api.dingtalk.com{path}")).expect("URL parses")
}

async fn get(mock: &MockDingTalk, target: &str) -> Reply {
    mock.request("GET", target, &[], None, b"")
        .await
        .expect("an answer")
}

async fn api(mock: &MockDingTalk, path: &str, token: Option<&str>, body: &Value) -> Reply {
    mock.post_app(&url(path), token, body)
        .await
        .expect("an answer")
}

async fn topapi(mock: &MockDingTalk, path: &str, token: Option<&str>, body: &Value) -> Reply {
    let target = match token {
        Some(t) => format!("{path}?access_token={t}"),
        None => path.to_owned(),
    };
    mock.request(
        "POST",
        &target,
        &[],
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .await
    .expect("an answer")
}

async fn new_token(mock: &MockDingTalk) -> String {
    let reply = api(
        mock,
        "/v1.0/oauth2/accessToken",
        None,
        &json!({ "appKey": KEY, "appSecret": SECRET }),
    )
    .await;
    assert_eq!(reply.answer.status, 200);
    reply.json()["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn assert_api_error(reply: &Reply, status: u16, code: &str, message: &str) {
    let body = reply.json();
    assert_eq!(reply.answer.status, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(body["requestid"].is_string(), "{body}");
    assert_eq!(
        reply.answer.content_type.as_deref(),
        Some("application/json;charset=utf-8")
    );
    assert!(reply.header("x-acs-request-id").is_some());
}

fn assert_top88(reply: &Reply, sub_code: &str, sub_msg: &str) {
    let body = reply.json();
    assert_eq!(reply.answer.status, 200);
    assert_eq!(body["errcode"], 88, "{body}");
    assert_eq!(body["sub_code"], sub_code, "{body}");
    assert_eq!(body["sub_msg"], sub_msg, "{body}");
    assert_eq!(
        body["errmsg"],
        format!("ding talk error[subcode={sub_code},submsg={sub_msg}]")
    );
    assert!(body["request_id"].is_string());
}

#[tokio::test(start_paused = true)]
async fn both_token_endpoints_share_one_token_renewed_while_valid() {
    let mock = mock();
    let old = get(&mock, &format!("/gettoken?appkey={KEY}&appsecret={SECRET}")).await;
    let body = old.json();
    assert_eq!(old.answer.content_type.as_deref(), Some("application/json"));
    assert_eq!(body["errcode"], 0);
    assert_eq!(body["errmsg"], "ok");
    assert_eq!(body["expires_in"], 7200);
    let token = body["access_token"].as_str().expect("token").to_owned();

    advance(Duration::from_secs(7000)).await;
    let reply = api(
        &mock,
        "/v1.0/oauth2/accessToken",
        None,
        &json!({ "appKey": KEY, "appSecret": SECRET }),
    )
    .await;
    assert_eq!(
        reply.json()["accessToken"],
        token.as_str(),
        "same while valid"
    );
    assert_eq!(reply.json()["expireIn"], 7200);
    // Renewed: 7000 s more is still within 7200 s of the last fetch.
    advance(Duration::from_secs(7000)).await;
    assert_eq!(mock.current_token(KEY).as_deref(), Some(token.as_str()));
    advance(Duration::from_secs(201)).await;
    assert_eq!(
        mock.current_token(KEY),
        None,
        "expired 7200 s after the fetch"
    );
    let fresh = new_token(&mock).await;
    assert_ne!(fresh, token, "a new token after expiry");
    assert_eq!(mock.token_fetches(KEY), 3);
    let stats = mock.app_stats();
    assert_eq!(stats.tokens_issued[KEY], 2);
    assert_eq!(stats.channels["token"].accepted, 3);
}

#[tokio::test(start_paused = true)]
async fn wrong_credentials_in_each_family_shape() {
    let mock = mock();
    let old = get(&mock, &format!("/gettoken?appkey={KEY}&appsecret=nope")).await;
    assert_eq!(
        old.json(),
        json!({ "errcode": 40096, "errmsg": "不合法的appKey或appSecret" })
    );
    let missing = get(&mock, "/gettoken").await;
    assert_eq!(missing.json()["errcode"], 40035);
    let new = api(
        &mock,
        "/v1.0/oauth2/accessToken",
        None,
        &json!({ "appKey": "nope", "appSecret": SECRET }),
    )
    .await;
    assert_api_error(
        &new,
        400,
        "invalidClientIdOrSecret",
        "无效的clientId或者clientSecret",
    );
    let form = mock
        .request(
            "POST",
            "/v1.0/oauth2/accessToken",
            &[],
            Some("application/x-www-form-urlencoded"),
            b"appKey=a",
        )
        .await
        .expect("answer");
    assert_api_error(
        &form,
        400,
        "Missingbody",
        "body is mandatory for this action.",
    );
    let post_gettoken = mock
        .request("POST", "/gettoken", &[], None, b"")
        .await
        .expect("answer");
    assert_eq!(post_gettoken.json()["errcode"], 43001);
    assert_eq!(mock.token_fetches(KEY), 0, "refusals are not fetches");
}

#[tokio::test(start_paused = true)]
async fn missing_wrong_and_expired_tokens_per_family() {
    let mock = mock().token_ttl(Duration::from_secs(60));
    let send = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    let path = "/v1.0/robot/groupMessages/send";
    assert_api_error(
        &api(&mock, path, None, &send).await,
        400,
        "AuthenticationFailed.MissingParameter",
        "缺少参数：x-acs-dingtalk-access-token",
    );
    assert_api_error(
        &api(&mock, path, Some("bogus"), &send).await,
        400,
        "InvalidAuthentication",
        "不合法的access_token",
    );
    let work = "/topapi/message/corpconversation/asyncsend_v2";
    let notice = json!({ "agent_id": 1_234_567_890, "userid_list": "oncall42",
                         "msg": { "msgtype": "text", "text": { "content": "hi" } } });
    assert_top88(
        &topapi(&mock, work, None, &notice).await,
        "40000",
        "access_token is blank",
    );
    assert_top88(
        &topapi(&mock, work, Some("bogus"), &notice).await,
        "40014",
        "不合法的access_token",
    );

    let token = new_token(&mock).await;
    assert_eq!(
        api(&mock, path, Some(&token), &send).await.answer.status,
        200
    );
    advance(Duration::from_secs(60)).await;
    let expired = api(&mock, path, Some(&token), &send).await;
    assert_api_error(
        &expired,
        400,
        "InvalidAuthentication",
        "不合法的access_token",
    );
    assert_eq!(expired.header("X-Mock-Detail"), Some("token expired"));
    assert_top88(
        &topapi(&mock, work, Some(&token), &notice).await,
        "40014",
        "不合法的access_token",
    );
    let strict = mock.clone().oapi_expired_errcode(42001);
    assert_top88(
        &topapi(&strict, work, Some(&token), &notice).await,
        "42001",
        "access_token超时",
    );
}

#[tokio::test(start_paused = true)]
async fn expire_tokens_now_forces_a_new_fetch() {
    let mock = mock();
    let token = new_token(&mock).await;
    assert_eq!(mock.expire_tokens(Some(KEY)), vec![KEY.to_owned()]);
    let send = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    let reply = api(&mock, "/v1.0/robot/groupMessages/send", Some(&token), &send).await;
    assert_eq!(reply.json()["code"], "InvalidAuthentication");
    let fresh = new_token(&mock).await;
    assert_ne!(fresh, token);
    assert_eq!(mock.app_stats().tokens_issued[KEY], 2);
}

#[tokio::test(start_paused = true)]
async fn group_send_accepts_and_records_with_a_process_query_key() {
    let mock = mock();
    let token = new_token(&mock).await;
    let reply = api(
        &mock,
        "/v1.0/robot/groupMessages/send",
        Some(&token),
        &json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleMarkdown",
                 "msgParam": "{\"title\":\"Disk alert\",\"text\":\"### db-3\",\"atUserIds\":[\"x\"]}" }),
    )
    .await;
    assert_eq!(reply.answer.status, 200);
    let body = reply.json();
    let pqk = body["processQueryKey"].as_str().expect("processQueryKey");
    assert!(body.get("errcode").is_none() && body.get("code").is_none());
    let messages = mock.app_messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.channel, Channel::AppRobotGroup);
    assert_eq!(m.app, KEY);
    assert_eq!(m.record["openConversationId"], CID);
    assert_eq!(m.record["msgParam"]["title"], "Disk alert");
    assert_eq!(m.record["processQueryKey"], pqk);
    assert_eq!(m.warnings, ["at_not_supported_by_api"]);
}

#[tokio::test(start_paused = true)]
async fn group_send_validation_answers() {
    let mock = mock();
    let token = new_token(&mock).await;
    let path = "/v1.0/robot/groupMessages/send";
    let base = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with("msgParam", json!({ "content": "hi" })),
            "invalidParameter.msgParam.invalid",
            "错误描述:msgParam格式不正确;解决方案:请使用json格式;",
        ),
        (
            with("msgParam", json!("not json")),
            "invalidParameter.msgParam.invalid",
            "错误描述:msgParam格式不正确;解决方案:请使用json格式;",
        ),
        (
            with("robotCode", json!("nobody")),
            "invalidParameter.robotCode.notExsit",
            "错误描述: robot 不存在；解决方案:请确认 robotCode 是否正确；",
        ),
        (
            with("robotCode", json!(OTHER)),
            "invalidParameter.robotCode.auth",
            "此应用appkey和机器人robotCode不匹配，请使用机器人应用的appkey",
        ),
        (
            with("openConversationId", json!("cidNope==")),
            "invalid.openConversationId",
            "无效的openConversationId",
        ),
        (
            with("openConversationId", json!("cidOther==")),
            "resource.unavailable",
            "资源不可用，可能是机器人已停用或会话未安装酷应用",
        ),
        (
            with("openConversationId", json!("")),
            "MissingopenConversationId",
            "openConversationId is mandatory for this action.",
        ),
        (
            with("msgParam", json!("x".repeat(15_001))),
            "invalidParameter.msgParam.tooLong",
            "消息内容太长",
        ),
    ];
    for (body, code, message) in cases {
        assert_api_error(
            &api(&mock, path, Some(&token), &body).await,
            400,
            code,
            message,
        );
    }
    let unknown = api(
        &mock,
        path,
        Some(&token),
        &with("msgKey", json!("sampleFeedCard")),
    )
    .await;
    assert_eq!(unknown.json()["code"], "invalidParameter.msgKey.invalid");
    assert!(
        unknown.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("错误描述: 不支持类型 sampleFeedCard ;")
    );
    let no_title = api(
        &mock,
        path,
        Some(&token),
        &with("msgKey", json!("sampleMarkdown")),
    )
    .await;
    assert_eq!(no_title.json()["code"], "miss.param.markdownTotitle");
    assert!(
        no_title.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("错误描述:参数 markdown --》 title 缺失，或者参数格式不正确;")
    );
    assert!(mock.app_messages().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_msg_key_catalogue() {
    let ok = [
        ("sampleText", json!({ "content": "c" })),
        ("sampleImageMsg", json!({ "photoURL": "https://p" })),
        (
            "sampleLink",
            json!({ "text": "t", "title": "t", "messageUrl": "https://m", "picUrl": "https://p" }),
        ),
        (
            "sampleActionCard",
            json!({ "title": "t", "text": "x", "singleTitle": "s", "singleURL": "https://u" }),
        ),
        (
            "sampleActionCard3",
            json!({ "title": "t", "text": "x", "actionTitle1": "a", "actionURL1": "https://1",
                    "actionTitle2": "b", "actionURL2": "https://2", "actionTitle3": "c",
                    "actionURL3": "https://3" }),
        ),
        (
            "sampleActionCard6",
            json!({ "title": "t", "text": "x", "buttonTitle1": "a", "buttonUrl1": "https://1",
                    "buttonTitle2": "b", "buttonUrl2": "https://2" }),
        ),
        ("sampleAudio", json!({ "mediaId": "m", "duration": "1000" })),
        (
            "sampleFile",
            json!({ "mediaId": "m", "fileName": "f.pdf", "fileType": "pdf" }),
        ),
        (
            "sampleVideo",
            json!({ "duration": "10", "videoMediaId": "v", "videoType": "mp4", "picMediaId": "p" }),
        ),
    ];
    for (key, param) in ok {
        let result = mock_dingtalk::check_msg_param(&json!(key), &json!(param.to_string()));
        assert_eq!(result.map(|(_, w)| w), Ok(vec![]), "{key}");
    }
    // The doc's buttonUrl1, not buttonURL1.
    let (code, _) = mock_dingtalk::check_msg_param(
        &json!("sampleActionCard6"),
        &json!(
            json!({ "title": "t", "text": "x", "buttonTitle1": "a", "buttonURL1": "https://1",
                       "buttonTitle2": "b", "buttonUrl2": "https://2" })
            .to_string()
        ),
    )
    .unwrap_err();
    assert_eq!(code, "miss.param.actionCardTobtnsToactionUrl");
    for bad in ["sampleActionCard1", "sampleActionCard7", "sampleFeedCard"] {
        let (code, _) = mock_dingtalk::check_msg_param(&json!(bad), &json!("{}")).unwrap_err();
        assert_eq!(code, "invalidParameter.msgKey.invalid", "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn group_send_rate_is_per_robot_per_group() {
    let mock = mock().app_robot_rate(2, Duration::from_secs(60)).app_qps(0);
    let token = new_token(&mock).await;
    let send = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    let path = "/v1.0/robot/groupMessages/send";
    for _ in 0..2 {
        assert_eq!(
            api(&mock, path, Some(&token), &send).await.answer.status,
            200
        );
    }
    assert_api_error(
        &api(&mock, path, Some(&token), &send).await,
        400,
        "send.too.fast",
        "限流错误",
    );
    advance(Duration::from_secs(60)).await;
    assert_eq!(
        api(&mock, path, Some(&token), &send).await.answer.status,
        200
    );
    assert_eq!(mock.app_messages().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn app_qps_is_20_per_app_per_api_per_second() {
    let mock = mock().app_robot_rate(1000, Duration::from_secs(60));
    let token = new_token(&mock).await;
    let send = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    let path = "/v1.0/robot/groupMessages/send";
    for _ in 0..20 {
        assert_eq!(
            api(&mock, path, Some(&token), &send).await.answer.status,
            200
        );
    }
    assert_api_error(
        &api(&mock, path, Some(&token), &send).await,
        403,
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "您的企业应用调用钉钉开放平台当前接口的所有请求都被暂时禁用了",
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        api(&mock, path, Some(&token), &send).await.answer.status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn batch_send_lists_invalid_and_flow_controlled_users() {
    let mock = mock().app_robot_rate(1, Duration::from_secs(60));
    let token = new_token(&mock).await;
    let path = "/v1.0/robot/oToMessages/batchSend";
    let body = |ids: Value| {
        json!({ "robotCode": KEY, "userIds": ids, "msgKey": "sampleText",
                "msgParam": "{\"content\":\"You are on call: INC-77\"}" })
    };
    let reply = api(
        &mock,
        path,
        Some(&token),
        &body(json!(["manager1234", "ghost", "busy7"])),
    )
    .await;
    assert_eq!(reply.answer.status, 200);
    let answer = reply.json();
    assert!(answer["processQueryKey"].is_string());
    assert_eq!(answer["invalidStaffIdList"], json!(["ghost"]));
    assert_eq!(answer["flowControlledStaffIdList"], json!(["busy7"]));
    // The window of one per user: manager1234 is now flow-controlled, oncall42 not.
    let again = api(
        &mock,
        path,
        Some(&token),
        &body(json!(["manager1234", "oncall42"])),
    )
    .await
    .json();
    assert_eq!(again["flowControlledStaffIdList"], json!(["manager1234"]));
    let messages = mock.app_messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].channel, Channel::AppRobotOto);
    assert_eq!(messages[0].delivered, ["manager1234"]);
    assert_eq!(messages[1].delivered, ["oncall42"]);
    assert_eq!(
        messages[0].record["msgParam"]["content"],
        "You are on call: INC-77"
    );

    assert_api_error(
        &api(&mock, path, Some(&token), &body(json!([]))).await,
        400,
        "MissinguserIds",
        "userIds is mandatory for this action.",
    );
    let many: Vec<String> = (0..21).map(|i| format!("u{i}")).collect();
    assert_api_error(
        &api(&mock, path, Some(&token), &body(json!(many))).await,
        400,
        "invalidParameter.userIds.overMax",
        "用户userId列表超过最大限制",
    );
    assert_eq!(
        api(&mock, path, Some(&token), &body(json!("manager1234")))
            .await
            .json()["code"],
        "invalidParameter.param.invalid"
    );
}

const WORK: &str = "/topapi/message/corpconversation/asyncsend_v2";
const RESULT: &str = "/topapi/message/corpconversation/getsendresult";

fn notice(users: &str, content: &str) -> Value {
    json!({ "agent_id": 1_234_567_890, "userid_list": users,
            "msg": { "msgtype": "markdown", "markdown": { "title": "Disk", "text": content } } })
}

#[tokio::test(start_paused = true)]
async fn a_work_notification_is_sent_recorded_and_its_result_read() {
    let mock = mock();
    let token = new_token(&mock).await;
    let reply = topapi(
        &mock,
        WORK,
        Some(&token),
        &notice("manager1234,ghost", "### db-3 93%"),
    )
    .await;
    assert_eq!(
        reply.answer.content_type.as_deref(),
        Some("application/json;charset=UTF-8")
    );
    let body = reply.json();
    assert_eq!(body["errcode"], 0);
    assert_eq!(body["errmsg"], "ok");
    let task_id = body["task_id"].as_i64().expect("numeric task_id");
    assert!(body["request_id"].is_string());
    let m = &mock.app_messages()[0];
    assert_eq!(m.channel, Channel::WorkNotice);
    assert_eq!(m.delivered, ["manager1234"]);
    assert_eq!(m.record["agent_id"], 1_234_567_890);

    let result = topapi(
        &mock,
        RESULT,
        Some(&token),
        &json!({ "agent_id": 1_234_567_890, "task_id": task_id }),
    )
    .await
    .json();
    assert_eq!(result["errcode"], 0);
    assert_eq!(
        result["send_result"]["invalid_user_id_list"],
        json!(["ghost"])
    );
    assert_eq!(
        result["send_result"]["unread_user_id_list"],
        json!(["manager1234"])
    );
    assert_eq!(result["send_result"]["forbidden_list"], json!([]));

    advance(Duration::from_secs(86_400)).await;
    let stale = topapi(
        &mock,
        RESULT,
        Some(&new_token(&mock).await),
        &json!({ "agent_id": 1_234_567_890, "task_id": task_id }),
    )
    .await
    .json();
    assert_eq!(stale["errcode"], 40035, "tasks live 24 h");
}

#[tokio::test(start_paused = true)]
async fn over_the_silent_limits_still_errcode_0_and_forbidden_in_the_result() {
    let mock = mock().work_daily_limit(1);
    let token = new_token(&mock).await;
    let first = topapi(&mock, WORK, Some(&token), &notice("oncall42", "one"))
        .await
        .json();
    assert_eq!(first["errcode"], 0);
    let over = topapi(&mock, WORK, Some(&token), &notice("oncall42", "two"))
        .await
        .json();
    assert_eq!(
        over["errcode"], 0,
        "over the daily limit is still a success"
    );
    let result = topapi(
        &mock,
        RESULT,
        Some(&token),
        &json!({ "agent_id": 1_234_567_890, "task_id": over["task_id"] }),
    )
    .await
    .json();
    assert_eq!(
        result["send_result"]["forbidden_list"],
        json!([{ "code": "143105", "count": 1, "userid": "oncall42" }])
    );
    assert_eq!(
        result["send_result"]["forbidden_user_id_list"],
        json!(["oncall42"])
    );

    let dup = MockDingTalk::new()
        .clock(|| T0)
        .app(KEY, SECRET)
        .user("u1", "U");
    let token = new_token(&dup).await;
    let agent = 3_000_000_001_i64;
    let same = json!({ "agent_id": agent, "userid_list": "u1",
                       "msg": { "msgtype": "text", "text": { "content": "same" } } });
    topapi(&dup, WORK, Some(&token), &same).await;
    let second = topapi(&dup, WORK, Some(&token), &same).await.json();
    assert_eq!(second["errcode"], 0);
    let result = topapi(
        &dup,
        RESULT,
        Some(&token),
        &json!({ "agent_id": agent, "task_id": second["task_id"] }),
    )
    .await
    .json();
    assert_eq!(result["send_result"]["forbidden_list"][0]["code"], "143106");
}

#[tokio::test(start_paused = true)]
async fn malformed_work_notifications() {
    let mock = mock();
    let token = new_token(&mock).await;
    let cases = [
        (
            json!({ "agent_id": 1_234_567_890, "userid_list": ["oncall42"],
                 "msg": { "msgtype": "text", "text": { "content": "x" } } }),
            40035,
        ),
        (
            json!({ "agent_id": 1_234_567_890,
                 "msg": { "msgtype": "text", "text": { "content": "x" } } }),
            40035,
        ),
        (
            json!({ "agent_id": 1_234_567_890, "userid_list": "oncall42" }),
            40035,
        ),
        (
            json!({ "agent_id": 1_234_567_890, "userid_list": "oncall42",
                 "msg": { "msgtype": "actionCard", "actionCard": { "text": "x" } } }),
            40035,
        ),
        (
            json!({ "agent_id": 1_234_567_890, "userid_list": "oncall42",
                 "msg": { "msgtype": "text", "text": { "content": "x".repeat(2100) } } }),
            40035,
        ),
        (
            json!({ "agent_id": 3_000_000_002_i64, "userid_list": "oncall42",
                 "msg": { "msgtype": "text", "text": { "content": "x" } } }),
            40056,
        ),
    ];
    for (body, code) in cases {
        let reply = topapi(&mock, WORK, Some(&token), &body).await;
        let answer = reply.json();
        assert_eq!(answer["errcode"], code, "{body}");
        assert!(reply.header("X-Mock-Detail").is_some(), "{body}");
    }
    let form = mock
        .request(
            "POST",
            WORK,
            &[],
            Some("application/x-www-form-urlencoded"),
            format!(
                "access_token={token}&agent_id=1234567890&userid_list=oncall42&msg=%7B%22msgtype%22%3A%22text%22%2C%22text%22%3A%7B%22content%22%3A%22f%22%7D%7D"
            )
            .as_bytes(),
        )
        .await
        .expect("answer");
    assert_eq!(form.json()["errcode"], 0, "a form body with its token");
    assert_eq!(mock.app_messages()[0].warnings, ["form_body"]);
    assert!(
        mock_dingtalk::check_work_msg(&json!({ "msgtype": "action_card",
        "action_card": { "markdown": "m", "single_title": "t", "single_url": "https://u" } }))
        .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn faults_hit_the_families_they_name() {
    let mock = mock().robot("tok", None, &[]);
    let token = new_token(&mock).await;
    mock.set_fault_for(&[Family::Api], Fault::Busy, Some(1));
    let send = json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                       "msgParam": "{\"content\":\"hi\"}" });
    // oapi is untouched.
    assert_eq!(
        topapi(&mock, WORK, Some(&token), &notice("oncall42", "a"))
            .await
            .json()["errcode"],
        0
    );
    assert_api_error(
        &api(&mock, "/v1.0/robot/groupMessages/send", Some(&token), &send).await,
        500,
        "system.error",
        "未知的系统错误",
    );
    assert_eq!(
        api(&mock, "/v1.0/robot/groupMessages/send", Some(&token), &send)
            .await
            .answer
            .status,
        200,
        "the count is spent"
    );
    mock.set_fault_for(&[Family::All], Fault::Http500, None);
    assert_eq!(
        topapi(&mock, WORK, Some(&token), &notice("oncall42", "b"))
            .await
            .answer
            .status,
        500
    );
    let robot = mock
        .post(
            &Url::parse("https://oapi.dingtalk.com/robot/send?access_token=tok").unwrap(),
            br#"{"msgtype":"text","text":{"content":"x"}}"#,
        )
        .await
        .expect("answer");
    assert_eq!(robot.status, 500);
    // The robot-only default leaves the app APIs alone.
    mock.set_fault(Fault::Reset, None);
    assert_eq!(new_token(&mock).await, token);
}

#[tokio::test]
async fn the_loopback_face_serves_and_reports_the_app_apis() {
    let mock = mock().robot("tok", None, &[]);
    let (addr, server) = mock.clone().serve().await;
    let client = reqwest_free::Client::new(addr);
    let token = client
        .send(
            "GET",
            &format!("/gettoken?appkey={KEY}&appsecret={SECRET}"),
            None,
            "",
        )
        .await;
    let token = token.1["access_token"].as_str().unwrap().to_owned();
    let (head, body) = client
        .send(
            "POST",
            "/v1.0/robot/groupMessages/send",
            Some(&token),
            &json!({ "robotCode": KEY, "openConversationId": CID, "msgKey": "sampleText",
                     "msgParam": "{\"content\":\"over loopback\"}" })
            .to_string(),
        )
        .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-acs-request-id:"),
        "{head}"
    );
    assert!(body["processQueryKey"].is_string());
    let (_, work) = client
        .send(
            "POST",
            &format!("{WORK}?access_token={token}"),
            None,
            &notice("oncall42", "loop").to_string(),
        )
        .await;
    assert_eq!(work["errcode"], 0);

    let (_, group) = client
        .send("GET", "/_messages?channel=app_robot_group", None, "")
        .await;
    assert_eq!(group["messages"].as_array().unwrap().len(), 1);
    assert_eq!(group["messages"][0]["msgParam"]["content"], "over loopback");
    let (_, all) = client.send("GET", "/_messages", None, "").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);
    let (_, robot) = client
        .send("GET", "/_messages?channel=robot", None, "")
        .await;
    assert_eq!(robot["messages"], json!([]));
    let (_, stats) = client.send("GET", "/_stats", None, "").await;
    assert_eq!(stats["token_fetches"][KEY], 1);
    assert_eq!(stats["channels"]["app_robot_group"]["accepted"], 1);
    assert_eq!(stats["channels"]["work_notice"]["by_code"]["0"], 1);

    let (_, expired) = client
        .send("POST", &format!("/_expire?appkey={KEY}"), None, "")
        .await;
    assert_eq!(expired["expired"], json!([KEY]));
    let (_, refused) = client
        .send(
            "POST",
            &format!("{WORK}?access_token={token}"),
            None,
            &notice("oncall42", "late").to_string(),
        )
        .await;
    assert_eq!(refused["errcode"], 88);
    let (_, fault) = client
        .send(
            "POST",
            "/_fault",
            None,
            r#"{"mode":"busy","count":1,"channels":["oapi"]}"#,
        )
        .await;
    assert_eq!(fault["ok"], true);
    let (_, busy) = client
        .send(
            "GET",
            &format!("/gettoken?appkey={KEY}&appsecret={SECRET}"),
            None,
            "",
        )
        .await;
    assert_eq!(busy["errcode"], -1);
    let (_, unknown) = client.send("POST", "/v1.0/robot/nothing", None, "{}").await;
    assert_eq!(
        unknown,
        json!({ "errcode": 404, "errmsg": "请求的URI地址不存在" })
    );
    client.send("POST", "/_reset", None, "").await;
    let (_, stats) = client.send("GET", "/_stats", None, "").await;
    assert_eq!(stats["token_fetches"], json!({}));
    assert!(mock.app_messages().is_empty());
    server.abort();
}

/// A minimal HTTP/1.1 client over a tokio socket (the crate has no HTTP client dependency).
mod reqwest_free {
    use std::net::SocketAddr;

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Client(SocketAddr);

    impl Client {
        pub fn new(addr: SocketAddr) -> Client {
            Client(addr)
        }

        /// (status line and headers, JSON body).
        pub async fn send(
            &self,
            method: &str,
            target: &str,
            token: Option<&str>,
            body: &str,
        ) -> (String, Value) {
            let mut stream = TcpStream::connect(self.0).await.expect("connects");
            let token = token
                .map(|t| format!("x-acs-dingtalk-access-token: {t}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{token}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.0,
                body.len()
            );
            stream.write_all(request.as_bytes()).await.expect("writes");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("reads");
            let text = String::from_utf8_lossy(&raw).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            (
                head.to_owned(),
                serde_json::from_str(body).unwrap_or(Value::Null),
            )
        }
    }
}

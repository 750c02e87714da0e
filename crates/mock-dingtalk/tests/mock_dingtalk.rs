//! The DingTalk stand-in the end-to-end tests rely on: each check it makes, its rate limit and ban
//! under tokio's paused clock, `msgUuid` dedupe, every fault, and both faces (in-process and an
//! HTTP server on loopback) giving the same answers. The client side (加签, a wall clock on tokio's
//! time) is written here, independently of the stand-in's own checks and of dingrelay.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use mock_dingtalk::{
    Answer, Dropped, ErrmsgEra, Fault, MAX_BODY, MockDingTalk, SKEW_MS, system_ms, webhook_url,
};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, advance};
use url::Url;

/// Wall time at the start of paused tests: 2025-06-15.
const T0: i64 = 1_750_000_000_000;
/// The published test vector (CatchZeng/dingtalk security_test.go).
const PUBLISHED_SECRET: &str =
    "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
const PUBLISHED_TS: i64 = 1_582_163_555_000;
const PUBLISHED_SIGN_ENCODED: &str = "BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D";

const SECRET: &str = "SECthis-is-the-robot-secret";
const KEYWORD: &str = "告警";

/// Robots: `signed` (加签), `kw` (keyword 告警), `plain` (neither), `both` (加签 and keyword).
fn mock_with(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> MockDingTalk {
    MockDingTalk::new()
        .clock(now_ms)
        .robot("signed", Some(SECRET), &[])
        .robot("kw", None, &[KEYWORD])
        .robot("plain", None, &[])
        .robot("both", Some(SECRET), &[KEYWORD, "发布"])
}

/// A client's wall clock on tokio's time, as clients under test keep it: the wall time at a tokio
/// instant plus the tokio time since (so it follows `tokio::time::pause` and `advance`).
#[derive(Clone, Copy)]
struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    fn starting_at(ms: i64) -> Clock {
        Clock {
            base_ms: ms,
            base: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }
}

/// The raw 加签 signature: base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")).
fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `webhook` with `timestamp` and `sign` appended, the signature URL-encoded once.
fn signed_url(webhook: &Url, secret: &str, timestamp_ms: i64) -> Url {
    let mut url = webhook.clone();
    url.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign(secret, timestamp_ms));
    url
}

/// A mock on the same wall clock as a client's [`Clock`] started at [`T0`] (paused tests).
fn paused_mock() -> (MockDingTalk, Clock) {
    let clock = Clock::starting_at(T0);
    (mock_with(move || clock.now_ms()), clock)
}

fn url(token: &str) -> Url {
    Url::parse(&webhook_url("https://oapi.dingtalk.com", token)).expect("webhook URL parses")
}

fn signed(token: &str, secret: &str, timestamp_ms: i64) -> Url {
    signed_url(&url(token), secret, timestamp_ms)
}

/// `url` with its raw query replaced.
fn with_query(query: &str) -> Url {
    Url::parse(&format!("https://oapi.dingtalk.com/robot/send?{query}")).expect("URL parses")
}

fn text(content: &str) -> Value {
    json!({ "msgtype": "text", "text": { "content": content } })
}

/// Posts through the in-process face and returns the errcode answer.
async fn post_bytes(mock: &MockDingTalk, url: &Url, body: Vec<u8>) -> Value {
    let answer = mock.post(url, &body).await.expect("an HTTP answer");
    assert_eq!(answer.status, 200, "business errors are HTTP 200");
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    serde_json::from_slice(&answer.body).expect("a JSON answer")
}

async fn post(mock: &MockDingTalk, url: &Url, body: &Value) -> Value {
    post_bytes(mock, url, body.to_string().into_bytes()).await
}

fn errcode(answer: &Value) -> i64 {
    answer["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode in {answer}"))
}

fn errmsg(answer: &Value) -> &str {
    answer["errmsg"].as_str().unwrap_or("")
}

#[track_caller]
fn assert_ok(answer: &Value) {
    assert_eq!(answer, &json!({ "errcode": 0, "errmsg": "ok" }));
}

#[track_caller]
fn assert_refused(answer: &Value, code: i64, errmsg_part: &str) {
    assert_eq!(errcode(answer), code, "{answer}");
    assert!(
        errmsg(answer).contains(errmsg_part),
        "errmsg of {answer} should contain {errmsg_part:?}"
    );
}

// ---- 加签 ------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_signed_request_is_accepted_and_recorded() {
    let (mock, clock) = paused_mock();
    let started = Instant::now();
    let body = text("disk full on db-3");
    assert_ok(&post(&mock, &signed("signed", SECRET, clock.now_ms()), &body).await);

    let messages = mock.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].robot, "signed");
    assert_eq!(messages[0].body, body);
    assert_eq!(messages[0].at, started);
    assert_eq!(messages[0].at_ms, T0);
    assert!(messages[0].warnings.is_empty());
    let stats = mock.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.by_errcode.get(&0), Some(&1));
    assert_eq!(stats.max_in_window, 1);
}

#[tokio::test]
async fn the_published_vector_is_accepted_by_the_mock_own_hmac() {
    // Independent of any signer: a hand-written query with the published signature.
    let mock = MockDingTalk::new()
        .clock(|| PUBLISHED_TS)
        .robot("abc", Some(PUBLISHED_SECRET), &[]);
    let good = format!("access_token=abc&timestamp={PUBLISHED_TS}&sign={PUBLISHED_SIGN_ENCODED}");
    assert_ok(&post(&mock, &with_query(&good), &text("x")).await);
    // Order of the parameters is irrelevant.
    let reordered =
        format!("sign={PUBLISHED_SIGN_ENCODED}&timestamp={PUBLISHED_TS}&access_token=abc");
    assert_ok(&post(&mock, &with_query(&reordered), &text("x")).await);

    // Double-encoded, or `+` left raw (a form decoder reads it as a space): not the signature.
    let double = good.replace("%2B", "%252B");
    assert_refused(
        &post(&mock, &with_query(&double), &text("x")).await,
        310000,
        "签名不匹配",
    );
    let raw_plus = good.replace("%2B", "+");
    assert_refused(
        &post(&mock, &with_query(&raw_plus), &text("x")).await,
        310000,
        "签名不匹配",
    );
    assert_eq!(mock.stats().accepted, 2);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_or_missing_sign_is_310000_sign_not_match() {
    let (mock, clock) = paused_mock();
    let now = clock.now_ms();
    for bad in [
        signed("signed", "SECsomething-else", now),
        url("signed"),
        with_query(&format!("access_token=signed&timestamp={now}")),
        with_query(&format!(
            "access_token=signed&sign={}",
            url::form_urlencoded::byte_serialize(sign(SECRET, now).as_bytes()).collect::<String>()
        )),
        with_query(&format!("access_token=signed&timestamp={now}&sign=")),
        with_query(&format!(
            "access_token=signed&timestamp={now}&sign=not-base64!"
        )),
        // The signature of another timestamp.
        with_query(&format!(
            "access_token=signed&timestamp={now}&sign={}",
            url::form_urlencoded::byte_serialize(sign(SECRET, now - 1).as_bytes())
                .collect::<String>()
        )),
    ] {
        assert_refused(&post(&mock, &bad, &text("x")).await, 310000, "签名不匹配");
    }
    assert_eq!(mock.stats().accepted, 0);
    assert_eq!(mock.stats().by_errcode.get(&310000), Some(&7));

    // The English era words it as DingTalk did before 2022.
    let en = mock.clone().errmsg_era(ErrmsgEra::En);
    let answer = post(&en, &signed("signed", "SECother", now), &text("x")).await;
    assert_eq!(
        answer,
        json!({ "errcode": 310000, "errmsg": "sign not match" })
    );
    let desc = mock.errmsg_era(ErrmsgEra::Desc);
    let answer = post(&desc, &signed("signed", "SECother", now), &text("x")).await;
    assert_refused(&answer, 310000, "description:机器人发送签名不匹配");
}

#[tokio::test(start_paused = true)]
async fn a_stale_timestamp_is_310000_on_the_shared_clock() {
    let (mock, clock) = paused_mock();
    let now = clock.now_ms();
    for stale in [now - SKEW_MS - 1, now + SKEW_MS + 1, now / 1000] {
        assert_refused(
            &post(&mock, &signed("signed", SECRET, stale), &text("x")).await,
            310000,
            "签名过期",
        );
    }
    let unparsable = with_query("access_token=signed&timestamp=soon&sign=abc");
    assert_refused(&post(&mock, &unparsable, &text("x")).await, 310000, "过期");
    for fresh in [now - SKEW_MS, now + SKEW_MS] {
        assert_ok(&post(&mock, &signed("signed", SECRET, fresh), &text("x")).await);
    }

    // The mock follows tokio's clock like the client's `Clock`: a URL signed now is good for an
    // hour of paused time, and stale one millisecond later.
    let url = signed("signed", SECRET, clock.now_ms());
    advance(Duration::from_secs(3600)).await;
    assert_ok(&post(&mock, &url, &text("x")).await);
    advance(Duration::from_millis(1)).await;
    let answer = post(&mock, &url, &text("x")).await;
    assert_refused(&answer, 310000, "签名过期");
    let en = mock.errmsg_era(ErrmsgEra::En);
    assert_refused(
        &post(&en, &url, &text("x")).await,
        310000,
        "invalid timestamp",
    );
}

#[tokio::test(start_paused = true)]
async fn a_robot_without_secret_ignores_sign_parameters() {
    let (mock, _) = paused_mock();
    let url = with_query("access_token=plain&timestamp=1&sign=whatever");
    assert_ok(&post(&mock, &url, &text("x")).await);
}

// ---- tokens, keywords, content type, method ----------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unknown_or_missing_tokens_are_refused() {
    let (mock, _) = paused_mock();
    assert_eq!(
        post(&mock, &url("nobody"), &text("x")).await,
        json!({ "errcode": 300001, "errmsg": "token is not exist" })
    );
    for query in ["", "access_token=", "token=plain", "access_token=&x=1"] {
        assert_eq!(
            post(&mock, &with_query(query), &text("x")).await,
            json!({ "errcode": 40035, "errmsg": "缺少参数 access_token" }),
            "{query}"
        );
    }
    let newer = mock.unknown_token_code(300005);
    assert_eq!(
        errcode(&post(&newer, &url("nobody"), &text("x")).await),
        300005
    );

    // Tokens are decoded once, like any server would.
    let odd = MockDingTalk::new().robot("a/b+c d", None, &[]);
    let url = Url::parse(&webhook_url("127.0.0.1:1", "a/b+c d")).expect("URL parses");
    assert!(url.as_str().contains("access_token=a%2Fb%2Bc+d"), "{url}");
    assert_ok(&post(&odd, &url, &text("x")).await);
}

#[tokio::test(start_paused = true)]
async fn a_missing_keyword_is_310000() {
    let (mock, clock) = paused_mock();
    let refused = post(&mock, &url("kw"), &text("disk full")).await;
    assert_eq!(
        refused,
        json!({ "errcode": 310000, "errmsg": "错误描述:关键词不匹配;解决方案:请联系群管理员查看此机器人的关键词，并在发送的信息中包含此关键词;" })
    );
    // Only the msgtype object is scanned: a keyword in `at` does not count.
    let in_at = json!({ "msgtype": "text", "text": { "content": "disk full" },
                        "at": { "atUserIds": [KEYWORD] } });
    assert_refused(&post(&mock, &url("kw"), &in_at).await, 310000, "关键词");

    // Any string of the msgtype object does: content, a title, a button title.
    assert_ok(&post(&mock, &url("kw"), &text("【告警】disk full")).await);
    let in_title = json!({ "msgtype": "markdown",
                           "markdown": { "title": "告警 db-3", "text": "disk full" } });
    assert_ok(&post(&mock, &url("kw"), &in_title).await);
    let in_button = json!({ "msgtype": "actionCard", "actionCard": {
        "title": "t", "text": "t",
        "btns": [{ "title": "查看告警", "actionURL": "https://example.com" }] } });
    assert_ok(&post(&mock, &url("kw"), &in_button).await);

    // Signed and with keywords: both must hold, any one keyword is enough.
    let both = signed("both", SECRET, clock.now_ms());
    assert_refused(
        &post(&mock, &both, &text("nothing")).await,
        310000,
        "关键词",
    );
    assert_ok(&post(&mock, &both, &text("v2 发布")).await);
    assert_eq!(mock.stats().accepted, 4);
    assert_eq!(
        mock.errmsg_era(ErrmsgEra::En)
            .handle(
                "POST",
                "/robot/send?access_token=kw",
                Some("application/json"),
                text("x").to_string().as_bytes()
            )
            .await
            .map(|a| a.body),
        Ok(br#"{"errcode":310000,"errmsg":"keywords not in content"}"#.to_vec())
    );
}

async fn raw(mock: &MockDingTalk, method: &str, target: &str, ct: Option<&str>) -> Value {
    let answer = mock
        .handle(method, target, ct, text("x").to_string().as_bytes())
        .await
        .expect("an answer");
    serde_json::from_slice(&answer.body).expect("JSON")
}

#[tokio::test(start_paused = true)]
async fn content_type_and_method_are_checked() {
    let (mock, _) = paused_mock();
    let target = "/robot/send?access_token=plain";
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        assert_eq!(
            raw(&mock, "POST", target, ct).await,
            json!({ "errcode": 43004, "errmsg": "无效的HTTP HEADER Content-Type" }),
            "{ct:?}"
        );
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        assert_ok(&raw(&mock, "POST", target, Some(ct)).await);
    }
    for method in ["GET", "PUT"] {
        assert_eq!(
            raw(&mock, method, target, Some("application/json")).await,
            json!({ "errcode": 43002, "errmsg": "需要POST请求" })
        );
    }
    let elsewhere = mock
        .handle("POST", "/robot/other?access_token=plain", None, b"{}")
        .await
        .expect("an answer");
    assert_eq!(elsewhere.status, 404);
    assert_eq!(mock.stats().accepted, 3);
}

// ---- the message -------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn every_message_type_in_dingtalk_casing_is_accepted() {
    let (mock, _) = paused_mock();
    let valid = [
        json!({ "msgtype": "text", "text": { "content": "build failed @13800001111" },
                "at": { "atMobiles": ["13800001111"], "isAtAll": false } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t",
                "messageUrl": "https://example.com", "picUrl": "https://example.com/p.png" } }),
        json!({ "msgtype": "markdown", "markdown": { "title": "t", "text": "### t" } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t",
                "singleTitle": "Open", "singleURL": "https://example.com", "btnOrientation": "0" } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t",
                "btns": [{ "title": "A", "actionURL": "dingtalk://dingtalkclient/page/link?url=x" }] } }),
        json!({ "msgtype": "feedCard", "feedCard": { "links": [{ "title": "t",
                "messageURL": "https://example.com", "picURL": "https://example.com/p.png" }] } }),
    ];
    for body in &valid {
        assert_ok(&post(&mock, &url("plain"), body).await);
    }
    let messages = mock.messages();
    assert_eq!(messages.len(), valid.len());
    for (message, body) in messages.iter().zip(&valid) {
        assert_eq!(&message.body, body);
        assert!(message.warnings.is_empty(), "{:?}", message.warnings);
    }
}

#[tokio::test(start_paused = true)]
async fn missing_required_fields_are_400402_naming_the_field() {
    let (mock, _) = paused_mock();
    let cases = [
        (
            json!({ "msgtype": "markdown", "markdown": { "text": "x" } }),
            "markdown --》 title",
        ),
        (
            json!({ "msgtype": "markdown", "markdown": { "title": "  ", "text": "x" } }),
            "markdown --》 title",
        ),
        (
            json!({ "msgtype": "markdown", "markdown": { "title": "t" } }),
            "markdown --》 text",
        ),
        (
            json!({ "msgtype": "text", "text": { "content": "" } }),
            "text --》 content",
        ),
        (
            json!({ "msgtype": "text", "text": { "Content": "x" } }),
            "text --》 content",
        ),
        (json!({ "msgtype": "text" }), "参数 text 缺失"),
        (
            json!({ "msgtype": "link", "link": { "title": "t", "text": "t",
                 "messageURL": "https://example.com" } }),
            "link --》 messageUrl",
        ),
        (
            json!({ "msgtype": "link", "link": { "title": "t", "text": "t",
                 "messageUrl": "https://example.com", "picUrl": 5 } }),
            "link --》 picUrl",
        ),
        (
            json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t" } }),
            "actionCard --》 btns",
        ),
        (
            json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t",
                 "singleTitle": "Open", "singleUrl": "https://example.com" } }),
            "actionCard --》 btns",
        ),
        (
            json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t",
                 "btns": [{ "title": "A", "actionUrl": "https://example.com" }] } }),
            "actionCard --》 btns",
        ),
        (
            json!({ "msgtype": "feedCard", "feedCard": { "links": [] } }),
            "feedCard --》 links",
        ),
        (
            json!({ "msgtype": "feedCard", "feedCard": { "links": [{ "title": "t",
                 "messageURL": "https://example.com", "picUrl": "https://example.com/p.png" }] } }),
            "feedCard --》 links.picURL",
        ),
    ];
    for (body, field) in &cases {
        assert_refused(&post(&mock, &url("plain"), body).await, 400402, field);
    }
    for body in [
        json!({ "msgtype": "action_card", "action_card": { "title": "t", "text": "t" } }),
        json!({ "msgtype": "image", "image": { "picURL": "https://example.com/p.png" } }),
        json!({ "text": { "content": "x" } }),
    ] {
        assert_eq!(
            post(&mock, &url("plain"), &body).await,
            json!({ "errcode": 400105, "errmsg": "不支持的消息类型" })
        );
    }
    for body in [&b"{not json"[..], b"[1,2]", b"", b"\"text\""] {
        assert_eq!(
            post_bytes(&mock, &url("plain"), body.to_vec()).await,
            json!({ "errcode": 40035, "errmsg": "缺少参数 json" })
        );
    }
    assert_eq!(mock.stats().accepted, 0);
}

#[tokio::test(start_paused = true)]
async fn bodies_over_20000_bytes_are_460101() {
    let (mock, _) = paused_mock();
    let empty = text("").to_string().len();
    // Byte count, not characters: 告 is three bytes in UTF-8.
    let fill = |extra: usize| {
        let content = format!("告{}", "x".repeat(MAX_BODY - empty - 3 + extra));
        text(&content).to_string().into_bytes()
    };
    assert_eq!(fill(0).len(), MAX_BODY);
    assert_ok(&post_bytes(&mock, &url("plain"), fill(0)).await);
    assert_eq!(
        post_bytes(&mock, &url("plain"), fill(1)).await,
        json!({ "errcode": 460101, "errmsg": "message too long, exceed 20000 bytes" })
    );
    // The size is checked before the JSON.
    let junk = vec![b'{'; MAX_BODY + 1];
    assert_eq!(
        errcode(&post_bytes(&mock, &url("plain"), junk).await),
        460101
    );
}

#[tokio::test(start_paused = true)]
async fn accepted_messages_carry_the_python_tool_warnings() {
    let (mock, _) = paused_mock();
    let cases = [
        (
            json!({ "msgtype": "text", "text": { "content": "disk full" },
                 "at": { "atMobiles": ["13800001111"] } }),
            vec!["mention_not_in_content"],
        ),
        (
            json!({ "msgtype": "markdown", "markdown": { "title": "t", "text": "x @manager01" },
                 "at": { "atUserIds": ["manager01"] } }),
            vec![],
        ),
        (
            json!({ "msgtype": "link", "link": { "title": "t", "text": "t",
                 "messageUrl": "https://example.com" }, "at": { "isAtAll": true } }),
            vec!["at_ignored_for_type"],
        ),
        (
            json!({ "msgtype": "link", "link": { "title": "t", "text": "t",
                 "messageUrl": "example.com/x" } }),
            vec!["url_scheme"],
        ),
        (
            json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t",
                 "singleTitle": "Open", "singleURL": "https://example.com", "btnOrientation": 1,
                 "btns": [{ "title": "A", "actionURL": "https://example.com" }] } }),
            vec![
                "btns_ignored_with_single",
                "btnOrientation_not_0_or_1_string",
            ],
        ),
        (
            json!({ "msgtype": "text", "text": { "content": "x" }, "at": "13800001111" }),
            vec!["at_not_object"],
        ),
    ];
    for (body, _) in &cases {
        assert_ok(&post(&mock, &url("plain"), body).await);
    }
    let messages = mock.messages();
    for (message, (_, warnings)) in messages.iter().zip(&cases) {
        assert_eq!(&message.warnings, warnings, "{}", message.body);
    }
    let stats = mock.stats();
    assert_eq!(stats.warnings.get("mention_not_in_content"), Some(&1));
    assert_eq!(stats.warnings.get("url_scheme"), Some(&1));
    assert_eq!(stats.accepted, cases.len());
}

#[tokio::test(start_paused = true)]
async fn a_repeated_msg_uuid_answers_ok_and_is_recorded_once() {
    let (mock, _) = paused_mock();
    let first = json!({ "msgtype": "text", "text": { "content": "one" }, "msgUuid": "outbox-1" });
    let again =
        json!({ "msgtype": "text", "text": { "content": "one, retried" }, "msgUuid": "outbox-1" });
    let other = json!({ "msgtype": "text", "text": { "content": "two" }, "msgUuid": "outbox-2" });
    assert_ok(&post(&mock, &url("plain"), &first).await);
    assert_ok(&post(&mock, &url("plain"), &again).await);
    assert_ok(&post(&mock, &url("plain"), &other).await);
    // The key is per robot.
    assert_ok(
        &post(
            &mock,
            &url("kw"),
            &json!({ "msgtype": "text",
        "text": { "content": "告警" }, "msgUuid": "outbox-1" }),
        )
        .await,
    );

    let bodies: Vec<Value> = mock.messages().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0], first);
    assert_eq!(bodies[1], other);
    let stats = mock.stats();
    assert_eq!(
        (stats.requests, stats.accepted, stats.duplicates),
        (4, 3, 1)
    );
    assert_eq!(stats.by_errcode.get(&0), Some(&4));

    // reset() forgets the keys too.
    mock.reset();
    assert_ok(&post(&mock, &url("plain"), &again).await);
    assert_eq!(mock.messages().len(), 1);
    assert_eq!(mock.stats().duplicates, 0);
}

// ---- the rate ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_21st_message_in_60s_is_throttled_and_the_ban_lasts_600s() {
    let (mock, clock) = paused_mock();
    let url = signed("signed", SECRET, clock.now_ms());
    for i in 0..20 {
        assert_ok(&post(&mock, &url, &text(&format!("#{i}"))).await);
        advance(Duration::from_secs(1)).await;
    }
    // t = 20 s: the 21st inside the window.
    assert_eq!(
        post(&mock, &url, &text("#20")).await,
        json!({ "errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute" })
    );
    assert_eq!(mock.banned_for("signed"), Some(Duration::from_secs(600)));
    // Another robot is not affected.
    assert_ok(&post(&mock, &self::url("plain"), &text("x")).await);

    // Still blocked after 599 s, and asking does not extend the ban.
    advance(Duration::from_secs(599)).await;
    let fresh = signed("signed", SECRET, clock.now_ms());
    assert_eq!(errcode(&post(&mock, &fresh, &text("#21")).await), 130101);
    assert_eq!(mock.banned_for("signed"), Some(Duration::from_secs(1)));
    advance(Duration::from_secs(2)).await;
    assert_eq!(mock.banned_for("signed"), None);
    assert_ok(&post(&mock, &fresh, &text("#22")).await);

    let stats = mock.stats();
    assert_eq!(stats.throttled, 2);
    assert_eq!(stats.by_errcode.get(&130101), Some(&2));
    assert_eq!(stats.accepted, 22);
    assert_eq!(stats.max_in_window_by_robot.get("signed"), Some(&21));
    assert_eq!(
        stats.max_in_window, 21,
        "over the limit: 20 accepted + the refused one"
    );
    let signed_texts: Vec<Value> = mock
        .messages()
        .into_iter()
        .filter(|m| m.robot == "signed")
        .map(|m| m.body["text"]["content"].clone())
        .collect();
    let expected: Vec<Value> = (0..20)
        .chain([22])
        .map(|i| json!(format!("#{i}")))
        .collect();
    assert_eq!(signed_texts, expected, "refused messages are not recorded");
}

#[tokio::test(start_paused = true)]
async fn the_window_slides() {
    let (mock, _) = paused_mock();
    // 20 at once, then 20 more exactly a window later: never over.
    for _ in 0..20 {
        assert_ok(&post(&mock, &url("plain"), &text("x")).await);
    }
    advance(Duration::from_secs(60)).await;
    for _ in 0..20 {
        assert_ok(&post(&mock, &url("plain"), &text("x")).await);
    }
    assert_eq!(mock.stats().max_in_window, 20);
    assert_eq!(mock.stats().throttled, 0);

    // Not a fixed minute: 10 at 0 s, 10 at 30 s, 10 at 60 s are fine (the first 10 have left the
    // window), but one more at 60 s makes 21 within (0 s, 60 s].
    mock.reset();
    for step in 0..3 {
        if step > 0 {
            advance(Duration::from_secs(30)).await;
        }
        for _ in 0..10 {
            assert_ok(&post(&mock, &url("plain"), &text("x")).await);
        }
    }
    assert_eq!(
        errcode(&post(&mock, &url("plain"), &text("x")).await),
        130101
    );
    assert_eq!(mock.stats().max_in_window, 21);
}

#[tokio::test(start_paused = true)]
async fn rate_window_ban_and_throttle_code_are_options() {
    let (mock, _) = paused_mock();
    let mock = mock
        .rate(3)
        .window(Duration::from_secs(10))
        .ban(Duration::from_secs(30))
        .throttle_code(410100);
    for _ in 0..3 {
        assert_ok(&post(&mock, &url("plain"), &text("x")).await);
    }
    assert_eq!(
        post(&mock, &url("plain"), &text("x")).await,
        json!({ "errcode": 410100, "errmsg": "发送速度太快而限流" })
    );
    advance(Duration::from_secs(29)).await;
    assert_eq!(
        errcode(&post(&mock, &url("plain"), &text("x")).await),
        410100
    );
    advance(Duration::from_secs(1)).await;
    assert_ok(&post(&mock, &url("plain"), &text("x")).await);
}

#[tokio::test(start_paused = true)]
async fn reset_forgets_messages_counters_and_bans() {
    let (mock, _) = paused_mock();
    let mock = mock.rate(1);
    assert_ok(&post(&mock, &url("plain"), &text("x")).await);
    assert_eq!(
        errcode(&post(&mock, &url("plain"), &text("x")).await),
        130101
    );
    mock.set_fault(Fault::Busy, None);
    mock.reset();
    assert_eq!(mock.stats(), Default::default());
    assert!(mock.messages().is_empty());
    assert_eq!(mock.banned_for("plain"), None);
    assert_ok(&post(&mock, &url("plain"), &text("x")).await);
}

// ---- faults ------------------------------------------------------------------------------------

async fn answer(mock: &MockDingTalk) -> Result<Answer, Dropped> {
    mock.post(&url("plain"), text("x").to_string().as_bytes())
        .await
}

#[tokio::test(start_paused = true)]
async fn each_fault_answers_what_dingtalk_or_its_edge_would() {
    let (mock, _) = paused_mock();
    let cases: [(Fault, u16, &str, &[u8]); 5] = [
        (Fault::Http500, 500, "text/plain", b"Internal Server Error"),
        (
            Fault::Html,
            200,
            "text/html",
            b"<html><body>busy</body></html>",
        ),
        (
            Fault::Busy,
            200,
            "application/json",
            r#"{"errcode":-1,"errmsg":"系统繁忙"}"#.as_bytes(),
        ),
        (
            Fault::ErrCode(400102),
            200,
            "application/json",
            r#"{"errcode":400102,"errmsg":"机器人已停用"}"#.as_bytes(),
        ),
        (
            Fault::ErrCode(130101),
            200,
            "application/json",
            br#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
        ),
    ];
    for (fault, status, content_type, body) in cases {
        mock.set_fault(fault, Some(1));
        let got = answer(&mock).await.expect("an answer");
        assert_eq!(got.status, status, "{fault:?}");
        assert_eq!(got.content_type.as_deref(), Some(content_type), "{fault:?}");
        assert_eq!(got.body, body, "{fault:?}");
        // Only the next request.
        assert_ok(&serde_json::from_slice(&answer(&mock).await.expect("ok").body).expect("JSON"));
    }

    mock.set_fault(Fault::NoErrcodeJson, Some(1));
    let got = answer(&mock).await.expect("an answer");
    assert_eq!(
        (got.status, got.content_type.as_deref()),
        (200, Some("application/json"))
    );
    let x5: Value = serde_json::from_slice(&got.body).expect("JSON");
    assert_eq!(x5["status"], 1111);
    assert_eq!(x5["punish"], "deny");
    assert!(x5.get("errcode").is_none());

    mock.set_fault(Fault::Reset, Some(1));
    assert_eq!(answer(&mock).await, Err(Dropped));

    // Faulted requests are counted, never recorded.
    let stats = mock.stats();
    assert_eq!(stats.faults, 7);
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.accepted, 5);
    assert_eq!(mock.messages().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_hang_outlasts_the_client_timeout() {
    let (mock, _) = paused_mock();
    mock.set_fault(Fault::Hang, Some(1));
    let started = Instant::now();
    let timed_out = tokio::time::timeout(Duration::from_secs(10), answer(&mock)).await;
    assert!(timed_out.is_err(), "the client's timeout fires first");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_ok(&serde_json::from_slice(&answer(&mock).await.expect("ok").body).expect("JSON"));

    // A client that waits gets `-1` an hour later.
    mock.set_fault(Fault::Hang, Some(1));
    let started = Instant::now();
    let got = answer(&mock).await.expect("an answer");
    assert!(started.elapsed() >= Duration::from_secs(3600));
    assert_eq!(
        errcode(&serde_json::from_slice(&got.body).expect("JSON")),
        -1
    );
}

#[tokio::test(start_paused = true)]
async fn a_fault_lasts_its_count_or_until_cleared() {
    let (mock, _) = paused_mock();
    mock.set_fault(Fault::Busy, Some(2));
    for expected in [-1, -1, 0] {
        let got = answer(&mock).await.expect("an answer");
        assert_eq!(
            errcode(&serde_json::from_slice(&got.body).expect("JSON")),
            expected
        );
    }
    mock.set_fault(Fault::Http500, None);
    for _ in 0..5 {
        assert_eq!(answer(&mock).await.expect("an answer").status, 500);
    }
    mock.set_fault(Fault::None, None);
    assert_eq!(answer(&mock).await.expect("an answer").status, 200);
    mock.set_fault(Fault::Busy, Some(0));
    assert_ok(&serde_json::from_slice(&answer(&mock).await.expect("ok").body).expect("JSON"));
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_answer() {
    let (mock, _) = paused_mock();
    let mock = mock.latency(Duration::from_millis(250));
    let started = Instant::now();
    assert_eq!(answer(&mock).await.expect("an answer").status, 200);
    assert_eq!(started.elapsed(), Duration::from_millis(250));
}

// ---- the served face ---------------------------------------------------------------------------

/// A minimal HTTP/1.1 client: one request per connection. `Err` when the connection ends
/// without a complete answer head.
async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<(u16, Option<String>, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    let content_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
    Ok((status, content_type, raw[end + 4..].to_vec()))
}

fn target(url: &Url) -> String {
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, ct, body) = http(addr, "GET", path, None, b"").await.expect("answer");
    assert_eq!((status, ct.as_deref()), (200, Some("application/json")));
    serde_json::from_slice(&body).expect("JSON")
}

#[tokio::test]
async fn the_served_face_checks_records_and_reports_over_loopback() {
    let mock = mock_with(system_ms);
    let (addr, server) = mock.clone().serve().await;
    assert!(addr.ip().is_loopback());
    let body = text("served 告警").to_string();
    let webhook = Url::parse(&webhook_url(addr, "signed")).expect("URL parses");
    let good = signed_url(&webhook, SECRET, system_ms());
    let json_ct = Some("application/json; charset=utf-8");

    let (status, ct, answer) = http(addr, "POST", &target(&good), json_ct, body.as_bytes())
        .await
        .expect("answer");
    assert_eq!((status, ct.as_deref()), (200, Some("application/json")));
    assert_eq!(answer, br#"{"errcode":0,"errmsg":"ok"}"#);

    let bad = signed_url(&webhook, "SECx", system_ms());
    let (_, _, answer) = http(addr, "POST", &target(&bad), json_ct, body.as_bytes())
        .await
        .expect("answer");
    assert_refused(
        &serde_json::from_slice(&answer).expect("JSON"),
        310000,
        "签名不匹配",
    );
    let (_, _, answer) = http(
        addr,
        "POST",
        &target(&good),
        Some("text/plain"),
        body.as_bytes(),
    )
    .await
    .expect("answer");
    assert_eq!(
        errcode(&serde_json::from_slice(&answer).expect("JSON")),
        43004
    );
    let (_, _, answer) = http(addr, "GET", &target(&good), None, b"")
        .await
        .expect("answer");
    assert_eq!(
        errcode(&serde_json::from_slice(&answer).expect("JSON")),
        43002
    );

    let stats = get_json(addr, "/_stats").await;
    assert_eq!(stats["requests"], 3, "{stats}");
    assert_eq!(stats["accepted"], 1);
    assert_eq!(
        stats["by_errcode"],
        json!({ "0": 1, "310000": 1, "43002": 1, "43004": 1 })
    );
    assert_eq!(stats["max_in_window"], json!({ "signed": 1 }));
    let messages = get_json(addr, "/_messages").await;
    assert_eq!(messages["messages"][0]["robot"], "signed");
    assert_eq!(messages["messages"][0]["body"], text("served 告警"));
    assert!(messages["messages"][0]["at_ms"].as_i64().is_some());
    assert_eq!(mock.messages().len(), 1, "both faces share the state");

    // Faults, set over HTTP like the Python tool's /_fault, or in-process.
    let (status, _, _) = http(
        addr,
        "POST",
        "/_fault",
        json_ct,
        br#"{"mode":"http500","count":1}"#,
    )
    .await
    .expect("answer");
    assert_eq!(status, 200);
    let plain = target(&Url::parse(&webhook_url(addr, "plain")).expect("URL"));
    let (status, ct, answer) = http(addr, "POST", &plain, json_ct, body.as_bytes())
        .await
        .expect("answer");
    assert_eq!(
        (status, ct.as_deref(), &answer[..]),
        (500, Some("text/plain"), &b"Internal Server Error"[..])
    );

    mock.set_fault(Fault::Reset, Some(1));
    let reset = http(addr, "POST", &plain, json_ct, body.as_bytes()).await;
    assert!(
        reset.is_err(),
        "the connection ends without an answer: {reset:?}"
    );

    mock.set_fault(Fault::Hang, Some(1));
    let hang = tokio::time::timeout(
        Duration::from_millis(300),
        http(addr, "POST", &plain, json_ct, body.as_bytes()),
    )
    .await;
    assert!(hang.is_err(), "the client's timeout fires first");

    // The server survived all of that.
    let (status, _, answer) = http(addr, "POST", &plain, json_ct, body.as_bytes())
        .await
        .expect("answer");
    assert_eq!(
        (status, &answer[..]),
        (200, &br#"{"errcode":0,"errmsg":"ok"}"#[..])
    );
    let (status, _, _) = http(addr, "POST", "/_reset", None, b"")
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert_eq!(mock.stats(), Default::default());
    server.abort();
}

#[tokio::test]
async fn both_faces_give_the_same_answers() {
    let now = system_ms();
    let requests: Vec<(&str, String, Option<&str>, Vec<u8>)> = vec![
        (
            "POST",
            target(&signed("signed", SECRET, now)),
            Some("application/json"),
            text("a").to_string().into(),
        ),
        (
            "POST",
            target(&signed("signed", "SECx", now)),
            Some("application/json"),
            text("a").to_string().into(),
        ),
        (
            "POST",
            target(&signed("signed", SECRET, now - SKEW_MS - 10)),
            Some("application/json"),
            text("a").to_string().into(),
        ),
        (
            "POST",
            target(&url("kw")),
            Some("application/json"),
            text("a").to_string().into(),
        ),
        (
            "POST",
            target(&url("kw")),
            Some("application/json"),
            text("告警").to_string().into(),
        ),
        (
            "POST",
            target(&url("nobody")),
            Some("application/json"),
            b"{}".to_vec(),
        ),
        (
            "POST",
            "/robot/send".to_owned(),
            Some("application/json"),
            b"{}".to_vec(),
        ),
        (
            "POST",
            target(&url("plain")),
            Some("text/plain"),
            text("a").to_string().into(),
        ),
        (
            "POST",
            target(&url("plain")),
            Some("application/json"),
            b"{oops".to_vec(),
        ),
        (
            "POST",
            target(&url("plain")),
            Some("application/json"),
            vec![b' '; MAX_BODY + 1],
        ),
        (
            "POST",
            target(&url("plain")),
            Some("application/json"),
            json!({ "msgtype": "markdown", "markdown": { "text": "x" } })
                .to_string()
                .into(),
        ),
        (
            "POST",
            target(&url("plain")),
            Some("application/json"),
            json!({ "msgtype": "Markdown" }).to_string().into(),
        ),
        ("GET", target(&url("plain")), None, Vec::new()),
        ("GET", "/nowhere".to_owned(), None, Vec::new()),
    ];
    let in_process = mock_with(system_ms);
    let served = mock_with(system_ms);
    let (addr, server) = served.clone().serve().await;
    for (method, target, ct, body) in &requests {
        let a = in_process
            .handle(method, target, *ct, body)
            .await
            .expect("an answer");
        let (status, content_type, answer) = http(addr, method, target, *ct, body)
            .await
            .expect("an answer");
        assert_eq!(
            (a.status, a.content_type, a.body),
            (status, content_type, answer),
            "{method} {target}"
        );
    }
    assert_eq!(in_process.stats(), served.stats());
    let bodies = |m: &MockDingTalk| m.messages().into_iter().map(|r| r.body).collect::<Vec<_>>();
    assert_eq!(bodies(&in_process), bodies(&served));
    assert_eq!(served.messages().len(), 2);
    server.abort();
}

#[test]
fn webhook_urls() {
    assert_eq!(
        webhook_url("127.0.0.1:8080", "abc"),
        "http://127.0.0.1:8080/robot/send?access_token=abc"
    );
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("address");
    assert_eq!(
        webhook_url(addr, "abc"),
        "http://127.0.0.1:9/robot/send?access_token=abc"
    );
    assert_eq!(
        webhook_url("https://oapi.dingtalk.com/", "a/b"),
        "https://oapi.dingtalk.com/robot/send?access_token=a%2Fb"
    );
}

// ---- the binary, and parity with the Python tool -------------------------------------------------

/// A stand-in process on loopback for one test; killed when dropped.
struct Spawned {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` with `--host 127.0.0.1 --port-file F` and `args`, and waits for the port.
async fn spawn(mut command: std::process::Command, name: &str, args: &[&str]) -> Spawned {
    let dir = std::env::temp_dir().join(format!("mock-dingtalk-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port_file = dir.join("port");
    let child = command
        .args(["--host", "127.0.0.1", "--port-file"])
        .arg(&port_file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let mut spawned = Spawned {
        child,
        dir,
        addr: "127.0.0.1:0".parse().expect("address"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            spawned.addr = SocketAddr::from(([127, 0, 0, 1], port));
            return spawned;
        }
        assert!(
            spawned.child.try_wait().expect("status").is_none(),
            "{name} exited"
        );
        assert!(Instant::now() < deadline, "{name} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `mock-dingtalk` binary of this crate.
async fn binary(args: &[&str]) -> Spawned {
    let command = std::process::Command::new(env!("CARGO_BIN_EXE_mock-dingtalk"));
    spawn(command, "binary", args).await
}

/// `$MOCK_DINGTALK` (default `shared/tools/mock-dingtalk` beside the repository) under python3.
async fn python_mock(args: &[&str]) -> Spawned {
    let tool = std::env::var_os("MOCK_DINGTALK")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/tools/mock-dingtalk")
        });
    assert!(
        tool.is_file(),
        "no Python mock-dingtalk at {} (set MOCK_DINGTALK)",
        tool.display()
    );
    let mut command = std::process::Command::new("python3");
    command.arg(&tool);
    spawn(command, "python", args).await
}

/// The binary with the command line of scripts/lib.sh: it checks, records every accepted message
/// (a repeated msgUuid too, like the Python tool), counts, and takes faults over HTTP.
#[tokio::test]
async fn the_binary_serves_the_fault_scripts_command_line() {
    let robot = format!("script-robot:{SECRET}:{KEYWORD}");
    let mock = binary(&["--robot", &robot, "--rate", "3"]).await;
    let addr = mock.addr;
    let webhook = Url::parse(&webhook_url(addr, "script-robot")).expect("URL parses");
    let json_ct = Some("application/json");
    let message =
        json!({ "msgtype": "text", "text": { "content": "告警 db-3" }, "msgUuid": "u-1" });
    let send = |secret: &'static str| {
        let target = target(&signed_url(&webhook, secret, system_ms()));
        let body = message.to_string();
        async move { http(addr, "POST", &target, json_ct, body.as_bytes()).await }
    };

    let answer = send(SECRET).await.expect("an answer");
    assert_eq!(answer.2, br#"{"errcode":0,"errmsg":"ok"}"#);
    // The same msgUuid again: accepted and recorded again.
    assert_eq!(send(SECRET).await.expect("an answer").2, answer.2);
    let refused = send("SECx").await.expect("an answer");
    assert_refused(
        &serde_json::from_slice(&refused.2).expect("JSON"),
        310000,
        "签名不匹配",
    );
    // A refused signature does not count in the window; the 4th counted request does not pass
    // (--rate 3).
    assert_eq!(send(SECRET).await.expect("an answer").2, answer.2);
    let throttled = send(SECRET).await.expect("an answer");
    assert_refused(
        &serde_json::from_slice(&throttled.2).expect("JSON"),
        130101,
        "too fast",
    );
    let unknown = target(&Url::parse(&webhook_url(addr, "nobody")).expect("URL"));
    let (_, _, answer) = http(
        addr,
        "POST",
        &unknown,
        json_ct,
        message.to_string().as_bytes(),
    )
    .await
    .expect("an answer");
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).expect("JSON"),
        json!({ "errcode": 300005, "errmsg": "token is not exist" })
    );

    let messages = get_json(addr, "/_messages").await["messages"].clone();
    assert_eq!(messages.as_array().map(Vec::len), Some(3), "{messages}");
    assert_eq!(messages[1]["channel"], "robot");
    assert_eq!(messages[1]["robot"], "script-robot");
    assert_eq!(messages[1]["body"], message);
    assert_eq!(
        get_json(addr, "/_messages?channel=work_notice").await,
        json!({ "messages": [] })
    );
    let stats = get_json(addr, "/_stats").await;
    assert_eq!(stats["requests"], 6, "{stats}");
    assert_eq!(stats["accepted"], 3);
    assert_eq!(
        stats["by_errcode"],
        json!({ "0": 3, "130101": 1, "300005": 1, "310000": 1 })
    );
    assert_eq!(stats["max_in_window"], json!({ "script-robot": 4 }));

    // A fault over HTTP, then a reset of everything.
    let spec = br#"{"mode":"http500","count":1}"#;
    let (status, _, _) = http(addr, "POST", "/_fault", json_ct, spec)
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let (status, ct, _) = http(addr, "POST", &unknown, json_ct, b"{}")
        .await
        .expect("answer");
    assert_eq!((status, ct.as_deref()), (500, Some("text/plain")));
    let (status, _, _) = http(addr, "POST", "/_reset", None, b"")
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert_eq!(get_json(addr, "/_stats").await["requests"], 0);
}

#[tokio::test]
async fn the_binary_refuses_what_the_python_tool_refuses() {
    let bin = env!("CARGO_BIN_EXE_mock-dingtalk");
    for args in [
        &["--port", "0"][..],
        &["--robot", "t", "--host", "0.0.0.0"],
        &["--robot", "t", "--throttle-code", "1"],
        &["--robot", "t", "--errmsg-era", "fr"],
    ] {
        let output = std::process::Command::new(bin)
            .args(args)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}

/// An answer as comparable across the two: status, media type, and the JSON value of the body
/// (the Python tool puts spaces after `:` and `,`) or its bytes.
type Comparable = Result<(u16, Option<String>, Result<Value, Vec<u8>>), ()>;

async fn comparable(
    addr: SocketAddr,
    method: &str,
    target: &str,
    ct: Option<&str>,
    body: &[u8],
) -> Comparable {
    let (status, content_type, body) =
        http(addr, method, target, ct, body).await.map_err(|_| ())?;
    let body = serde_json::from_slice(&body).map_err(|_| body);
    Ok((status, content_type, body))
}

/// Parity of the binary with the reference tool in shared/ (beside the repository). Tests never
/// need shared/, so this one is ignored by default; run it where the tool is:
/// `cargo test -p mock-dingtalk --test mock_dingtalk -- --ignored`.
#[tokio::test]
#[ignore = "needs ../shared/tools/mock-dingtalk and python3"]
async fn agrees_with_the_python_tool() {
    let signed_robot = format!("signed:{SECRET}");
    let kw_robot = format!("kw::{KEYWORD}");
    let both_robot = format!("both:{SECRET}:{KEYWORD},发布");
    let args = [
        "--robot",
        &signed_robot,
        "--robot",
        &kw_robot,
        "--robot",
        "plain",
        "--robot",
        &both_robot,
        "--robot",
        "burst",
        "--rate",
        "100",
    ];
    let python = python_mock(&args).await;
    // The binary with the same command line: the library's served face, as the scripts run it.
    let rust = binary(&args).await;
    let addr = rust.addr;

    let now = system_ms();
    let json_ct = Some("application/json");
    let t = |token: &str| target(&url(token));
    let s = |secret: &str, ts: i64| target(&signed("signed", secret, ts));
    let body = |v: Value| v.to_string().into_bytes();
    let plus_raw = s(SECRET, now).replace("%2B", "+");
    let mut requests: Vec<(&str, String, Option<&str>, Vec<u8>)> = vec![
        ("POST", s(SECRET, now), json_ct, body(text("a"))),
        ("POST", s("SECx", now), json_ct, body(text("a"))),
        (
            "POST",
            s(SECRET, now - SKEW_MS - 60_000),
            json_ct,
            body(text("a")),
        ),
        ("POST", s(SECRET, now / 1000), json_ct, body(text("a"))),
        ("POST", t("signed"), json_ct, body(text("a"))),
        ("POST", plus_raw, json_ct, body(text("a"))),
        (
            "POST",
            "/robot/send?access_token=signed&timestamp=x&sign=y".to_owned(),
            json_ct,
            body(text("a")),
        ),
        // Which check wins when several fail.
        (
            "POST",
            s("SECx", now),
            Some("text/plain"),
            b"{oops".to_vec(),
        ),
        ("POST", t("plain"), Some("text/plain"), b"{oops".to_vec()),
        (
            "POST",
            t("kw"),
            json_ct,
            body(json!({ "msgtype": "markdown", "markdown": { "text": "x" } })),
        ),
        ("POST", t("kw"), json_ct, vec![b' '; MAX_BODY + 1]),
        ("POST", t("kw"), json_ct, body(text("a"))),
        (
            "POST",
            t("kw"),
            json_ct,
            body(
                json!({ "msgtype": "text", "text": { "content": "a" }, "at": { "atUserIds": [KEYWORD] } }),
            ),
        ),
        ("POST", t("kw"), json_ct, body(text("告警 a"))),
        (
            "POST",
            target(&signed("both", SECRET, now)),
            json_ct,
            body(text("v2 发布")),
        ),
        (
            "POST",
            target(&signed("both", SECRET, now)),
            json_ct,
            body(text("nothing")),
        ),
        ("POST", t("nobody"), json_ct, body(text("a"))),
        ("POST", "/robot/send".to_owned(), json_ct, body(text("a"))),
        (
            "POST",
            "/robot/send?access_token=".to_owned(),
            json_ct,
            body(text("a")),
        ),
        (
            "POST",
            t("plain"),
            Some("application/json; charset=utf-8"),
            body(text("a")),
        ),
        ("POST", t("plain"), None, body(text("a"))),
        ("POST", t("plain"), json_ct, b"".to_vec()),
        ("POST", t("plain"), json_ct, b"[1]".to_vec()),
        (
            "POST",
            t("plain"),
            json_ct,
            "{\"msgtype\":\"text\",\"text\":{\"content\":\"\u{00e9}\"}}"
                .as_bytes()
                .to_vec(),
        ),
        ("POST", t("plain"), json_ct, vec![0xff, 0xfe]),
        ("GET", t("plain"), None, Vec::new()),
        ("GET", "/nowhere".to_owned(), None, Vec::new()),
        ("POST", "/nowhere".to_owned(), json_ct, Vec::new()),
    ];
    let many: Vec<String> = (0..51).map(|i| format!("1380000{i:04}")).collect();
    let mentioned = many.iter().map(|m| format!("@{m}")).collect::<String>();
    for message in [
        json!({ "msgtype": "text", "text": { "content": "x" }, "at": { "atMobiles": ["13800001111"] } }),
        json!({ "msgtype": "text", "text": { "content": mentioned }, "at": { "atMobiles": many } }),
        json!({ "msgtype": "text", "text": { "content": "x" }, "at": "13800001111" }),
        json!({ "msgtype": "text", "text": { "content": "x" }, "at": { "atMobiles": [13800001111_i64] } }),
        json!({ "msgtype": "text", "text": { "Content": "x" } }),
        json!({ "msgtype": "text" }),
        json!({ "msgtype": "text", "text": "x" }),
        json!({ "msgtype": "Text", "text": { "content": "x" } }),
        json!({ "msgtype": 1 }),
        json!({ "msgtype": "markdown", "markdown": { "title": " ", "text": "x" } }),
        json!({ "msgtype": "markdown", "markdown": { "title": "t", "text": "x @u1" }, "at": { "atUserIds": ["u1"], "isAtAll": true } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t", "messageURL": "https://e.com" } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t", "messageUrl": "ftp://e.com", "picUrl": "" } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t", "messageUrl": "https://e.com", "picUrl": " " } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t", "messageUrl": "https://e.com", "picUrl": 3 } }),
        json!({ "msgtype": "link", "link": { "title": "t", "text": "t", "messageUrl": "https://e.com" }, "at": { "atMobiles": ["1"] } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t" } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t", "singleTitle": "o", "singleURL": "e.com", "btns": [1], "hideAvatar": 0 } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t", "btns": [{ "title": "a", "actionURL": "https://e.com" }, { "title": "b", "actionURL": "x" }], "btnOrientation": "1" } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t", "btns": [{ "title": "a" }] } }),
        json!({ "msgtype": "actionCard", "actionCard": { "title": "t", "text": "t", "btns": "b" } }),
        json!({ "msgtype": "feedCard", "feedCard": { "links": [{ "title": "t", "messageURL": "https://e.com", "picURL": "p" }] } }),
        json!({ "msgtype": "feedCard", "feedCard": { "links": [{ "title": "t", "messageURL": "https://e.com" }] } }),
        json!({ "msgtype": "feedCard", "feedCard": { "links": ["x"] } }),
        json!({ "msgtype": "feedCard", "feedCard": {} }),
        json!({ "msgtype": "feedCard", "feedCard": { "links": [{ "title": "t", "messageURL": "https://e.com", "picURL": "p" }] }, "at": { "isAtAll": true } }),
        // Both record a repeated msgUuid (the binary does not drop it unless asked).
        json!({ "msgtype": "text", "text": { "content": "x" }, "msgUuid": "u-1" }),
        json!({ "msgtype": "text", "text": { "content": "x, again" }, "msgUuid": "u-1" }),
    ] {
        requests.push(("POST", t("plain"), json_ct, body(message)));
    }
    // The rate: 100 pass, the 101st starts the ban, the next ones stay refused.
    for i in 0..103 {
        requests.push(("POST", t("burst"), json_ct, body(text(&format!("#{i}")))));
    }

    for (method, target, ct, body) in &requests {
        let from_python = comparable(python.addr, method, target, *ct, body).await;
        let from_rust = comparable(addr, method, target, *ct, body).await;
        assert_eq!(
            from_rust,
            from_python,
            "{method} {target} {}",
            String::from_utf8_lossy(body)
        );
    }

    // Faults, set through /_fault on both.
    let plain = t("plain");
    for mode in ["http500", "html", "busy", "ipthrottle", "reset"] {
        let spec = format!(r#"{{"mode":"{mode}","count":1}}"#);
        for server in [python.addr, addr] {
            let set = http(server, "POST", "/_fault", json_ct, spec.as_bytes()).await;
            assert_eq!(set.map(|(status, _, _)| status).ok(), Some(200));
        }
        let from_python = comparable(python.addr, "POST", &plain, json_ct, &body(text("f"))).await;
        let from_rust = comparable(addr, "POST", &plain, json_ct, &body(text("f"))).await;
        assert_eq!(from_rust, from_python, "fault {mode}");
    }

    // Same records, same counters (the Rust stats add a few of their own).
    let python_messages = get_json(python.addr, "/_messages").await["messages"].clone();
    let rust_messages = get_json(addr, "/_messages").await["messages"].clone();
    let strip = |messages: &Value| -> Vec<Value> {
        messages
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| json!([m["channel"], m["robot"], m["body"], m["warnings"]]))
            .collect()
    };
    let (rust_records, python_records) = (strip(&rust_messages), strip(&python_messages));
    for (i, (r, p)) in rust_records.iter().zip(&python_records).enumerate() {
        assert_eq!(r, p, "record {i}");
    }
    assert_eq!(rust_records.len(), python_records.len());
    let python_stats = get_json(python.addr, "/_stats").await;
    let rust_stats = get_json(addr, "/_stats").await;
    for key in [
        "requests",
        "accepted",
        "by_errcode",
        "max_in_window",
        "warnings",
    ] {
        assert_eq!(rust_stats[key], python_stats[key], "/_stats {key}");
    }
    assert_eq!(rust_stats["max_in_window"]["burst"], 101);
}

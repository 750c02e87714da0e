//! Issue 14's first pieces against the stand-in's app APIs. The access-token cache: a burst of
//! sends costs one fetch, an expiry in the middle of a run costs one more (the refused token is
//! dropped, a new one fetched, and the call goes again), a token is renewed ahead of expiry, and
//! a wrong appSecret is refused in words that do not show it. And messages mapped to the app
//! robot API's msgKey and msgParam are taken as they are.

use std::sync::Arc;
use std::time::Duration;

use dingrelay::delivery::app_token::{ApiTokenSource, AppToken, TokenError, is_token_refusal};
use dingrelay::delivery::transport::HttpAnswer;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use crate::support::mock_dingtalk::{MockDingTalk, MockTransport};

const KEY: &str = "dingoncall";
const SECRET: &str = "app-s3cret-value";

fn cache(mock: &MockDingTalk, secret: &str) -> Arc<AppToken> {
    let base = Url::parse("https://api.dingtalk.com").unwrap();
    Arc::new(AppToken::new(Arc::new(ApiTokenSource {
        app: "oncall".into(),
        transport: Arc::new(MockTransport(mock.clone())),
        url: ApiTokenSource::endpoint(&base).unwrap(),
        app_key: KEY.into(),
        app_secret: SecretString::from(secret.to_owned()),
    })))
}

/// POSTs `body` to the stand-in's app API at `path` with `token` (the stand-in's own
/// [`MockDingTalk::post_app`]); the answer as a transport gives it.
async fn post_app(
    mock: &MockDingTalk,
    path: &str,
    token: &SecretString,
    body: &serde_json::Value,
) -> HttpAnswer {
    let url = Url::parse("https://api.dingtalk.com")
        .unwrap()
        .join(path)
        .unwrap();
    let reply = mock
        .post_app(&url, Some(token.expose_secret()), body)
        .await
        .unwrap();
    HttpAnswer {
        status: reply.answer.status,
        content_type: reply.answer.content_type,
        body: reply.answer.body,
    }
}

/// A one-to-one app-robot send of a text from `robot` to `users` with `token`, as the relay
/// will make it.
async fn send_to(
    mock: &MockDingTalk,
    robot: &str,
    users: &[&str],
    token: &SecretString,
) -> HttpAnswer {
    let body = json!({
        "robotCode": robot,
        "userIds": users,
        "msgKey": "sampleText",
        "msgParam": json!({"content": "告警 disk full"}).to_string(),
    });
    post_app(mock, "/v1.0/robot/oToMessages/batchSend", token, &body).await
}

/// [`send_to`] of the app's robot to `lin`.
async fn send(mock: &MockDingTalk, token: &SecretString) -> HttpAnswer {
    send_to(mock, KEY, &["lin"], token).await
}

#[tokio::test(start_paused = true)]
async fn one_fetch_per_expiry_and_an_expired_token_is_replaced_once() {
    let mock = MockDingTalk::new().app(KEY, SECRET).user("lin", "Lin");
    let cache = cache(&mock, SECRET);

    // A burst of 40 sends: one token fetch.
    let tokens: Vec<_> = (0..40)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get().await })
        })
        .collect();
    for token in tokens {
        let token = token.await.unwrap().unwrap();
        assert_eq!(
            Some(token.expose_secret().to_owned()),
            mock.current_token(KEY)
        );
    }
    assert_eq!(mock.token_fetches(KEY), 1);
    let token = cache.get().await.unwrap();
    assert_eq!(send(&mock, &token).await.status, 200);

    // DingTalk expires it in the middle of a run: the send is refused as a token error; the
    // token is dropped, one new one fetched, and the send goes again.
    mock.expire_tokens(Some(KEY));
    let refused = send(&mock, &token).await;
    assert!(is_token_refusal(&refused), "{refused:?}");
    cache.invalidate(&token).await;
    cache.invalidate(&token).await;
    let fresh = cache.get().await.unwrap();
    assert_ne!(fresh.expose_secret(), token.expose_secret());
    assert_eq!(send(&mock, &fresh).await.status, 200);
    assert_eq!(mock.token_fetches(KEY), 2);

    // Ahead of its expiry (5 minutes before), once.
    tokio::time::sleep(Duration::from_secs(7200 - 300 - 1)).await;
    cache.get().await.unwrap();
    assert_eq!(mock.token_fetches(KEY), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let renewed = cache.get().await.unwrap();
    cache.get().await.unwrap();
    assert_eq!(mock.token_fetches(KEY), 3);
    assert_eq!(send(&mock, &renewed).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_app_secret_is_a_clear_refusal_without_the_secret() {
    let mock = MockDingTalk::new().app(KEY, SECRET);
    let error = cache(&mock, "wrong-s3cret").get().await.unwrap_err();
    assert!(matches!(error, TokenError::Refused { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "DingTalk refused app `oncall`'s appKey or appSecret (HTTP 400, invalidClientIdOrSecret"
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// Every message shape an app robot can take, mapped by `to_app_robot` and posted to the
/// stand-in's group send: accepted, recorded as sent, and with no warning (no unknown key, no
/// field DingTalk would ignore).
#[tokio::test(start_paused = true)]
async fn mapped_messages_are_taken_by_the_app_robot_api_as_they_are() {
    use dingrelay::dingtalk::Message;
    use dingrelay::dingtalk::app_message::to_app_robot;

    const CID: &str = "cidOps==";
    let mock = MockDingTalk::new()
        .app(KEY, SECRET)
        .conversation(CID, &[KEY]);
    let token = cache(&mock, SECRET).get().await.unwrap();
    let messages = [
        json!({"msgtype": "text", "text": {"content": "告警 disk full"}}),
        json!({"msgtype": "markdown", "markdown": {"title": "Disk", "text": "### Disk\n93%"}}),
        json!({"msgtype": "link", "link": {"title": "PR #12", "text": "Handle empty input", "messageUrl": "https://example.com/pr/12", "picUrl": "https://example.com/a.png"}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "Deploy", "text": "api v2", "singleTitle": "Open", "singleURL": "https://example.com/run"}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "Deploy", "text": "api v2", "btnOrientation": "1", "btns": [
            {"title": "Approve", "actionURL": "https://example.com/ok"}, {"title": "Reject", "actionURL": "https://example.com/no"}]}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "Deploy", "text": "api v2", "btns": [
            {"title": "Logs", "actionURL": "https://example.com/logs"}, {"title": "Runbook", "actionURL": "https://example.com/rb"},
            {"title": "Silence", "actionURL": "https://example.com/si"}]}}),
    ];
    for message in &messages {
        let message: Message = serde_json::from_value(message.clone()).unwrap();
        let app = to_app_robot(&message).unwrap();
        let body = json!({
            "robotCode": KEY,
            "openConversationId": CID,
            "msgKey": app.msg_key,
            "msgParam": app.msg_param,
        });
        let answer = post_app(&mock, "/v1.0/robot/groupMessages/send", &token, &body).await;
        assert_eq!(
            answer.status,
            200,
            "{}: {}",
            app.msg_key,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let recorded = mock.app_messages();
    assert_eq!(recorded.len(), messages.len());
    for message in &recorded {
        assert!(message.warnings.is_empty(), "{:?}", message.record);
    }
    let keys: Vec<&str> = recorded
        .iter()
        .map(|m| m.record["msgKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "sampleText",
            "sampleMarkdown",
            "sampleLink",
            "sampleActionCard",
            "sampleActionCard6",
            "sampleActionCard3"
        ]
    );
}

/// The stand-in's real answers, classified: a one-to-one send that reached one person, found
/// one unknown and one flow-controlled; an expired token; an unknown robot.
#[tokio::test(start_paused = true)]
async fn the_app_api_answers_are_classified_as_the_worker_will_act() {
    use dingrelay::delivery::app_classify::{AppVerdict, classify_app};

    let mock = MockDingTalk::new()
        .app(KEY, SECRET)
        .user("lin", "Lin")
        .flow_controlled_user("wei", "Wei");
    let cache = cache(&mock, SECRET);
    let token = cache.get().await.unwrap();
    let post = |robot: &'static str, users: &'static [&'static str], token: &SecretString| {
        let (mock, token) = (mock.clone(), token.clone());
        async move { classify_app(Ok(send_to(&mock, robot, users, &token).await)) }
    };
    assert_eq!(
        post(KEY, &["lin", "ghost", "wei"], &token).await,
        AppVerdict::Sent {
            invalid: vec!["ghost".into()],
            flow_controlled: vec!["wei".into()],
        }
    );
    let verdict = post("dingnobody", &["lin"], &token).await;
    assert!(
        matches!(&verdict, AppVerdict::Permanent { code, .. } if code.starts_with("invalidParameter.robotCode")),
        "{verdict:?}"
    );
    mock.expire_tokens(Some(KEY));
    assert_eq!(post(KEY, &["lin"], &token).await, AppVerdict::TokenRefused);
}

//! The app access-token cache against the stand-in's token endpoint (issue 14): a burst of
//! sends costs one fetch, an expiry in the middle of a run costs one more (the refused token is
//! dropped, a new one fetched, and the call goes again), a token is renewed ahead of expiry, and
//! a wrong appSecret is refused in words that do not show it.

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

/// A one-to-one app-robot send with `token`, as the relay will make it.
async fn send(mock: &MockDingTalk, token: &SecretString) -> HttpAnswer {
    let body = json!({
        "robotCode": KEY,
        "userIds": ["lin"],
        "msgKey": "sampleText",
        "msgParam": json!({"content": "告警 disk full"}).to_string(),
    });
    let token = token.expose_secret().to_owned();
    let reply = mock
        .request(
            "POST",
            "/v1.0/robot/oToMessages/batchSend",
            &[("x-acs-dingtalk-access-token".to_owned(), token)],
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
    HttpAnswer {
        status: reply.answer.status,
        content_type: reply.answer.content_type.clone(),
        body: reply.answer.body.clone(),
    }
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

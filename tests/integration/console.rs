//! Issue 15's first pieces: 免登 against the in-repo stand-in (an auth code turned into the user
//! over the app's cached token, once), with the JSAPI signature and signed links unit-tested in
//! `src/console/`.

use std::sync::Arc;
use std::time::Duration;

use dingrelay::console::login::{LoginError, SignedIn, sign_in};
use dingrelay::delivery::app_send::AppClient;
use dingrelay::dingtalk::App;
use dingrelay::metrics::Metrics;
use secrecy::SecretString;
use url::Url;

use crate::support::mock_dingtalk::{MockDingTalk, MockTransport};

fn client(mock: &MockDingTalk, key: &str, secret: &str) -> Arc<AppClient> {
    let base = Url::parse("http://mock.test").unwrap();
    let app = App {
        name: "console".into(),
        app_key: key.into(),
        app_secret: SecretString::from(secret.to_owned()),
        agent_id: None,
        api_url: base.clone(),
        oapi_url: base,
    };
    AppClient::new(
        Arc::new(app),
        Arc::new(MockTransport(mock.clone())),
        Arc::new(Metrics::new()),
    )
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn an_auth_code_signs_its_user_in_once() {
    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .app("dingother", "other-s3cret")
        .user("user456", "张三");
    let app = client(&mock, "dingconsole", "console-s3cret");

    let code = mock.issue_auth_code("user456", "dingconsole");
    assert_eq!(
        sign_in(&app, &code, TIMEOUT).await,
        Ok(SignedIn {
            user_id: "user456".into(),
            name: "张三".into()
        })
    );
    // Single-use.
    assert_eq!(
        sign_in(&app, &code, TIMEOUT).await,
        Err(LoginError::BadCode)
    );
    // Another app's (another organisation's) code resolves no one here.
    let foreign = mock.issue_auth_code("user456", "dingother");
    assert_eq!(
        sign_in(&app, &foreign, TIMEOUT).await,
        Err(LoginError::BadCode)
    );
    // Expired after five minutes.
    let late = mock.issue_auth_code("user456", "dingconsole");
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_eq!(
        sign_in(&app, &late, TIMEOUT).await,
        Err(LoginError::BadCode)
    );
    for junk in ["", "x"] {
        assert_eq!(sign_in(&app, junk, TIMEOUT).await, Err(LoginError::BadCode));
    }
}

#[tokio::test(start_paused = true)]
async fn sign_in_shares_the_apps_token_and_survives_its_expiry() {
    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .user("user456", "张三");
    let app = client(&mock, "dingconsole", "console-s3cret");
    for _ in 0..5 {
        let code = mock.issue_auth_code("user456", "dingconsole");
        assert!(sign_in(&app, &code, TIMEOUT).await.is_ok());
    }
    assert_eq!(
        mock.token_fetches("dingconsole"),
        1,
        "one token for every sign-in"
    );
    mock.expire_tokens(Some("dingconsole"));
    let code = mock.issue_auth_code("user456", "dingconsole");
    assert!(
        sign_in(&app, &code, TIMEOUT).await.is_ok(),
        "renewed and asked again"
    );
    assert_eq!(mock.token_fetches("dingconsole"), 2);

    // A wrong secret: said, without the secret.
    let wrong = client(&mock, "dingconsole", "wrong-s3cret-4711");
    let code = mock.issue_auth_code("user456", "dingconsole");
    let error = sign_in(&wrong, &code, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, LoginError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("refused"), "{error}");
    assert!(!error.to_string().contains("wrong-s3cret-4711"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn dd_config_is_signed_with_the_apps_ticket_for_the_pages_url() {
    use dingrelay::console::jsapi::{Hash, Tickets, signature};

    let mock = MockDingTalk::new().app("dingconsole", "console-s3cret");
    let app = client(&mock, "dingconsole", "console-s3cret");
    let tickets = Tickets::new(app, TIMEOUT);
    let page = "https://relay.example.com:8443/console/silence?alert=Disk%20Full#/detail";
    let config = tickets
        .dd_config(
            page,
            4000001,
            "dingcorp",
            "nonce123",
            "1796000000000",
            Hash::Sha256,
        )
        .await
        .unwrap();
    let ticket = mock.current_ticket("dingconsole").expect("fetched");
    assert_eq!(
        config.signature,
        signature(
            &ticket,
            "nonce123",
            "1796000000000",
            "https://relay.example.com:8443/console/silence?alert=Disk Full",
            Hash::Sha256
        )
    );
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        serde_json::json!({"agentId": "4000001", "corpId": "dingcorp", "timeStamp": "1796000000000",
                           "nonceStr": "nonce123", "signature": config.signature})
    );
    // Cached: one fetch for many pages, until it is due again.
    for _ in 0..10 {
        tickets
            .dd_config(page, 4000001, "dingcorp", "n", "1", Hash::Sha1)
            .await
            .unwrap();
    }
    assert_eq!(tickets.fetches(), 1);
    tokio::time::sleep(Duration::from_secs(7200)).await;
    tickets
        .dd_config(page, 4000001, "dingcorp", "n", "1", Hash::Sha256)
        .await
        .unwrap();
    assert_eq!(tickets.fetches(), 2);
    assert!(
        tickets
            .dd_config("not a url", 1, "c", "n", "1", Hash::Sha256)
            .await
            .is_err()
    );
}

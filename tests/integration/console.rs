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

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, or `None`, having said
/// why, when it is not installed outside CI (under `CI`, a missing one fails the test: `.ci/run`
/// installs it).
struct Alertmanager {
    child: std::process::Child,
    base: Url,
    _dir: std::path::PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Alertmanager {
    /// Every silence the Alertmanager holds (`GET /api/v2/silences`).
    async fn silences(&self) -> Vec<serde_json::Value> {
        let text = reqwest::get(self.base.join("api/v2/silences").unwrap())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// A silence's matchers as sorted `name=value` lines.
fn matchers(silence: &serde_json::Value) -> Vec<String> {
    let mut matchers: Vec<String> = silence["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["name"].as_str().unwrap(),
                m["value"].as_str().unwrap()
            )
        })
        .collect();
    matchers.sort();
    matchers
}

async fn alertmanager() -> Option<Alertmanager> {
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(binary) = binary else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but Alertmanager is not installed (.ci/run installs prometheus-alertmanager)"
        );
        eprintln!("SKIPPED: no Alertmanager (apt-get install prometheus-alertmanager)");
        return None;
    };
    let dir = crate::support::fresh_dir("alertmanager");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route: { receiver: none }\nreceivers: [ { name: none } ]\n",
    )
    .unwrap();
    let port = crate::support::free_port();
    let child = std::process::Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let base = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let am = Alertmanager {
        child,
        base,
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(am.base.join("-/ready").unwrap())
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Some(am);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Alertmanager did not get ready: {}",
            std::fs::read_to_string(am._dir.join("log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_exists_in_a_real_alertmanager_with_the_users_name() {
    use dingrelay::console::silence::{SilenceError, SilenceRequest, create};

    let Some(am) = alertmanager().await else {
        return;
    };
    let client = reqwest::Client::new();
    let labels: std::collections::BTreeMap<String, String> =
        [("alertname", "DiskFull"), ("instance", "db-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let silence = SilenceRequest::new(
        labels,
        "张三",
        jiff::Timestamp::now(),
        Duration::from_secs(7200),
    );
    let id = create(&client, &am.base, &silence).await.expect("created");

    let listed = am.silences().await;
    let ours = listed
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed:#?}"));
    assert_eq!(ours["createdBy"], "张三");
    assert_eq!(ours["status"]["state"], "active");
    assert_eq!(matchers(ours), ["alertname=DiskFull", "instance=db-1"]);

    // Alertmanager's refusal is said with its status: a silence that ends before it starts.
    let mut backwards = silence.clone();
    backwards.ends_at = backwards.starts_at - jiff::SignedDuration::from_hours(1);
    let error = create(&client, &am.base, &backwards).await.unwrap_err();
    assert!(
        matches!(error, SilenceError::Refused { status: 400, .. }),
        "{error}"
    );
    let mut empty = silence;
    empty.labels.clear();
    assert_eq!(
        create(&client, &am.base, &empty).await,
        Err(SilenceError::NoLabels)
    );
}

/// The console's routes on the stand-in, on a paused clock.
fn console_router(mock: &MockDingTalk) -> axum::Router {
    console_router_with(
        mock,
        dingrelay::console::link::Signer::random(),
        None,
        dingrelay::clock::Clock::starting_at(1_796_000_000_000),
    )
}

/// [`console_router`] with its signer, Alertmanager and clock.
fn console_router_with(
    mock: &MockDingTalk,
    signer: dingrelay::console::link::Signer,
    alertmanager: Option<Url>,
    clock: dingrelay::clock::Clock,
) -> axum::Router {
    use dingrelay::console::jsapi::Tickets;
    use dingrelay::console::web::{Console, router};

    let app = client(mock, "dingconsole", "console-s3cret");
    router(Arc::new(Console {
        tickets: Tickets::new(app.clone(), TIMEOUT),
        app,
        signer,
        corp_id: "dingcorp".into(),
        agent_id: 4000001,
        session_ttl: Duration::from_secs(3600),
        clock,
        timeout: TIMEOUT,
        alertmanager,
        http: reqwest::Client::new(),
        notify: None,
        timezone: jiff::tz::TimeZone::UTC,
    }))
}

async fn get(
    router: &axum::Router,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    use tower::ServiceExt;
    let mut request = http::Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = router
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(start_paused = true)]
async fn signing_in_sets_a_strict_session_cookie_that_opens_the_console() {
    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .user("user456", "张<三>");
    let router = console_router(&mock);

    // Not signed in: the sign-in page, which asks DingTalk for a code with the corp id.
    let (status, _, body) = get(&router, "/console/", None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("requestAuthCode") && body.contains("\"dingcorp\""),
        "{body}"
    );

    let code = mock.issue_auth_code("user456", "dingconsole");
    let (status, headers, _) = get(&router, &format!("/console/login?code={code}"), None).await;
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=3600",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, body) = get(&router, "/console/", Some(&session)).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Signed in as <b>张&lt;三&gt;</b> (user456)"),
        "{body}"
    );

    // The code was used: a second sign-in with it is a clear page, not a stack trace.
    let (status, _, body) = get(&router, &format!("/console/login?code={code}"), None).await;
    assert_eq!(status, 401);
    assert!(body.contains("open the page from DingTalk again"), "{body}");

    // dd.config for the page, only with a session.
    let page = "/console/api/dd-config?url=https%3A%2F%2Frelay.example.com%2Fconsole%2F";
    assert_eq!(get(&router, page, None).await.0, 401);
    let (status, _, body) = get(&router, page, Some(&session)).await;
    assert_eq!(status, 200, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["corpId"], "dingcorp");
    assert_eq!(config["agentId"], "4000001");
    let ticket = mock.current_ticket("dingconsole").unwrap();
    assert_eq!(
        config["signature"],
        dingrelay::console::jsapi::signature(
            &ticket,
            config["nonceStr"].as_str().unwrap(),
            config["timeStamp"].as_str().unwrap(),
            "https://relay.example.com/console/",
            dingrelay::console::jsapi::Hash::Sha256
        )
    );
    assert!(!body.contains(&ticket), "the ticket stays on the server");

    // A forged or another console's session opens nothing.
    let forged = format!("{session}x");
    assert!(
        get(&router, "/console/", Some(&forged))
            .await
            .2
            .contains("Sign in")
    );
    let other = dingrelay::console::link::Signer::random().sign(
        dingrelay::console::link::Purpose::Session,
        r#"{"id":"admin","name":"root"}"#,
        i64::MAX,
    );
    let (_, _, body) = get(
        &router,
        "/console/",
        Some(&format!("dingrelay_session={other}")),
    )
    .await;
    assert!(
        body.contains("Sign in") && !body.contains("admin"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_expires() {
    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .user("user456", "Lin");
    let router = console_router(&mock);
    let code = mock.issue_auth_code("user456", "dingconsole");
    let (_, headers, _) = get(&router, &format!("/console/login?code={code}"), None).await;
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .unwrap()
        .1
        .clone();
    let session = cookie.split(';').next().unwrap().to_owned();
    assert!(
        get(&router, "/console/", Some(&session))
            .await
            .2
            .contains("Signed in")
    );
    tokio::time::sleep(Duration::from_secs(3601)).await;
    assert!(
        get(&router, "/console/", Some(&session))
            .await
            .2
            .contains("Sign in")
    );
}

#[tokio::test(start_paused = true)]
async fn the_daemon_serves_the_console_only_when_configured() {
    use dingrelay::config::Config;
    use dingrelay::daemon::{Daemon, Services};
    use dingrelay::delivery::transport::Transport;

    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .agent_id("dingconsole", 4000001)
        .user("user456", "Lin");
    for (console, expected) in [
        ("", 404),
        ("console: { app: ops, corp_id: dingcorp }\n", 200),
    ] {
        let dir = crate::support::fresh_dir("console-daemon");
        let text = format!(
            "state_dir: {}\n{console}\
             apps: {{ ops: {{ app_key: dingconsole, app_secret: console-s3cret, agent_id: 4000001, base_url: 'http://mock.test' }} }}\n\
             robots: {{ log: {{ webhook: log }} }}\n\
             sources: {{ ci: {{ kind: json }} }}\n\
             rules: [ {{ name: a, source: ci, to: log, text: {{ content: x }} }} ]\n",
            dir.display()
        );
        let config = Config::parse("rules.yaml", &text, std::path::Path::new("."), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let services = Services {
            transport: Arc::new(MockTransport(mock.clone())) as Arc<dyn Transport>,
            clock: dingrelay::clock::Clock::starting_at(1_796_000_000_000),
            dry_run: Arc::new(std::sync::Mutex::new(Box::new(std::io::sink()))),
            config_path: None,
            metrics: Arc::new(Metrics::new()),
        };
        let daemon = Daemon::start(config, services).await.unwrap();
        let router = daemon.router();
        assert_eq!(
            get(&router, "/console/", None).await.0,
            expected,
            "{console}"
        );
        if expected == 200 {
            let code = mock.issue_auth_code("user456", "dingconsole");
            let (status, headers, _) =
                get(&router, &format!("/console/login?code={code}"), None).await;
            assert_eq!(status, 303);
            assert!(headers.iter().any(|(k, _)| k == "set-cookie"));
        }
        // The webhooks are served as before.
        assert_eq!(get(&router, "/-/healthy", None).await.0, 200);
        daemon
            .stop(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
    }
}

async fn post_form(
    router: &axum::Router,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    use tower::ServiceExt;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request =
        http::Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = router
        .clone()
        .oneshot(request.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of the hidden input `name` of a form page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("{page}")) + marker.len();
    page[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

async fn signed_in(router: &axum::Router, mock: &MockDingTalk, user: &str) -> String {
    let code = mock.issue_auth_code(user, "dingconsole");
    let (status, headers, body) = get(router, &format!("/console/login?code={code}"), None).await;
    assert_eq!(status, 303, "{body}");
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .unwrap()
        .1
        .clone();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_silence_creates_it_in_alertmanager_as_the_signed_in_user() {
    use dingrelay::console::link::Signer;
    use dingrelay::console::link::SilenceLink;

    let Some(am) = alertmanager().await else {
        return;
    };
    let mock = MockDingTalk::new()
        .app("dingconsole", "console-s3cret")
        .user("user456", "张三")
        .user("user789", "李四");
    let signer = Signer::new(vec![42; 32]).unwrap();
    let clock = dingrelay::clock::Clock::system();
    let router = console_router_with(&mock, signer.clone(), Some(am.base.clone()), clock);
    let now = clock.now_ms();
    let link = SilenceLink {
        labels: [("alertname", "DiskFull"), ("instance", "db-9")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        seconds: 7200,
    }
    .sign(&signer, now + 3_600_000);
    let path = format!("/console/silence?link={link}");

    // Not signed in: the link asks to sign in first; nothing is silenced.
    assert_eq!(get(&router, &path, None).await.0, 401);

    let zhang = signed_in(&router, &mock, "user456").await;
    let (status, _, form) = get(&router, &path, Some(&zhang)).await;
    assert_eq!(status, 200, "{form}");
    assert!(
        form.contains("As <b>张三</b>")
            && form.contains("instance=\"db-9\"")
            && form.contains("for 2h"),
        "{form}"
    );
    let csrf = hidden(&form, "csrf");

    // Another signed-in user cannot post 张三's form; nor can a form without its token.
    let li = signed_in(&router, &mock, "user789").await;
    let stolen = post_form(
        &router,
        "/console/silence",
        Some(&li),
        &[("link", &link), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(stolen.0, 403, "{}", stolen.1);
    let bare = post_form(
        &router,
        "/console/silence",
        Some(&zhang),
        &[("link", &link)],
    )
    .await;
    assert_eq!(bare.0, 403);
    // A changed link (another alert) under the same token is refused.
    let other = SilenceLink {
        labels: [("alertname".to_owned(), "Other".to_owned())]
            .into_iter()
            .collect(),
        seconds: 60,
    }
    .sign(&Signer::random(), now + 3_600_000);
    assert_eq!(
        get(
            &router,
            &format!("/console/silence?link={other}"),
            Some(&zhang)
        )
        .await
        .0,
        403
    );
    let expired = SilenceLink {
        labels: [("a".to_owned(), "b".to_owned())].into_iter().collect(),
        seconds: 60,
    }
    .sign(&signer, now - 1);
    let (status, _, body) = get(
        &router,
        &format!("/console/silence?link={expired}"),
        Some(&zhang),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("expired"), "{body}");

    let (status, body) = post_form(
        &router,
        "/console/silence",
        Some(&zhang),
        &[("link", &link), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Silenced by <b>张三</b>"), "{body}");

    let silences = am.silences().await;
    assert_eq!(silences.len(), 1, "only the confirmed one: {silences:#?}");
    assert_eq!(silences[0]["createdBy"], "张三");
    assert_eq!(silences[0]["status"]["state"], "active");
}

/// The whole path: an alert's message carries a Silence button; the person who opens it from
/// DingTalk (signed in through 免登) confirms, and the silence exists in a real Alertmanager with
/// their name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_button_in_an_alert_message_silences_it_as_the_person_who_pressed_it() {
    use dingrelay::config::Config;
    use dingrelay::daemon::{Daemon, Services};
    use dingrelay::delivery::transport::Transport;

    let Some(am) = alertmanager().await else {
        return;
    };
    let mock = MockDingTalk::new()
        .robot("robot-token", None, &[])
        .app("dingconsole", "console-s3cret")
        .agent_id("dingconsole", 4000001)
        .user("user456", "张三");
    let dir = crate::support::fresh_dir("console-button");
    std::fs::write(dir.join("key"), "k".repeat(40)).unwrap();
    let text = format!(
        "state_dir: {dir}\n\
         apps: {{ ops: {{ app_key: dingconsole, app_secret: console-s3cret, agent_id: 4000001, base_url: 'http://mock.test' }} }}\n\
         timezone: Asia/Shanghai\n\
         console: {{ app: ops, corp_id: dingcorp, url: 'https://relay.example.com/', alertmanager: '{am}', session_key_file: {dir}/key, notify: ops }}\n\
         robots: {{ ops: {{ webhook: 'http://mock.test/robot/send?access_token=robot-token', allow_host: mock.test }} }}\n\
         sources: {{ am: {{ kind: alertmanager }} }}\n\
         rules: [ {{ name: alerts, source: am, to: ops, template: alertmanager }} ]\n",
        dir = dir.display(),
        am = am.base
    );
    let config = Config::parse("rules.yaml", &text, std::path::Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let services = Services {
        transport: Arc::new(MockTransport(mock.clone())) as Arc<dyn Transport>,
        clock: dingrelay::clock::Clock::system(),
        dry_run: Arc::new(std::sync::Mutex::new(Box::new(std::io::sink()))),
        config_path: None,
        metrics: Arc::new(Metrics::new()),
    };
    let daemon = Daemon::start(config, services).await.unwrap();
    let router = daemon.router();
    let alert = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
        "groupLabels": {}, "commonLabels": {"alertname": "DiskFull"}, "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-7"},
                    "annotations": {"summary": "disk full"}, "startsAt": "2026-12-03T07:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f7"}],
    });
    {
        use tower::ServiceExt;
        let request = http::Request::post("/hooks/am")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(alert.to_string()))
            .unwrap();
        assert_eq!(router.clone().oneshot(request).await.unwrap().status(), 202);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        if let Some(message) = mock.messages().first() {
            break message.body["markdown"]["text"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The button: DingTalk's side panel, opening the console's Silence page with a signed link.
    let start = text
        .find("[🔕 silence 2h](")
        .unwrap_or_else(|| panic!("no Silence button: {text}"))
        + "[🔕 silence 2h](".len();
    let button = Url::parse(&text[start..text[start..].find(')').unwrap() + start]).unwrap();
    assert_eq!(button.scheme(), "dingtalk");
    let query: std::collections::HashMap<String, String> =
        button.query_pairs().into_owned().collect();
    assert_eq!(query["pc_slide"], "true");
    let page = Url::parse(&query["url"]).unwrap();
    assert!(
        page.as_str()
            .starts_with("https://relay.example.com/console/silence?link=")
    );
    let link: String = page
        .query_pairs()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let session = signed_in(&router, &mock, "user456").await;
    let (status, _, form) = get(
        &router,
        &format!("/console/silence?link={link}"),
        Some(&session),
    )
    .await;
    assert_eq!(status, 200, "{form}");
    let csrf = hidden(&form, "csrf");
    let (status, body) = post_form(
        &router,
        "/console/silence",
        Some(&session),
        &[("link", &link), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let silences = am.silences().await;
    let silence = &silences[0];
    assert_eq!(silence["createdBy"], "张三");
    assert_eq!(matchers(silence), ["alertname=DiskFull", "instance=db-7"]);
    // The group is told who silenced it, and until when (in the config's time zone).
    let ends: jiff::Timestamp = silence["endsAt"].as_str().unwrap().parse().unwrap();
    let until = jiff::tz::TimeZone::get("Asia/Shanghai")
        .unwrap()
        .to_datetime(ends)
        .strftime("%m-%d %H:%M")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let follow_up = loop {
        if let Some(message) = mock.messages().get(1) {
            break message.body["markdown"]["text"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no follow-up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        follow_up.starts_with(&format!("### 🔕 silenced by 张三 until {until}")),
        "{follow_up}"
    );
    assert!(follow_up.contains("instance=db-7"), "{follow_up}");
    daemon
        .stop(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
}

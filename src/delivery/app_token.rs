//! App access tokens (issue 14): what DingTalk's app APIs (app robots, work notifications) are
//! called with. An app's appKey and appSecret are exchanged for a token that lasts `expireIn`
//! seconds (7200); every robot of the app shares it.
//!
//! Invariants of [`AppToken`]:
//! - **one fetch at a time per app** (single flight): callers that find no usable token wait
//!   for the fetch under way and share its token, so a burst of sends costs one fetch;
//! - a token is used until [`REFRESH_MARGIN`] before it expires, then fetched again ahead of
//!   expiry; an `expireIn` that is missing or not positive counts as [`DEFAULT_LIFETIME`] (a 0
//!   would fetch before every call);
//! - [`AppToken::invalidate`] drops the cached token only if it is still the one the caller
//!   used, so a caller that saw DingTalk refuse an old token never drops a fresh one, and a
//!   burst of refusals costs one fetch;
//! - a failed fetch caches nothing: the next caller tries again;
//! - **the token and the app secret are never shown**: they are [`SecretString`]s, and errors
//!   are built from DingTalk's answer (its code and message), never from the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::transport::{HttpAnswer, Transport};

/// How long before its expiry a token is fetched again.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A token's lifetime when DingTalk's answer does not give a positive one.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(7200);

/// A token as DingTalk handed it out.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub token: SecretString,
    /// `expireIn`, as DingTalk gave it (0 when it gave none).
    pub expires_in: Duration,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// DingTalk refused the app's key or secret: an operator must fix the config.
    #[error("DingTalk refused app `{app}`'s appKey or appSecret ({reason})")]
    Refused { app: String, reason: String },
    /// No answer, or one that says nothing of the credentials: try again later.
    #[error("could not get app `{app}`'s access token: {reason}")]
    Unavailable { app: String, reason: String },
}

/// The future a [`TokenSource`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, TokenError>> + Send + 'a>>;

/// Where an app's tokens come from: DingTalk's token endpoint, or a stand-in in tests.
pub trait TokenSource: Send + Sync + 'static {
    fn fetch(&self) -> FetchFuture<'_>;
}

/// The cached token of one app.
struct Cached {
    token: SecretString,
    /// When to fetch again: [`REFRESH_MARGIN`] before it expires.
    refresh_at: Instant,
}

/// One app's token cache, shared (behind an `Arc`) by every robot of the app.
pub struct AppToken {
    source: Arc<dyn TokenSource>,
    /// The token, if one is usable; the lock is held across a fetch (the single flight).
    cached: tokio::sync::Mutex<Option<Cached>>,
    /// Fetches made, for metrics and tests ("one fetch per expiry").
    fetches: AtomicU64,
}

impl std::fmt::Debug for AppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppToken")
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AppToken {
    pub fn new(source: Arc<dyn TokenSource>) -> AppToken {
        AppToken {
            source,
            cached: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// A usable token: the cached one, or a new one fetched once for every caller waiting.
    ///
    /// # Errors
    ///
    /// The fetch's, when there was no usable token and the fetch failed.
    pub async fn get(&self) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.token.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.source.fetch().await?;
        let lifetime = if fetched.expires_in.is_zero() {
            DEFAULT_LIFETIME
        } else {
            fetched.expires_in
        };
        let token = fetched.token;
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        });
        Ok(token)
    }

    /// DingTalk refused `used` as expired or invalid: drop it, if it is still the cached one,
    /// so that the next [`AppToken::get`] fetches a new one.
    pub async fn invalidate(&self, used: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }

    /// How many fetches were made.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

/// An app's tokens from DingTalk's current endpoint, `POST {base}/v1.0/oauth2/accessToken` with
/// `{"appKey", "appSecret"}`.
pub struct ApiTokenSource {
    /// The app's name in the config, for errors.
    pub app: String,
    pub transport: Arc<dyn Transport>,
    /// `https://api.dingtalk.com`, or a stand-in's address.
    pub url: Url,
    pub app_key: String,
    pub app_secret: SecretString,
}

impl ApiTokenSource {
    /// The token endpoint under `base` (`https://api.dingtalk.com`).
    ///
    /// # Errors
    ///
    /// When `base` cannot be a base URL.
    pub fn endpoint(base: &Url) -> Result<Url, url::ParseError> {
        base.join("/v1.0/oauth2/accessToken")
    }

    async fn fetch_once(&self) -> Result<Fetched, TokenError> {
        let body = serde_json::json!({
            "appKey": self.app_key,
            "appSecret": self.app_secret.expose_secret(),
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let unavailable = |reason: String| TokenError::Unavailable {
            app: self.app.clone(),
            reason,
        };
        let answer = self
            .transport
            .post(&self.url, body)
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        read_answer(&self.app, &answer)
    }
}

impl TokenSource for ApiTokenSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.fetch_once())
    }
}

/// What `/v1.0/oauth2/accessToken` answers: a token, or a code and message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: Option<String>,
    expire_in: Option<i64>,
    code: Option<String>,
    message: Option<String>,
}

/// Reads the token endpoint's answer.
fn read_answer(app: &str, answer: &HttpAnswer) -> Result<Fetched, TokenError> {
    let unavailable = |reason: String| TokenError::Unavailable {
        app: app.to_owned(),
        reason,
    };
    let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| {
        unavailable(format!(
            "HTTP {} with a body that is not DingTalk's JSON",
            answer.status
        ))
    })?;
    if answer.status == 200
        && let Some(token) = parsed.access_token.filter(|t| !t.is_empty())
    {
        let seconds = parsed.expire_in.unwrap_or(0).max(0);
        return Ok(Fetched {
            token: SecretString::from(token),
            expires_in: Duration::from_secs(seconds.unsigned_abs()),
        });
    }
    let code = parsed.code.unwrap_or_default();
    let reason = format!(
        "HTTP {}, {}: {}",
        answer.status,
        if code.is_empty() { "no code" } else { &code },
        crate::text::shorten(&parsed.message.unwrap_or_default(), 200)
    );
    if code == "invalidClientIdOrSecret" {
        Err(TokenError::Refused {
            app: app.to_owned(),
            reason,
        })
    } else {
        Err(unavailable(reason))
    }
}

/// Whether DingTalk's answer says the token the call carried is expired or invalid (so it is
/// dropped, fetched again and the call retried once): `InvalidAuthentication` on api
/// `/v1.0/*` paths; errcode `40014`, `42001` or `40001` on oapi paths, or `88` with one of those
/// as its `sub_code` (topapi). `40000` ("access_token is blank") is a client bug, not this.
pub fn is_token_refusal(answer: &HttpAnswer) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
        return false;
    };
    const CODES: [i64; 3] = [40014, 42001, 40001];
    if value["code"] == "InvalidAuthentication" {
        return true;
    }
    match value["errcode"].as_i64() {
        Some(88) => value["sub_code"]
            .as_str()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| CODES.contains(&code)),
        Some(code) => CODES.contains(&code),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::transport::{PostFuture, TransportError};

    /// A token endpoint stand-in: hands out `token-N` with `expires_in`, after `delay`.
    struct Counter {
        next: AtomicU64,
        expires_in: Duration,
        delay: Duration,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Counter {
        fn new(expires_in: Duration) -> Arc<Counter> {
            Arc::new(Counter {
                next: AtomicU64::new(1),
                expires_in,
                delay: Duration::from_millis(200),
                fail: std::sync::atomic::AtomicBool::new(false),
            })
        }
    }

    impl TokenSource for Counter {
        fn fetch(&self) -> FetchFuture<'_> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                if self.fail.load(Ordering::Relaxed) {
                    return Err(TokenError::Unavailable {
                        app: "ops".into(),
                        reason: "timed out".into(),
                    });
                }
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                Ok(Fetched {
                    token: SecretString::from(format!("token-{n}")),
                    expires_in: self.expires_in,
                })
            })
        }
    }

    fn shown(token: &SecretString) -> &str {
        token.expose_secret()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_callers_costs_one_fetch() {
        let cache = Arc::new(AppToken::new(Counter::new(DEFAULT_LIFETIME)));
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get().await })
            })
            .collect();
        for caller in callers {
            assert_eq!(shown(&caller.await.unwrap().unwrap()), "token-1");
        }
        assert_eq!(cache.fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_fetched_again_ahead_of_its_expiry_once() {
        let cache = AppToken::new(Counter::new(Duration::from_secs(7200)));
        assert_eq!(shown(&cache.get().await.unwrap()), "token-1");
        // Just before the margin: the same token.
        tokio::time::sleep(Duration::from_secs(7200 - 300 - 1)).await;
        assert_eq!(shown(&cache.get().await.unwrap()), "token-1");
        assert_eq!(cache.fetches(), 1);
        // Past it, 5 minutes before the token expires: a new one, for everyone after.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(shown(&cache.get().await.unwrap()), "token-2");
        assert_eq!(shown(&cache.get().await.unwrap()), "token-2");
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_lifetime_counts_as_two_hours_not_as_none() {
        let cache = AppToken::new(Counter::new(Duration::ZERO));
        cache.get().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        cache.get().await.unwrap();
        assert_eq!(cache.fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidating_drops_only_the_token_that_was_refused() {
        let cache = Arc::new(AppToken::new(Counter::new(DEFAULT_LIFETIME)));
        let old = cache.get().await.unwrap();
        // Ten sends saw it refused at once: one new fetch between them.
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                let old = old.clone();
                tokio::spawn(async move {
                    cache.invalidate(&old).await;
                    cache.get().await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(shown(&caller.await.unwrap().unwrap()), "token-2");
        }
        assert_eq!(cache.fetches(), 2);
        // A late refusal of the old token keeps the new one.
        cache.invalidate(&old).await;
        assert_eq!(shown(&cache.get().await.unwrap()), "token-2");
        assert_eq!(cache.fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_caches_nothing() {
        let source = Counter::new(DEFAULT_LIFETIME);
        let cache = AppToken::new(source.clone());
        source.fail.store(true, Ordering::Relaxed);
        assert!(matches!(
            cache.get().await,
            Err(TokenError::Unavailable { .. })
        ));
        source.fail.store(false, Ordering::Relaxed);
        assert_eq!(shown(&cache.get().await.unwrap()), "token-1");
        assert_eq!(cache.fetches(), 2);
    }

    /// A transport answering every post with `answer`, keeping the last body.
    struct Answering {
        answer: Result<HttpAnswer, TransportError>,
        body: std::sync::Mutex<Vec<u8>>,
    }

    impl Transport for Answering {
        fn post<'a>(&'a self, _url: &'a Url, body: Vec<u8>) -> PostFuture<'a> {
            *self.body.lock().unwrap() = body;
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn source(status: u16, body: &str) -> (ApiTokenSource, Arc<Answering>) {
        let transport = Arc::new(Answering {
            answer: Ok(HttpAnswer {
                status,
                content_type: Some("application/json".into()),
                body: body.as_bytes().to_vec(),
            }),
            body: std::sync::Mutex::new(Vec::new()),
        });
        let base = Url::parse("https://api.dingtalk.com").unwrap();
        let source = ApiTokenSource {
            app: "oncall".into(),
            transport: transport.clone(),
            url: ApiTokenSource::endpoint(&base).unwrap(),
            app_key: "dingkey".into(),
            app_secret: SecretString::from("s3cret-app-secret".to_owned()),
        };
        (source, transport)
    }

    #[tokio::test]
    async fn the_endpoint_is_asked_with_key_and_secret_and_its_token_read() {
        let (source, transport) = source(200, r#"{"accessToken":"tok-123","expireIn":7200}"#);
        assert_eq!(
            source.url.as_str(),
            "https://api.dingtalk.com/v1.0/oauth2/accessToken"
        );
        let fetched = source.fetch().await.unwrap();
        assert_eq!(fetched.token.expose_secret(), "tok-123");
        assert_eq!(fetched.expires_in, Duration::from_secs(7200));
        let sent: serde_json::Value =
            serde_json::from_slice(&transport.body.lock().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"appKey": "dingkey", "appSecret": "s3cret-app-secret"})
        );
        assert!(
            !format!("{fetched:?}").contains("tok-123"),
            "Debug hides it"
        );
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_without_showing_it() {
        let (source, _) = source(
            400,
            r#"{"requestid":"01A0","code":"invalidClientIdOrSecret","message":"无效的clientId或者clientSecret"}"#,
        );
        let error = source.fetch().await.unwrap_err();
        assert!(matches!(error, TokenError::Refused { .. }), "{error}");
        let text = error.to_string();
        assert_eq!(
            text,
            "DingTalk refused app `oncall`'s appKey or appSecret (HTTP 400, invalidClientIdOrSecret: 无效的clientId或者clientSecret)"
        );
        assert!(!text.contains("s3cret"));
    }

    #[tokio::test]
    async fn other_answers_are_unavailable_to_be_tried_again() {
        for (status, body) in [
            (200, "<html>busy</html>"),
            (200, r#"{"expireIn":7200}"#),
            (
                403,
                r#"{"code":"Forbidden.AccessDenied.QpsLimitForAppkeyAndApi","message":"禁用"}"#,
            ),
        ] {
            let (source, _) = source(status, body);
            let error = source.fetch().await.unwrap_err();
            assert!(
                matches!(error, TokenError::Unavailable { .. }),
                "{status} {body}: {error}"
            );
        }
    }

    #[test]
    fn token_refusals_are_told_from_other_errors() {
        let answer = |body: &str| HttpAnswer {
            status: 400,
            content_type: None,
            body: body.as_bytes().to_vec(),
        };
        for body in [
            r#"{"code":"InvalidAuthentication","message":"不合法的access_token"}"#,
            r#"{"errcode":40014,"errmsg":"不合法的access_token"}"#,
            r#"{"errcode":42001,"errmsg":"access_token超时"}"#,
            r#"{"errcode":88,"sub_code":"40014","errmsg":"ding talk error"}"#,
        ] {
            assert!(is_token_refusal(&answer(body)), "{body}");
        }
        for body in [
            r#"{"errcode":0,"errmsg":"ok"}"#,
            r#"{"errcode":88,"sub_code":"40000","errmsg":"access_token is blank"}"#,
            r#"{"errcode":88,"sub_code":"90018"}"#,
            r#"{"code":"AuthenticationFailed.MissingParameter"}"#,
            "not json",
        ] {
            assert!(!is_token_refusal(&answer(body)), "{body}");
        }
    }
}

//! Sending through an enterprise internal app: one [`AppClient`] per app holds its token cache and
//! its pace, and every robot of the app (group, one-to-one, work notifications) sends through it.
//!
//! Invariants:
//! - **one token for all the app's robots**, fetched on demand, refreshed ahead of expiry by one
//!   fetch at a time ([`AppToken`]);
//! - **an expired or refused token never reaches the outbox as a failure**: the call is sent
//!   again, once, with a freshly fetched token; only a second refusal is a failure (retried);
//! - **DingTalk's 20 calls a second per app** are kept: every call of the app's robots waits for
//!   the app's limiter (one call every 1/20 s at most), on top of each robot's own limiter;
//! - a refused appSecret is a failure to retry (the messages wait for the operator to fix the
//!   secret, they are not dead-lettered for it), and is said at start-up and by `check`;
//! - the token travels only in the `x-acs-dingtalk-access-token` header (api family) or the
//!   `access_token` query parameter (oapi, work notifications), which the transport masks in
//!   every error; it is never logged.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use url::Url;

use super::app_classify::{AppVerdict, classify_app, classify_work_notice};
use super::app_token::{
    ApiTokenSource, AppToken, FetchFuture, TokenError, TokenSource, is_token_refusal,
};
use super::limiter::RateLimiter;
use super::transport::{HttpAnswer, Transport, TransportError};
use crate::dingtalk::app_message::to_app_robot;
use crate::dingtalk::work_notice::to_work_notice;
use crate::dingtalk::{App, AppRobotKind, Message};
use crate::metrics::{Metrics, TokenFetch};

/// DingTalk's limit on calls of one app to one API: 20 a second. As a per-minute rate for the
/// [`RateLimiter`], whose margin of one keeps it just below.
pub const APP_CALLS_PER_MINUTE: u32 = 20 * 60;

/// An app's token cache and pace, shared by its robots' workers and kept across reloads while
/// the app's credentials stay the same.
pub struct AppClient {
    pub app: Arc<App>,
    pub token: AppToken,
    pub limiter: RateLimiter,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for AppClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppClient")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

/// The app's token endpoint, each fetch counted in `dingrelay_app_token_fetches_total`.
struct CountedSource {
    source: ApiTokenSource,
    metrics: Arc<Metrics>,
}

impl TokenSource for CountedSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let fetched = self.source.fetch().await;
            let result = match &fetched {
                Ok(_) => TokenFetch::Ok,
                Err(TokenError::Refused { .. }) => TokenFetch::Refused,
                Err(TokenError::Unavailable { .. }) => TokenFetch::Unavailable,
            };
            self.metrics.token_fetch(&self.source.app, result);
            fetched
        })
    }
}

/// A request ready to go, built once per message and sent again as it is after a token refusal.
enum Request {
    /// An api-family call: the token goes in a header.
    Api { url: Url, body: Vec<u8> },
    /// An oapi call (work notifications, 免登): the token goes in the query.
    Oapi { url: Url, body: Vec<u8> },
}

/// Why an app call got no answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No token could be had (a refused appSecret, DingTalk out of reach).
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Transport(TransportError),
}

impl AppClient {
    /// The client of `app`, fetching tokens and sending over `transport`; its token fetches are
    /// counted in `metrics`.
    pub fn new(
        app: Arc<App>,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
    ) -> Arc<AppClient> {
        let url = ApiTokenSource::endpoint(&app.api_url).unwrap_or_else(|_| app.api_url.clone());
        let source = ApiTokenSource {
            app: app.name.clone(),
            transport: transport.clone(),
            url,
            app_key: app.app_key.clone(),
            app_secret: app.app_secret.clone(),
        };
        let source = CountedSource { source, metrics };
        Arc::new(AppClient {
            token: AppToken::new(Arc::new(source)),
            limiter: RateLimiter::new(APP_CALLS_PER_MINUTE),
            app,
            transport,
        })
    }

    /// Whether this client serves `app` as configured now (same key, secret and addresses), so a
    /// reload keeps its token and pace.
    pub fn serves(&self, app: &App) -> bool {
        self.app.app_key == app.app_key
            && self.app.app_secret.expose_secret() == app.app_secret.expose_secret()
            && self.app.api_url == app.api_url
            && self.app.oapi_url == app.oapi_url
    }

    /// Fetches a token now: what start-up and `check` do to tell a wrong appSecret at once.
    ///
    /// # Errors
    ///
    /// [`TokenError::Refused`] for a wrong appKey or appSecret; [`TokenError::Unavailable`] when
    /// DingTalk could not be asked.
    pub async fn verify(&self, timeout: Duration) -> Result<(), TokenError> {
        self.token_within(timeout).await.map(drop)
    }

    /// The app's token (cached, or fetched once for every caller), or why there is none within
    /// `timeout`.
    async fn token_within(&self, timeout: Duration) -> Result<SecretString, TokenError> {
        match tokio::time::timeout(timeout, self.token.get()).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Unavailable {
                app: self.app.name.clone(),
                reason: format!("no answer within {}s", timeout.as_secs()),
            }),
        }
    }

    /// Sends `message` through the robot `kind` of this app to `recipients` (for a group: none),
    /// each call bounded by `timeout`; a token DingTalk refuses is dropped and the call made
    /// again, once, with a new one.
    pub async fn send(
        &self,
        kind: &AppRobotKind,
        message: &Message,
        recipients: &[String],
        timeout: Duration,
    ) -> AppVerdict {
        let request = match self.request(kind, message, recipients) {
            Ok(request) => request,
            Err(reason) => {
                return AppVerdict::Permanent {
                    code: "dingrelay.unsendable".to_owned(),
                    message: reason,
                    advice: "dingrelay's validation should have caught this: please report it",
                };
            }
        };
        let answer = match self.call(&request, timeout).await {
            Ok(answer) => Ok(answer),
            Err(CallError::Transport(error)) => Err(error),
            Err(CallError::Token(reason)) => return AppVerdict::Transient { reason },
        };
        // A second refusal (of a token fetched just now) is classified like any answer.
        match request {
            Request::Api { .. } => classify_app(answer),
            Request::Oapi { .. } => classify_work_notice(answer),
        }
    }

    /// Posts `body` to the app's oapi `path` (`/topapi/v2/user/getuserinfo`, ...) with the token
    /// in the query, and returns the answer. A token DingTalk refuses is dropped and the call
    /// made again, once, with a new one: what the console's 免登 calls share with the robots.
    ///
    /// # Errors
    ///
    /// No token, or no answer within `timeout`, as a sentence without the token.
    pub async fn call_oapi(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<HttpAnswer, String> {
        let url = self.app.oapi_url.join(path).map_err(|e| e.to_string())?;
        let body = body.to_string().into_bytes();
        self.call(&Request::Oapi { url, body }, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// [`AppClient::call_oapi`] for the api family's `path` (`/v1.0/oauth2/jsapiTickets`): the
    /// token in the `x-acs-dingtalk-access-token` header.
    ///
    /// # Errors
    ///
    /// As [`AppClient::call_oapi`].
    pub async fn call_api(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<HttpAnswer, String> {
        let url = self.app.api_url.join(path).map_err(|e| e.to_string())?;
        let body = body.to_string().into_bytes();
        self.call(&Request::Api { url, body }, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `request` with the app's token, within the app's pace; a token DingTalk refuses is
    /// dropped, a new one fetched, and the call made again, once. Every app call goes through
    /// here: the robots' sends, and the console's 免登 and ticket calls.
    async fn call(&self, request: &Request, timeout: Duration) -> Result<HttpAnswer, CallError> {
        let mut renewed = false;
        loop {
            let token = self
                .token_within(timeout)
                .await
                .map_err(|e| CallError::Token(e.to_string()))?;
            self.limiter.until_ready().await;
            let answer = tokio::time::timeout(timeout, self.post(request, &token))
                .await
                .unwrap_or(Err(TransportError::Timeout))
                .map_err(CallError::Transport)?;
            if !renewed && is_token_refusal(&answer) {
                tracing::info!(
                    app = %self.app.name,
                    "DingTalk refused the app's access token (expired or revoked); fetching a new one and sending again."
                );
                self.token.invalidate(&token).await;
                renewed = true;
                continue;
            }
            return Ok(answer);
        }
    }

    async fn post(
        &self,
        request: &Request,
        token: &SecretString,
    ) -> Result<HttpAnswer, TransportError> {
        match request {
            Request::Api { url, body } => {
                self.transport
                    .post_with_token(url, token, body.clone())
                    .await
            }
            Request::Oapi { url, body } => {
                let mut url = url.clone();
                url.query_pairs_mut()
                    .append_pair("access_token", token.expose_secret());
                self.transport.post(&url, body.clone()).await
            }
        }
    }

    /// The request for `message`: [`request_body`] and the URL it goes to.
    fn request(
        &self,
        kind: &AppRobotKind,
        message: &Message,
        recipients: &[String],
    ) -> Result<Request, String> {
        let body = request_body(kind, message, recipients)?
            .to_string()
            .into_bytes();
        let join = |base: &Url, path: &str| base.join(path).map_err(|e| e.to_string());
        Ok(match kind {
            AppRobotKind::Group { .. } => Request::Api {
                url: join(&self.app.api_url, "/v1.0/robot/groupMessages/send")?,
                body,
            },
            AppRobotKind::OneToOne { .. } => Request::Api {
                url: join(&self.app.api_url, "/v1.0/robot/oToMessages/batchSend")?,
                body,
            },
            AppRobotKind::WorkNotice { .. } => Request::Oapi {
                url: join(
                    &self.app.oapi_url,
                    "/topapi/message/corpconversation/asyncsend_v2",
                )?,
                body,
            },
        })
    }
}

/// The body of the request that sends `message` through the robot `kind` to `recipients`: the
/// api family's robotCode, msgKey, msgParam and where it goes, or a work notification's
/// agent_id, userid_list, dept_id_list and msg. What `dingrelay render` prints for such a robot.
///
/// # Errors
///
/// What the API cannot express (which validation refuses before a message is queued).
pub fn request_body(
    kind: &AppRobotKind,
    message: &Message,
    recipients: &[String],
) -> Result<serde_json::Value, String> {
    match kind {
        AppRobotKind::Group {
            robot_code,
            conversation,
        } => {
            let mapped = to_app_robot(message).map_err(|e| e.to_string())?;
            Ok(json!({
                "robotCode": robot_code,
                "openConversationId": conversation,
                "msgKey": mapped.msg_key,
                "msgParam": mapped.msg_param,
            }))
        }
        AppRobotKind::OneToOne { robot_code, .. } => {
            let mapped = to_app_robot(message).map_err(|e| e.to_string())?;
            Ok(json!({
                "robotCode": robot_code,
                "userIds": recipients,
                "msgKey": mapped.msg_key,
                "msgParam": mapped.msg_param,
            }))
        }
        AppRobotKind::WorkNotice {
            agent_id,
            departments,
            ..
        } => {
            let msg = to_work_notice(&with_reference(message)).map_err(|e| e.to_string())?;
            let mut body = json!({"agent_id": agent_id, "msg": msg});
            if !recipients.is_empty() {
                body["userid_list"] = json!(recipients.join(","));
            }
            if !departments.is_empty() {
                body["dept_id_list"] = json!(departments.join(","));
            }
            Ok(body)
        }
    }
}

/// `message` with a short reference (the end of its msgUuid) on a last line of its main text:
/// DingTalk silently drops a work notification whose content the person already got that day,
/// and an alert repeated by its sender (Alertmanager's `repeat_interval`) is the same content.
/// The reference makes each message differ, and is the same for every try of one message.
fn with_reference(message: &Message) -> Message {
    let mut message = message.clone();
    let Some(uuid) = message.msg_uuid.clone() else {
        return message;
    };
    let reference = uuid.get(uuid.len().saturating_sub(8)..).unwrap_or(&uuid);
    if let Some((_, text)) = message.body.main_text_mut() {
        text.push_str(&format!("\n\nref {reference}"));
    }
    message
}

//! How a request reaches DingTalk: one HTTP client for the process, or a stand-in in tests.
//!
//! [`HttpTransport`] is the production [`Transport`]: one `reqwest::Client` for the whole process
//! (a keep-alive connection pool shared by every robot's worker, HTTP/2 when the server offers
//! it, TLS by rustls). A dry-run robot's worker posts through a
//! [`DryRunTransport`](super::dry_run::DryRunTransport) instead, which prints the request.
//!
//! Invariants:
//! - **no URL and no secret in an error**: the webhook URL carries the robot's `access_token`
//!   (and `sign`), so every reqwest error is stripped of its URL (`without_url`) and the text
//!   built from its cause chain is masked again (`redact_secrets`) before it becomes a
//!   [`TransportError`];
//! - bounded: a connect timeout and a total timeout (connect, send, answer and body) are always
//!   set, and at most [`MAX_ANSWER_BYTES`] of an answer body are read;
//! - redirects are not followed: a POST must not be replayed elsewhere with the robot's token,
//!   and a 3xx answer is returned as it is (the classifier makes it a transient failure);
//! - the request is `POST` with `Content-Type: application/json; charset=utf-8` and
//!   `User-Agent: dingrelay/<version>`.
//!
//! Proxies come from the environment, as curl reads them: `HTTPS_PROXY` (or `https_proxy`) for
//! `https://` webhooks, `HTTP_PROXY` for `http://` ones, `ALL_PROXY` for both, and `NO_PROXY`
//! (comma-separated hosts, domains such as `.dingtalk.com`, IPs or CIDRs) for hosts to reach
//! directly. They are read once, when the client is built: restart the daemon to change them. A
//! proxy URL may carry `user:password@`; those credentials are masked in errors like the token.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// An HTTP answer, whatever its status: DingTalk answers 200 for refusals too, so the body is
/// what counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A request that got no HTTP answer. Never contains the URL (it carries the robot's token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Other(String),
}

/// The future a transport returns.
pub type PostFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + 'a>>;

/// Posts a JSON body to a URL.
pub trait Transport: Send + Sync + 'static {
    fn post<'a>(&'a self, url: &'a Url, body: Vec<u8>) -> PostFuture<'a>;

    /// Posts a body that carries the outbox rows `messages` (what a worker calls). Only a
    /// transport that reports what it sends needs the rows ([`DryRunTransport`](super::dry_run::DryRunTransport));
    /// by default this is [`Transport::post`].
    fn post_messages<'a>(
        &'a self,
        url: &'a Url,
        body: Vec<u8>,
        messages: &[i64],
    ) -> PostFuture<'a> {
        let _ = messages;
        self.post(url, body)
    }

    /// Posts a JSON body to one of DingTalk's api-family endpoints (`/v1.0/...`), with the app's
    /// access token in header `x-acs-dingtalk-access-token` (the only place they read it). A
    /// transport that cannot (a dry run) answers with an error, never a silent success.
    fn post_with_token<'a>(
        &'a self,
        url: &'a Url,
        token: &'a SecretString,
        body: Vec<u8>,
    ) -> PostFuture<'a> {
        let _ = (url, token, body);
        Box::pin(std::future::ready(Err(TransportError::Other(
            "this transport cannot call DingTalk's app APIs".to_owned(),
        ))))
    }
}

/// The header DingTalk's api family reads the access token from.
pub const TOKEN_HEADER: &str = "x-acs-dingtalk-access-token";

/// The most of an answer body that is read: DingTalk's answers are a few dozen bytes; anything
/// longer is an error page, and the rest of it is dropped.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("dingrelay/", env!("CARGO_PKG_VERSION"));

/// The `Content-Type` of every request.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// How long an idle pooled connection is kept. A connection the server closed while idle is
/// normally noticed and dropped by the pool; losing the race costs one transient failure and a
/// retry, which the message's `msgUuid` keeps DingTalk from showing twice.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The production transport: one `reqwest::Client` for the process. Cheap to share behind an
/// `Arc`; every worker posts through the same connection pool.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A client that gives up connecting after `connect_timeout`, and on the whole request
    /// (connect, send, answer and body) after `timeout`. Proxies come from the environment
    /// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
    ///
    /// # Errors
    ///
    /// When the client cannot be built (e.g. TLS cannot be initialised, or a proxy variable is
    /// not a valid URL).
    pub fn new(
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<HttpTransport, TransportError> {
        HttpTransport::build(connect_timeout, timeout, true)
    }

    fn build(
        connect_timeout: Duration,
        timeout: Duration,
        env_proxies: bool,
    ) -> Result<HttpTransport, TransportError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .referer(false);
        if !env_proxies {
            builder = builder.no_proxy();
        }
        builder
            .build()
            .map(|client| HttpTransport { client })
            .map_err(|error| TransportError::Other(describe(&error.without_url())))
    }

    async fn send(
        &self,
        url: &Url,
        token: Option<&SecretString>,
        body: Vec<u8>,
    ) -> Result<HttpAnswer, TransportError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(token) = token {
            let mut value =
                reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                    TransportError::Other("the access token is not a valid header value".into())
                })?;
            // Kept out of reqwest's and hyper's debug output.
            value.set_sensitive(true);
            request = request.header(TOKEN_HEADER, value);
        }
        let mut response = request.body(body).send().await.map_err(map_error)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match response.chunk().await.map_err(map_error)? {
                Some(chunk) => {
                    let room = MAX_ANSWER_BYTES - body.len();
                    body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
                }
                None => break,
            }
        }
        Ok(HttpAnswer {
            status,
            content_type,
            body,
        })
    }
}

impl Transport for HttpTransport {
    fn post<'a>(&'a self, url: &'a Url, body: Vec<u8>) -> PostFuture<'a> {
        Box::pin(self.send(url, None, body))
    }

    fn post_with_token<'a>(
        &'a self,
        url: &'a Url,
        token: &'a SecretString,
        body: Vec<u8>,
    ) -> PostFuture<'a> {
        Box::pin(self.send(url, Some(token), body))
    }
}

/// A reqwest error as a [`TransportError`], without its URL.
fn map_error(error: reqwest::Error) -> TransportError {
    let error = error.without_url();
    if error.is_timeout() {
        TransportError::Timeout
    } else if error.is_connect() {
        TransportError::Connect(describe(&error))
    } else {
        TransportError::Other(describe(&error))
    }
}

/// The error and its causes, `a: b: c`, masked and bounded.
fn describe(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) && !text.is_empty() {
            parts.push(text);
        }
        source = cause.source();
        if parts.len() >= 8 {
            break;
        }
    }
    let text = redact_secrets(&parts.join(": "));
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 500 {
        text.chars().take(499).chain(['…']).collect()
    } else {
        text
    }
}

/// Query parameters whose values are secrets (`sign` is replayable for an hour).
const SECRET_PARAMS: [&str; 2] = ["access_token=", "sign="];

/// Masks what could be a secret in a text meant for logs or errors: the value of an
/// `access_token=` or `sign=` parameter, and the `user:password@` of a URL.
pub(crate) fn redact_secrets(text: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so `lower` and `text` share char boundaries.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(c) = text.get(i..).and_then(|rest| rest.chars().next()) {
        let rest = lower.get(i..).unwrap_or("");
        // A parameter glued to a word (`design=`) is not one, but an escape before it is no
        // word: `\naccess_token=` in escaped JSON is masked.
        let bytes = text.as_bytes();
        let after_word = i > 0
            && bytes
                .get(i - 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            && !(i > 1 && bytes.get(i - 2) == Some(&b'\\'));
        if !after_word && let Some(param) = SECRET_PARAMS.iter().find(|p| rest.starts_with(**p)) {
            let start = i + param.len();
            let end = text
                .get(start..)
                .and_then(|value| value.find(is_value_end))
                .map_or(text.len(), |len| start + len);
            out.push_str(text.get(i..start).unwrap_or(""));
            out.push_str("***");
            i = end;
            continue;
        }
        if rest.starts_with("://") {
            let start = i + 3;
            let authority = text.get(start..).unwrap_or("");
            let authority = authority
                .find(|c: char| matches!(c, '/' | '?' | '#') || is_value_end(c))
                .map_or(authority, |end| &authority[..end]);
            if let Some(at) = authority.rfind('@') {
                out.push_str("://***@");
                i = start + at + 1;
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Where a query value or URL authority ends in running text.
fn is_value_end(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '&' | '#' | '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '`' | '[' | ']'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    const TOKEN: &str = "0123456789abcdefTOKEN";

    fn url(port: u16) -> Url {
        Url::parse(&format!(
            "http://127.0.0.1:{port}/robot/send?access_token={TOKEN}&timestamp=1700000000000&sign=c2lnbg%3D%3D"
        ))
        .expect("test URL")
    }

    fn transport(timeout: Duration) -> HttpTransport {
        HttpTransport::build(Duration::from_millis(500), timeout, false).expect("client")
    }

    fn assert_clean(error: &TransportError) {
        let text = error.to_string();
        assert!(!text.contains("access_token"), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("c2lnbg"), "{text}");
        let debug = format!("{error:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
    }

    /// Reads one request (headers and `Content-Length` body).
    async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&request).to_string()
    }

    /// A server answering one request with `response`; yields the request it got.
    async fn serve_once(response: Vec<u8>) -> (u16, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let request = read_request(&mut stream).await;
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
                let _ = tx.send(request);
            }
        });
        (port, rx)
    }

    fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_answer() {
        let (port, request) = serve_once(response(
            "200 OK",
            "application/json",
            br#"{"errcode":0,"errmsg":"ok"}"#,
        ))
        .await;
        let body = br#"{"msgtype":"text","text":{"content":"hi"}}"#.to_vec();
        let answer = transport(Duration::from_secs(5))
            .post(&url(port), body.clone())
            .await
            .expect("answer");
        assert_eq!(
            answer,
            HttpAnswer {
                status: 200,
                content_type: Some("application/json".to_owned()),
                body: br#"{"errcode":0,"errmsg":"ok"}"#.to_vec(),
            }
        );
        let request = request.await.expect("request");
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("POST /robot/send?access_token="),
            "{request}"
        );
        assert!(
            lower.contains("content-type: application/json; charset=utf-8\r\n"),
            "{request}"
        );
        assert!(
            lower.contains(&format!(
                "user-agent: dingrelay/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{request}"
        );
        assert!(
            request.ends_with(std::str::from_utf8(&body).unwrap_or("?")),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_500_html_page_is_an_answer() {
        let page = b"<html><body><h1>500 Internal Server Error</h1></body></html>";
        let (port, _request) =
            serve_once(response("500 Internal Server Error", "text/html", page)).await;
        let answer = transport(Duration::from_secs(5))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect("answer");
        assert_eq!(answer.status, 500);
        assert_eq!(answer.content_type.as_deref(), Some("text/html"));
        assert_eq!(answer.body, page.to_vec());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (port, _request) = serve_once(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere?access_token={TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
        .await;
        let answer = transport(Duration::from_secs(5))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect("answer");
        assert_eq!(answer.status, 302);
        assert!(answer.body.is_empty());
    }

    #[tokio::test]
    async fn reads_at_most_64_kib() {
        let big = vec![b'x'; 300 * 1024];
        let (port, _request) = serve_once(response("200 OK", "text/plain", &big)).await;
        let answer = transport(Duration::from_secs(5))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect("answer");
        assert_eq!(answer.body.len(), MAX_ANSWER_BYTES);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            // Accept, read the request, and never answer.
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = read_request(&mut stream).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
        let start = Instant::now();
        let error = transport(Duration::from_millis(300))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect_err("no answer");
        let elapsed = start.elapsed();
        server.abort();
        assert_eq!(error, TransportError::Timeout);
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        assert_clean(&error);
    }

    #[tokio::test]
    async fn connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let error = transport(Duration::from_secs(5))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect_err("refused");
        assert!(matches!(error, TransportError::Connect(_)), "{error:?}");
        assert_clean(&error);
        eprintln!("connection refused: {error}");
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let _ = read_request(&mut stream).await;
                drop(stream);
            }
        });
        let error = transport(Duration::from_secs(5))
            .post(&url(port), b"{}".to_vec())
            .await
            .expect_err("closed");
        assert!(matches!(error, TransportError::Other(_)), "{error:?}");
        assert_clean(&error);
        eprintln!("closed without an answer: {error}");
    }

    #[test]
    fn the_production_client_builds() {
        assert!(HttpTransport::new(Duration::from_secs(5), Duration::from_secs(15)).is_ok());
    }

    #[test]
    fn redacts_tokens_signs_and_credentials() {
        let cases = [
            (
                "error for https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1&sign=x%2B=",
                "error for https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1&sign=***",
            ),
            ("ACCESS_TOKEN=abc def", "ACCESS_TOKEN=*** def"),
            ("(sign=abc)", "(sign=***)"),
            ("design=kept", "design=kept"),
            (
                "proxy http://user:p%40ss@proxy:3128/ refused",
                "proxy http://***@proxy:3128/ refused",
            ),
            (
                "mail a@b.c at https://host/path",
                "mail a@b.c at https://host/path",
            ),
            ("no secrets, 中文 ok", "no secrets, 中文 ok"),
            ("access_token=", "access_token=***"),
            ("://@", "://***@"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_secrets(input), expected, "{input}");
        }
    }
}

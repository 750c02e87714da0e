//! How a request reaches DingTalk: one HTTP client for the process, or a stand-in in tests.

use std::future::Future;
use std::pin::Pin;

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
pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpAnswer, TransportError>> + Send + 'a>>;

/// Posts a JSON body to a URL.
pub trait Transport: Send + Sync + 'static {
    fn post<'a>(&'a self, url: &'a Url, body: Vec<u8>) -> PostFuture<'a>;
}

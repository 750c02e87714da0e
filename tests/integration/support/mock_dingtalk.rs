//! The DingTalk stand-in (crates/mock-dingtalk, the Rust twin of shared/tools/mock-dingtalk) and
//! the few lines that make it dingrelay's [`Transport`]: the stand-in crate does not depend on
//! dingrelay, so the adapter lives here.

#![allow(dead_code, unused_imports)]

use dingrelay::delivery::transport::{HttpAnswer, PostFuture, Transport, TransportError};
use url::Url;

pub use ::mock_dingtalk::*;

/// The stand-in as dingrelay's transport: the POST is handled in-process (no socket), so the
/// daemon's delivery runs under `tokio::time::pause()`. A [`Fault::Reset`] is a request that got
/// no answer.
#[derive(Debug, Clone)]
pub struct MockTransport(pub MockDingTalk);

impl Transport for MockTransport {
    fn post<'a>(&'a self, url: &'a Url, body: Vec<u8>) -> PostFuture<'a> {
        Box::pin(async move {
            match self.0.post(url, &body).await {
                Ok(Answer {
                    status,
                    content_type,
                    body,
                }) => Ok(HttpAnswer {
                    status,
                    content_type,
                    body,
                }),
                Err(dropped) => Err(TransportError::Other(dropped.to_string())),
            }
        })
    }
}

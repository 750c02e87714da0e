//! The DingTalk stand-in (crates/mock-dingtalk, the Rust twin of shared/tools/mock-dingtalk) and
//! the few lines that make it dingrelay's [`Transport`]: the stand-in crate does not depend on
//! dingrelay, so the adapter lives here.

#![allow(dead_code, unused_imports)]

use dingrelay::delivery::transport::{HttpAnswer, PostFuture, Transport, TransportError};
use secrecy::{ExposeSecret, SecretString};
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

    fn post_with_token<'a>(
        &'a self,
        url: &'a Url,
        token: &'a SecretString,
        body: Vec<u8>,
    ) -> PostFuture<'a> {
        Box::pin(async move {
            let body: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|error| TransportError::Other(format!("not JSON: {error}")))?;
            match self
                .0
                .post_app(url, Some(token.expose_secret()), &body)
                .await
            {
                Ok(reply) => Ok(HttpAnswer {
                    status: reply.answer.status,
                    content_type: reply.answer.content_type,
                    body: reply.answer.body,
                }),
                Err(dropped) => Err(TransportError::Other(dropped.to_string())),
            }
        })
    }
}

//! The dry run as a [`Transport`]: a robot whose webhook is unset or `log` prints the exact
//! request it would send (signed, when it has a secret) instead of sending it.
//!
//! Invariants:
//! - the worker treats a dry-run robot like any other: it paces, records the attempt, signs a
//!   fresh URL ([`URL`], DingTalk's with a placeholder token) and posts; only the transport
//!   differs;
//! - every post is answered as DingTalk answers a delivered message (`errcode 0`), even when the
//!   output cannot be written: a dry run never retries or dead-letters;
//! - one block per request on the output, flushed at once:
//!
//! ```text
//! # dry run: robot `ops` would send (messages [1, 2]):
//! POST https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN&timestamp=...&sign=...
//! Content-Type: application/json; charset=utf-8
//!
//! {"msgtype":"text",...}
//!
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use url::Url;

use super::transport::{HttpAnswer, PostFuture, Transport, TransportError};

/// Where a dry-run robot's requests go.
pub const URL: &str = "https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN";

/// Where dry-run robots print the requests they would send (stdout in the daemon).
pub type DryRunOutput = Arc<Mutex<Box<dyn Write + Send>>>;

/// See the [module documentation](self). One per dry-run robot's worker.
pub struct DryRunTransport {
    /// The robot's name, for the output.
    robot: String,
    out: DryRunOutput,
}

impl DryRunTransport {
    /// A transport printing `robot`'s requests to `out`.
    pub fn new(robot: &str, out: DryRunOutput) -> DryRunTransport {
        DryRunTransport {
            robot: robot.to_owned(),
            out,
        }
    }

    /// Prints the request; answers `errcode 0` once it is written. A request that cannot be
    /// printed (stdout closed, say) fails like a send that got no answer, so the message stays
    /// queued and is retried, never counted as delivered unseen.
    fn print(
        &self,
        url: &Url,
        body: &[u8],
        messages: &[i64],
    ) -> Result<HttpAnswer, TransportError> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| TransportError::Other("the dry-run output is poisoned".to_owned()))?;
        writeln!(
            out,
            "# dry run: robot `{}` would send (messages {messages:?}):\nPOST {url}\nContent-Type: application/json; charset=utf-8\n\n{}\n",
            self.robot,
            String::from_utf8_lossy(body)
        )
        .and_then(|()| out.flush())
        .map_err(|error| TransportError::Other(format!("cannot print the dry run: {error}")))?;
        Ok(HttpAnswer {
            status: 200,
            content_type: Some("application/json".to_owned()),
            body: br#"{"errcode":0,"errmsg":"ok"}"#.to_vec(),
        })
    }
}

impl Transport for DryRunTransport {
    /// Without the rows it carries (a worker always names them), the output says `messages []`.
    fn post<'a>(&'a self, url: &'a Url, body: Vec<u8>) -> PostFuture<'a> {
        self.post_messages(url, body, &[])
    }

    fn post_messages<'a>(
        &'a self,
        url: &'a Url,
        body: Vec<u8>,
        messages: &[i64],
    ) -> PostFuture<'a> {
        Box::pin(std::future::ready(self.print(url, &body, messages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::classify::{Verdict, classify};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn prints_the_request_and_answers_delivered() {
        let printed = Shared::default();
        let transport =
            DryRunTransport::new("ops", Arc::new(Mutex::new(Box::new(printed.clone()))));
        let url = Url::parse(URL).unwrap();
        let answer = transport
            .post_messages(&url, br#"{"msgtype":"text"}"#.to_vec(), &[3, 4])
            .await;
        assert_eq!(classify(answer), Verdict::Delivered);
        let printed = String::from_utf8(printed.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            printed,
            "# dry run: robot `ops` would send (messages [3, 4]):\n\
             POST https://oapi.dingtalk.com/robot/send?access_token=DRY-RUN\n\
             Content-Type: application/json; charset=utf-8\n\
             \n\
             {\"msgtype\":\"text\"}\n\n"
        );
    }

    /// Output that refuses every write (a closed stdout).
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_printed_is_retried_not_delivered() {
        let transport = DryRunTransport::new("ops", Arc::new(Mutex::new(Box::new(Closed))));
        let url = Url::parse(URL).unwrap();
        let answer = transport
            .post_messages(&url, br#"{"msgtype":"text"}"#.to_vec(), &[3])
            .await;
        assert!(
            matches!(classify(answer), Verdict::Transient { .. }),
            "a dry run that printed nothing is not a delivery"
        );
    }
}

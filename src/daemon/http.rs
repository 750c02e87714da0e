//! The HTTP server: axum's router on hyper, with the limits a daemon facing the network needs and
//! `axum::serve` does not set.
//!
//! - **Header timeout**: a connection must send a request's headers within `HEADER_TIMEOUT` of
//!   being ready for one, which also closes kept-alive connections idle that long. Without it a
//!   client sending partial headers holds a connection (and a file descriptor) forever.
//! - **A cap on connections** (`MAX_CONNECTIONS`): past it, new connections are closed at once,
//!   so a flood of idle sockets cannot exhaust the process's file descriptors (the unit's
//!   `LimitNOFILE` is well above the cap) and requests on open connections keep being served.
//! - **Accept errors** (out of file descriptors, say) are logged, at most a line a second, and
//!   accepting resumes after a short pause instead of spinning.
//! - **Graceful shutdown**: when the signal fires, no new connection is accepted and the requests
//!   in flight finish; the caller bounds the wait.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a connection may take to send a request's headers, and stay idle between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections at most; systemd/dingrelay.service sets `LimitNOFILE` well above it. High
/// enough that a flood of a thousand or two slow connections does not shut out senders before
/// the header timeout closes them.
pub const MAX_CONNECTIONS: usize = 4096;

/// The limits, injectable so tests use small ones.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true, then waits for the connections' requests
/// in flight (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut last_error_log: Option<tokio::time::Instant> = None;
    let mut last_full_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                if once_a_second(&mut last_error_log) {
                    tracing::warn!("Cannot accept a connection; retrying shortly: {error}.");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if once_a_second(&mut last_full_log) {
                tracing::warn!(
                    max = limits.max_connections,
                    "Too many open connections; closing new ones until some end."
                );
            }
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection that ends in an error (a client gone mid-request) is no news.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// True at most once a second per `last` (for log lines that a flood would repeat).
fn once_a_second(last: &mut Option<tokio::time::Instant>) -> bool {
    let now = tokio::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
        return false;
    }
    *last = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, router, limits, stop_rx));
        (addr, stop)
    }

    /// The start of the answer to a GET on `stream`; empty when the server closed it.
    async fn get(stream: &mut TcpStream) -> String {
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .is_err()
        {
            return String::new();
        }
        let mut buf = vec![0; 1024];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn partial_headers_are_cut_off_after_the_header_timeout() {
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 8,
        };
        let (addr, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /hooks/am HTTP/1.1\r\nHost: te")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = vec![0; 1024];
        // The server answers (408 or nothing) and closes the connection; it does not wait forever.
        let closed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match slow.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "still open after a minute");
        let waited = tokio::time::Instant::now() - started;
        assert!(waited >= Duration::from_secs(10), "{waited:?}");
        assert!(waited < Duration::from_secs(60), "{waited:?}");
        // Others are served meanwhile and after.
        let mut good = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut good).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_new_connections_are_closed_and_open_ones_still_served() {
        let limits = Limits {
            header_timeout: Duration::from_secs(3600),
            max_connections: 2,
        };
        let (addr, _stop) = start(limits).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut second).await.starts_with("HTTP/1.1 200"));
        // A third is accepted and closed at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let _ = third
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await;
        let mut buf = vec![0; 64];
        assert!(matches!(third.read(&mut buf).await, Ok(0) | Err(_)));
        // The open ones keep being served; once one ends, a new one gets in.
        assert!(get(&mut first).await.starts_with("HTTP/1.1 200"));
        drop(second);
        let mut fourth = loop {
            let mut candidate = TcpStream::connect(addr).await.unwrap();
            let answer = get(&mut candidate).await;
            if answer.starts_with("HTTP/1.1 200") {
                break candidate;
            }
            tokio::task::yield_now().await;
        };
        assert!(get(&mut fourth).await.starts_with("HTTP/1.1 200"));
    }
}

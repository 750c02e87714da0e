//! Talking to systemd: readiness, reloads, shutdown and the watchdog, over the `sd_notify(3)`
//! protocol (one datagram of `KEY=value` lines to the socket named by `NOTIFY_SOCKET`).
//!
//! What is sent when:
//!
//! | call | when the daemon makes it | datagram |
//! |---|---|---|
//! | [`ready`] | the listener is bound and the outbox is open, so a webhook is answered and its messages are kept; again at the end of every reload, whether the new rules were taken or refused | `READY=1`, `STATUS=...` |
//! | [`reloading`] | on SIGHUP, before `rules.yaml` is read again | `RELOADING=1`, `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>`, `STATUS=...` |
//! | [`stopping`] | when shutdown begins (SIGTERM or SIGINT) | `STOPPING=1`, `STATUS=...` |
//! | [`status`] | any time: the one line `systemctl status` shows as `Status:` | `STATUS=<text>` |
//! | [`spawn_watchdog`] | every half `WatchdogSec=`, from a tokio task, while the runtime runs | `WATCHDOG=1` |
//!
//! `Type=notify-reload` (systemd 253 and later) sends SIGHUP on `systemctl reload` and then waits
//! for `RELOADING=1` carrying a `MONOTONIC_USEC=` no older than the signal, then for `READY=1`.
//! The timestamp is read with [`sd_notify::NotifyState::monotonic_usec_now`], which calls
//! `clock_gettime(CLOCK_MONOTONIC)`: the clock systemd compares it with. (`std` has no way to read
//! that clock as a number: `Instant` is opaque, and `/proc/uptime` is `CLOCK_BOOTTIME`, which runs
//! ahead of it after a suspend.) So [`reloading`] must be called after the signal arrived, never
//! ahead of time. With `Type=notify` (older systemd) the extra field is ignored.
//!
//! Not started by systemd (no `NOTIFY_SOCKET`), every function does nothing. None of them fails or
//! panics: a notification that cannot be sent is logged, and the daemon goes on serving, since
//! systemd itself notices what is missing (a start or reload timeout, a watchdog timeout).
//!
//! The watchdog proves that the tokio runtime still schedules tasks and fires timers: a runtime
//! whose worker threads are all stuck stops feeding it, and systemd kills and restarts the service
//! after `WatchdogSec=`. It does not prove that every part of the daemon makes progress.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// The longest `STATUS=` text sent. systemd drops a whole notification larger than its buffer
/// (4096 bytes), and `systemctl status` shows one line anyway.
const STATUS_MAX_BYTES: usize = 1024;

/// Tells systemd the daemon is ready: listening, with the outbox open. Sent at start and at the
/// end of every reload.
pub fn ready() {
    notify(
        "ready",
        &[
            NotifyState::Ready,
            NotifyState::Status("Ready: receiving webhooks."),
        ],
    );
}

/// Tells systemd a reload has begun (`RELOADING=1` with `MONOTONIC_USEC=`, as
/// `Type=notify-reload` requires). Call it when SIGHUP arrives, before reading the config; end the
/// reload with [`ready`], whether the new config was taken or refused.
pub fn reloading() {
    if !enabled() {
        return;
    }
    let status = NotifyState::Status("Reloading the rules.");
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify("reloading", &[NotifyState::Reloading, now, status]),
        Err(error) => {
            tracing::warn!(
                "Cannot read the monotonic clock for systemd: {error}; the reload is announced without it."
            );
            notify("reloading", &[NotifyState::Reloading, status]);
        }
    }
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    notify(
        "stopping",
        &[
            NotifyState::Stopping,
            NotifyState::Status("Stopping: finishing sends in flight."),
        ],
    );
}

/// Sets the one-line status `systemctl status` shows. Line breaks and other control characters
/// become spaces (a line break would start another `KEY=value` assignment), and the text is cut
/// at 1024 bytes.
pub fn status(text: &str) {
    if !enabled() {
        return;
    }
    let line = one_line(text);
    notify("status", &[NotifyState::Status(&line)]);
}

/// Starts feeding the systemd watchdog when systemd asked for one (`WatchdogSec=`, which sets
/// `WATCHDOG_USEC`): a tokio task sends `WATCHDOG=1` now and then every half of the interval.
/// Returns `None`, doing nothing, without `NOTIFY_SOCKET`, without a watchdog, or when called
/// outside a tokio runtime. Abort the returned task at the end of the shutdown.
pub fn spawn_watchdog() -> Option<JoinHandle<()>> {
    if !enabled() {
        return None;
    }
    let timeout = sd_notify::watchdog_enabled()?;
    let every = timeout / 2;
    if every.is_zero() {
        tracing::warn!(
            "systemd asked for a watchdog of {timeout:?}, too short to feed; it is not fed."
        );
        return None;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("The systemd watchdog can only be fed from a tokio runtime; it is not fed.");
        return None;
    };
    tracing::debug!(
        timeout = ?timeout,
        every = ?every,
        "Feeding the systemd watchdog."
    );
    Some(runtime.spawn(feed_watchdog(every)))
}

/// Sends `WATCHDOG=1` every `every`, forever. Logs the first failure of a run of failures only.
async fn feed_watchdog(every: Duration) {
    let mut ticks = tokio::time::interval(every);
    // After a stall, one ping and then the regular pace again: no burst of catch-up pings.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match sd_notify::notify(&[NotifyState::Watchdog]) {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(
                    "Cannot feed the systemd watchdog: {error}; systemd restarts the service if this lasts."
                );
            }
            Err(_) => {}
        }
    }
}

/// Whether systemd listens: `NOTIFY_SOCKET` is set and not empty.
fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|socket| !socket.is_empty())
}

/// Sends `states` as one datagram when systemd listens; logs a failure.
fn notify(what: &str, states: &[NotifyState]) {
    if !enabled() {
        return;
    }
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(notification = what, "Cannot notify systemd: {error}.");
    }
}

/// `text` as one line of at most [`STATUS_MAX_BYTES`] bytes, cut at a character boundary.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(STATUS_MAX_BYTES));
    for c in text.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if line.len() + c.len_utf8() > STATUS_MAX_BYTES {
            break;
        }
        line.push(c);
    }
    line
}

#[cfg(test)]
mod tests {
    //! The notifications are checked in child processes: each scenario is an ignored test that
    //! this test binary runs again in a process of its own, with `NOTIFY_SOCKET` and
    //! `WATCHDOG_USEC` given to it at spawn. So no test changes the environment of the shared,
    //! multithreaded test process (`std::env::set_var` is unsafe there), and scenarios cannot race.

    use std::io::ErrorKind;
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::*;

    /// Set in the child processes only: the scenarios do nothing without it.
    const CHILD: &str = "DINGRELAY_SYSTEMD_TEST_CHILD";

    /// `WATCHDOG_USEC` given to the child: a ping every 100 ms.
    const WATCHDOG_USEC: &str = "200000";

    /// A directory of its own under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "dingrelay-systemd-{}-{nanos}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The scenario test `name` in a new process of this test binary, with `env` and without any
    /// notification variable inherited from the environment `cargo test` runs in.
    fn child(name: &str, env: &[(&str, &str)]) -> std::process::Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                // This module's path without the crate: the test's name in the harness.
                &format!("{}::{name}", module_path!().split_once("::").unwrap().1),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().unwrap()
    }

    /// Asserts the child exited 0 after running exactly its one scenario.
    fn assert_passed(name: &str, output: &Output) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "scenario {name} failed: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn monotonic_usec() -> i128 {
        match NotifyState::monotonic_usec_now().unwrap() {
            NotifyState::MonotonicUsec(usec) => usec,
            other => panic!("not a monotonic time: {other:?}"),
        }
    }

    #[test]
    fn notifications_reach_the_socket() {
        let dir = TempDir::new();
        let path = dir.0.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();

        let before = monotonic_usec();
        let running = child(
            "with_notify_socket",
            &[
                ("NOTIFY_SOCKET", path.to_str().unwrap()),
                ("WATCHDOG_USEC", WATCHDOG_USEC),
            ],
        );
        // Read while the child runs: a datagram socket queues only a few datagrams, and a full
        // queue would block the child.
        let mut datagrams = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = match socket.recv(&mut buffer) {
                Ok(n) => n,
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(error) => panic!("recv: {error}"),
            };
            let datagram = String::from_utf8(buffer[..n].to_vec()).unwrap();
            let last = datagram.contains("STOPPING=1");
            datagrams.push(datagram);
            if last {
                break;
            }
        }
        let output = running.wait_with_output().unwrap();
        let after = monotonic_usec();
        assert_passed("with_notify_socket", &output);

        let lines: Vec<Vec<&str>> = datagrams.iter().map(|d| d.lines().collect()).collect();
        assert!(lines.len() >= 6, "too few datagrams: {datagrams:?}");
        // Every line is one KEY=value assignment, and every datagram ends with a newline.
        for datagram in &datagrams {
            assert!(datagram.ends_with('\n'), "{datagram:?}");
        }

        assert_eq!(lines[0], ["READY=1", "STATUS=Ready: receiving webhooks."]);

        assert_eq!(lines[1].len(), 3, "{:?}", lines[1]);
        assert_eq!(lines[1][0], "RELOADING=1");
        let usec = lines[1][1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {:?}", lines[1]));
        assert!(usec.bytes().all(|b| b.is_ascii_digit()), "{usec}");
        // The same clock as systemd's: read between two readings of CLOCK_MONOTONIC here.
        let usec: i128 = usec.parse().unwrap();
        assert!(
            before <= usec && usec <= after,
            "{before} <= {usec} <= {after}"
        );
        assert_eq!(lines[1][2], "STATUS=Reloading the rules.");

        // A line break in a status cannot smuggle in another assignment.
        assert_eq!(
            lines[2],
            ["STATUS=Reload refused: rules.yaml:3:14: bad MAINPID=1"]
        );

        let pings = &lines[3..lines.len() - 1];
        assert!(pings.len() >= 2, "too few watchdog pings: {datagrams:?}");
        for ping in pings {
            assert_eq!(*ping, ["WATCHDOG=1"]);
        }

        assert_eq!(
            lines[lines.len() - 1],
            ["STOPPING=1", "STATUS=Stopping: finishing sends in flight."]
        );
    }

    #[test]
    fn nothing_happens_without_notify_socket() {
        let running = child("without_notify_socket", &[("WATCHDOG_USEC", WATCHDOG_USEC)]);
        assert_passed(
            "without_notify_socket",
            &running.wait_with_output().unwrap(),
        );
    }

    #[test]
    fn a_missing_socket_is_not_an_error() {
        let dir = TempDir::new();
        let path = dir.0.join("nobody-listens");
        let running = child(
            "with_missing_socket",
            &[
                ("NOTIFY_SOCKET", path.to_str().unwrap()),
                ("WATCHDOG_USEC", WATCHDOG_USEC),
            ],
        );
        assert_passed("with_missing_socket", &running.wait_with_output().unwrap());
    }

    #[test]
    fn status_is_one_bounded_line() {
        assert_eq!(one_line("  a\nb\r\nc\td  "), "a b  c d");
        let long = "告".repeat(1000);
        let cut = one_line(&long);
        assert!(cut.len() <= STATUS_MAX_BYTES && cut.len() > STATUS_MAX_BYTES - 3);
        assert!(cut.chars().all(|c| c == '告'));
    }

    // ---- Scenarios, run in child processes by the tests above ----------------------------------

    fn in_child() -> bool {
        std::env::var_os(CHILD).is_some()
    }

    #[test]
    #[ignore = "a scenario: run in a child process by notifications_reach_the_socket"]
    fn with_notify_socket() {
        if !in_child() {
            return;
        }
        // Outside a runtime there is no task to feed the watchdog: nothing, no panic.
        assert!(spawn_watchdog().is_none());
        ready();
        reloading();
        status("Reload refused: rules.yaml:3:14: bad\nMAINPID=1");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let watchdog = spawn_watchdog().expect("WATCHDOG_USEC is set");
            // Pings at 0, 100, 200 and 300 ms. The yields let a ping that fell due while this
            // process was not scheduled go out before the abort.
            tokio::time::sleep(Duration::from_millis(350)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            watchdog.abort();
            let _ = watchdog.await;
        });
        stopping();
    }

    #[test]
    #[ignore = "a scenario: run in a child process by nothing_happens_without_notify_socket"]
    fn without_notify_socket() {
        if !in_child() {
            return;
        }
        ready();
        reloading();
        status("nobody listens");
        stopping();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // WATCHDOG_USEC alone is not enough: without NOTIFY_SOCKET nobody is fed.
        runtime.block_on(async { assert!(spawn_watchdog().is_none()) });
    }

    #[test]
    #[ignore = "a scenario: run in a child process by a_missing_socket_is_not_an_error"]
    fn with_missing_socket() {
        if !in_child() {
            return;
        }
        ready();
        reloading();
        status("nobody listens");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let watchdog = spawn_watchdog().expect("WATCHDOG_USEC is set");
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(250)).await;
            // The task keeps running through failed sends.
            assert!(!watchdog.is_finished(), "{:?}", started.elapsed());
            watchdog.abort();
        });
        stopping();
    }
}

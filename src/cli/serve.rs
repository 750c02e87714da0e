//! `dingrelay serve`: loads the config and audits it as `check` does (refusing what `check` and a
//! reload refuse), binds the listener, and runs the daemon until SIGTERM or SIGINT.
//!
//! The handlers of SIGTERM, SIGINT and SIGHUP are installed before the address is bound: from the
//! moment a sender or a supervisor can see the daemon, a signal is a clean shutdown (its last
//! lines, "Shutting down" and "Stopped", logged, and exit 0) or a reload, acted on as soon as
//! start-up is done, never the default action, which ends the process at once without a line.
//! Log lines are written to stderr unbuffered, each whole as it happens, so nothing of them is
//! left to flush at exit.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::output::exit_code;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::daemon::{self, Services};
use crate::delivery::transport::HttpTransport;
use crate::metrics::Metrics;

/// Runs the daemon. Why it cannot start goes to `err`; `out` is unused (dry-run robots print to
/// the process's stdout from the daemon's threads). Returns the exit code: 0 after a clean
/// shutdown, 1 when it cannot start.
pub fn run(config_path: &Path, _out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => return exit_code(cannot_load(config_path, &error, err), 1),
    };
    // Start-up refuses exactly what `check` and a reload refuse.
    let audit = crate::config::audit(&config, jiff::Timestamp::now());
    if !audit.passed() {
        let report = audit.problem_report(&config_path.display().to_string());
        let written = writeln!(err, "{report}").and_then(|()| {
            writeln!(
                err,
                "dingrelay cannot start: fix {} (dingrelay check shows every problem; a reload refuses the same)",
                config_path.display()
            )
        });
        return exit_code(written.map(|()| 1), 1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let written = writeln!(err, "error: cannot start the async runtime: {error}");
            return exit_code(written.map(|()| 1), 1);
        }
    };
    runtime.block_on(async {
        let signals = Signals::install();
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(listen = %config.listen, "Cannot start: cannot listen on {}: {error}. Is another process using the address? Change `listen` in the config.", config.listen);
                return 1;
            }
        };
        let transport = match HttpTransport::new(config.delivery.connect_timeout, config.delivery.send_timeout) {
            Ok(transport) => transport,
            Err(error) => {
                tracing::error!("Cannot build the HTTP client: {error}.");
                return 1;
            }
        };
        let services = Services {
            transport: Arc::new(transport),
            clock: Clock::system(),
            dry_run: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            config_path: Some(config_path.to_path_buf()),
            metrics: Arc::new(Metrics::new()),
        };
        let hangups = hangups(signals.hangup);
        let shutdown = shutdown_signal(signals.terminate, signals.interrupt);
        match daemon::run(config, listener, shutdown, hangups, services).await {
            Ok(()) => 0,
            Err(daemon::ServeError::Outbox(error)) => {
                tracing::error!("Cannot start: {error}. Check that state_dir exists and is writable by this user.");
                1
            }
            Err(error @ daemon::ServeError::App(_)) => {
                tracing::error!("Cannot start: {error}.");
                1
            }
            Err(error) => {
                tracing::error!("The daemon stopped on an error: {error}.");
                1
            }
        }
    })
}

/// Says why the config does not load: its errors, then that the daemon cannot start.
fn cannot_load(config_path: &Path, error: &ConfigError, err: &mut dyn Write) -> io::Result<u8> {
    writeln!(err, "{error}")?;
    writeln!(
        err,
        "dingrelay cannot start: fix {} (dingrelay check shows every problem)",
        config_path.display()
    )?;
    Ok(1)
}

/// The signals `serve` acts on, each listened for from [`Signals::install`] on (`None` when it
/// cannot be: then the signal keeps its default action, as the WARN line says).
struct Signals {
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
    hangup: Option<Signal>,
}

impl Signals {
    /// Listens for SIGTERM, SIGINT and SIGHUP from now on: one that arrives before anything waits
    /// for it is kept until then. Must run inside the runtime.
    fn install() -> Signals {
        let listen = |kind: SignalKind, name: &str, otherwise: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(
                    signal = name,
                    "Cannot listen for {name}; {otherwise}: {error}."
                );
                None
            }
        };
        Signals {
            terminate: listen(
                SignalKind::terminate(),
                "SIGTERM",
                "it ends the process without a clean shutdown",
            ),
            interrupt: listen(
                SignalKind::interrupt(),
                "SIGINT",
                "it ends the process without a clean shutdown",
            ),
            hangup: listen(SignalKind::hangup(), "SIGHUP", "reload by restarting"),
        }
    }
}

/// A message for every SIGHUP: `systemctl reload` (and `kill -HUP`) reload the config.
fn hangups(hangup: Option<Signal>) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    if let Some(mut signal) = hangup {
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                tracing::info!("Received SIGHUP: reloading the config.");
                // A reload already waiting covers this one too.
                let _ = tx.try_send(());
            }
        });
    }
    rx
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal(terminate: Option<Signal>, interrupt: Option<Signal>) {
    tokio::select! {
        () = received(terminate) => tracing::info!("Received SIGTERM."),
        () = received(interrupt) => tracing::info!("Received SIGINT."),
    }
}

/// Completes when `signal` arrives (or can no longer); never without one.
async fn received(signal: Option<Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

//! `dingrelay serve`: loads the config and audits it as `check` does (refusing what `check` and a
//! reload refuse), binds the listener, and runs the daemon until SIGTERM or SIGINT.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::output::exit_code;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::daemon::{self, Services};
use crate::delivery::transport::HttpTransport;
use crate::metrics::Metrics;

/// Runs the daemon. Returns the exit code: 0 after a clean shutdown, 1 when it cannot start.
pub fn run(config_path: &Path, out: &mut dyn Write) -> u8 {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => return exit_code(cannot_load(config_path, &error, out), 1),
    };
    // Start-up refuses exactly what `check` and a reload refuse.
    let audit = crate::config::audit(&config, jiff::Timestamp::now());
    if !audit.passed() {
        let report = audit.problem_report(&config_path.display().to_string());
        let written = writeln!(out, "{report}").and_then(|()| {
            writeln!(
                out,
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
            let written = writeln!(out, "error: cannot start the async runtime: {error}");
            return exit_code(written.map(|()| 1), 1);
        }
    };
    runtime.block_on(async {
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
        match daemon::run(config, listener, shutdown_signal(), hangups(), services).await {
            Ok(()) => 0,
            Err(daemon::ServeError::Outbox(error)) => {
                tracing::error!("Cannot start: {error}. Check that state_dir exists and is writable by this user.");
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
fn cannot_load(config_path: &Path, error: &ConfigError, out: &mut dyn Write) -> io::Result<u8> {
    writeln!(out, "{error}")?;
    writeln!(
        out,
        "dingrelay cannot start: fix {} (dingrelay check shows every problem)",
        config_path.display()
    )?;
    Ok(1)
}

/// A message for every SIGHUP: `systemctl reload` (and `kill -HUP`) reload the config.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut signal) => {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    tracing::info!("Received SIGHUP: reloading the config.");
                    // A reload already waiting covers this one too.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(error) => tracing::warn!("Cannot listen for SIGHUP; reload by restarting: {error}."),
    }
    rx
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("Cannot listen for SIGTERM: {error}.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("Received SIGTERM."),
        _ = tokio::signal::ctrl_c() => tracing::info!("Received SIGINT."),
    }
}

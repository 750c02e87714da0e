//! `dingrelay serve`: the daemon. Wires intake, outbox and one worker per robot together.
//!
//! Everything that varies is injected, so tests drive it: the listener (port 0 in tests), the
//! shutdown signal (a future), the clock (tokio's, pausable), the transport to DingTalk (an
//! in-process stand-in in tests) and where dry-run robots print.
//!
//! Shutdown: when the signal fires, intake stops accepting connections and finishes the requests
//! in flight, workers finish the send in flight, and the outbox is closed; all bounded by
//! `shutdown_timeout`. Pending messages stay in the outbox for the next start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::transport::Transport;
use crate::delivery::worker::{DryRunOutput, Worker};
use crate::intake::{self, Intake};
use crate::outbox::{Outbox, OutboxError};

/// What the daemon runs with besides its config.
pub struct Services {
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    pub dry_run: DryRunOutput,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// How often delivered rows past `keep_delivered` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A started daemon: outbox open, one worker per robot running, intake ready to be served.
pub struct Daemon {
    config: Arc<Config>,
    outbox: Outbox,
    intake: Arc<Intake>,
    workers: Vec<JoinHandle<()>>,
    pruner: JoinHandle<()>,
    /// Turns true to stop the workers.
    stop: watch::Sender<bool>,
}

impl Daemon {
    /// Opens the outbox and starts the workers. Intake is served by [`run`] (or, in tests,
    /// through [`Daemon::router`] without a socket).
    pub async fn start(config: Config, services: Services) -> Result<Daemon, ServeError> {
        let config = Arc::new(config);
        let outbox = Outbox::open(&config.state_dir)?;
        let (stop, stop_rx) = watch::channel(false);
        let mut wake = HashMap::new();
        let mut workers = Vec::new();
        for robot in config.robots.values() {
            let notify = Arc::new(Notify::new());
            wake.insert(robot.name.clone(), notify.clone());
            let worker = Worker {
                robot: robot.clone(),
                settings: config
                    .robot_delivery
                    .get(&robot.name)
                    .cloned()
                    .unwrap_or_default(),
                outbox: outbox.clone(),
                transport: services.transport.clone(),
                clock: services.clock,
                send_timeout: config.delivery.send_timeout,
                wake: notify,
                shutdown: stop_rx.clone(),
                dry_run: services.dry_run.clone(),
            };
            workers.push(tokio::spawn(worker.run()));
        }
        let pruner = tokio::spawn(prune(
            outbox.clone(),
            services.clock,
            config.delivery.keep_delivered,
            stop_rx,
        ));
        let intake = Arc::new(Intake {
            config: config.clone(),
            outbox: outbox.clone(),
            wake,
            clock: services.clock,
        });
        Ok(Daemon {
            config,
            outbox,
            intake,
            workers,
            pruner,
            stop,
        })
    }

    /// The HTTP routes of every source.
    pub fn router(&self) -> axum::Router {
        intake::router(self.intake.clone())
    }

    /// The outbox the daemon uses.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stops the workers once their send in flight is done (bounded by `deadline`) and closes
    /// the outbox. Pending messages stay for the next start.
    pub async fn stop(self, deadline: tokio::time::Instant) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            if tokio::time::timeout_at(deadline, worker).await.is_err() {
                tracing::warn!(
                    "A send was still in flight at the shutdown timeout; it is sent again at the next start."
                );
            }
        }
        self.pruner.abort();
        self.outbox.close().await;
    }
}

/// Runs the daemon on `listener` until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    services: Services,
) -> Result<(), ServeError> {
    let daemon = Daemon::start(config, services).await?;
    let config = daemon.config.clone();
    let local = listener.local_addr().map_err(ServeError::Http)?;
    for source in config.sources.values() {
        tracing::info!(
            source = %source.name,
            kind = %source.kind,
            url = %format!("http://{local}{}", source.path),
            "Ready to receive webhooks."
        );
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}.");
    }

    let (signal_tx, mut signal_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_tx.send(true);
    });
    let mut server_signal = signal_rx.clone();
    let server = axum::serve(listener, daemon.router()).with_graceful_shutdown(async move {
        stopped(&mut server_signal).await;
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut server => {
            // The server ended without a signal: only an I/O error does that.
            daemon.stop(tokio::time::Instant::now() + config.delivery.shutdown_timeout).await;
            return match result {
                Ok(Err(error)) => Err(ServeError::Http(error)),
                _ => Ok(()),
            };
        }
        _ = stopped(&mut signal_rx) => {}
    }

    tracing::info!("Shutting down: no new webhooks; finishing sends in flight.");
    let deadline = tokio::time::Instant::now() + config.delivery.shutdown_timeout;
    // Intake first, so every request that got in is answered, then the workers.
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Err(error))) => tracing::warn!("The HTTP server stopped with an error: {error}."),
        Ok(_) => {}
        Err(_) => tracing::warn!(
            "Requests still open at the shutdown timeout were cut off; their senders retry."
        ),
    }
    daemon.stop(deadline).await;
    tracing::info!("Stopped; pending messages stay in the outbox for the next start.");
    Ok(())
}

/// Completes when the flag turns true (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await.map(|_| ());
}

/// Deletes delivered rows older than `keep` and old attempt records, hourly.
async fn prune(outbox: Outbox, clock: Clock, keep: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        let now = clock.now_ms();
        match outbox
            .prune(now - keep.as_millis() as i64, now - 600_000)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "Pruned delivered messages from the outbox."),
            Err(error) => tracing::warn!("Could not prune the outbox: {error}."),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

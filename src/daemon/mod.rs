//! `dingrelay serve`: the daemon. Wires intake, outbox and one worker per robot together, and
//! reloads the config on SIGHUP (or `POST /-/reload`).
//!
//! Everything that varies is injected, so tests drive it: the listener (port 0 in tests), the
//! shutdown and reload signals, the clock (tokio's, pausable), the transport to DingTalk (an
//! in-process stand-in in tests) and where dry-run robots print.
//!
//! Start-up takes a config that passed its [audit](mod@crate::config::audit) (what `check` and a
//! reload run): `dingrelay serve` refuses, before anything starts, exactly what they refuse.
//!
//! Reload: the new file is loaded and validated fully, audit included; an invalid file is
//! refused, its errors logged, and the running config stays. A valid one is
//! swapped in atomically for intake (requests in flight finish on the config they started with),
//! then every worker is restarted on it, each after its send in flight. A robot keeps its rate
//! limiter and any throttle pause across reloads (unless its rate changes). Messages queued for a
//! robot the new config no longer has stay in the outbox and are reported; they go out again if
//! the robot comes back.
//!
//! Shutdown: when the signal fires, intake stops accepting connections and finishes the requests
//! in flight, workers finish the send in flight, and the outbox is closed; all bounded by
//! `shutdown_timeout`. Pending messages stay in the outbox for the next start. Every shutdown on
//! the signal logs "Shutting down" first and "Stopped" last, whichever part ends first.

pub mod http;
pub mod systemd;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Audit, Config, ConfigError};
use crate::console::jsapi::Tickets;
use crate::console::link::Signer;
use crate::console::web::Console;
use crate::delivery::app_send::AppClient;
use crate::delivery::app_token::TokenError;
use crate::delivery::transport::Transport;
use crate::delivery::worker::{DryRunOutput, RobotRuntime, Worker};
use crate::intake::refusals::RefusalLog;
use crate::intake::{self, Intake, ReloadRequest};
use crate::metrics::{Metrics, ReloadResult};
use crate::outbox::{Outbox, OutboxError};
use crate::routing::{EventRouter, Live};

/// What the daemon runs with besides its config.
pub struct Services {
    pub transport: Arc<dyn Transport>,
    pub clock: Clock,
    pub dry_run: DryRunOutput,
    /// Where a reload reads the config from; `None` when the config did not come from a file
    /// (tests), and reloading then re-validates nothing and refuses.
    pub config_path: Option<PathBuf>,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    /// DingTalk refused an app's appKey or appSecret: nothing of that app could ever be sent.
    #[error("{0}; fix the app's `app_key` and `app_secret` in the config")]
    App(TokenError),
}

/// Why a reload was refused; the running config stays. Its `Display` is what the operator reads
/// (in the log and in the answer to `POST /-/reload`).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The running config did not come from a file (tests), so there is nothing to reload.
    #[error("the config was not loaded from a file")]
    NotFromFile,
    /// The file cannot be read or is not a valid config.
    #[error("{0}")]
    Load(#[from] ConfigError),
    /// The file loads, but its audit finds errors (a sample render fails, say): told the way
    /// `dingrelay check` tells them.
    #[error("{}", .audit.problem_report(.file_name))]
    Audit { file_name: String, audit: Audit },
    /// The task loading the file failed.
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// DingTalk refused the appKey or appSecret of an app the new config changes.
    #[error("{0}; fix the app's `app_key` and `app_secret`")]
    App(TokenError),
}

/// How often delivered rows past `keep_delivered` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long a period of refused requests lasts before its summary line ([`RefusalLog`]).
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How long a reload waits for a worker's send in flight before starting its successor anyway.
const RELOAD_WORKER_GRACE: Duration = Duration::from_secs(30);

/// A running worker.
struct RunningWorker {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
    runtime: Arc<RobotRuntime>,
}

/// A started daemon: outbox open, one worker per robot running, intake ready to be served.
pub struct Daemon {
    live: Arc<ArcSwap<Live>>,
    outbox: Outbox,
    intake: Arc<Intake>,
    workers: HashMap<String, RunningWorker>,
    /// Each app's token cache and pace, by app name; kept across reloads while the app's
    /// credentials stay the same.
    apps: HashMap<String, Arc<AppClient>>,
    /// The web console, when configured (at start: a reload does not change it).
    console: Option<Arc<Console>>,
    pruner: JoinHandle<()>,
    /// Routes stored events into messages.
    router: JoinHandle<()>,
    /// Stops the router, the pruner and the refusal summaries.
    pruner_stop: watch::Sender<bool>,
    refusal_summaries: JoinHandle<()>,
    services: Services,
    /// `POST /-/reload` requests, answered by [`Daemon::run_until`].
    reloads: mpsc::Receiver<ReloadRequest>,
}

impl Daemon {
    /// Opens the outbox and starts the workers. Intake is served by [`run`] (or, in tests,
    /// through [`Daemon::router`] without a socket).
    pub async fn start(config: Config, services: Services) -> Result<Daemon, ServeError> {
        let config = Arc::new(config);
        let outbox = Outbox::open(&config.state_dir)?;
        // Before serving: the first senders do not wait for the dedup window to be read.
        outbox
            .load_recent_keys(
                config.intake.dedup_window.as_millis() as i64,
                services.clock.now_ms(),
            )
            .await?;
        let (pruner_stop, pruner_rx) = watch::channel(false);
        let pruner = tokio::spawn(prune(
            outbox.clone(),
            services.clock,
            config.delivery.keep_delivered,
            config.intake.keep_events,
            pruner_rx,
        ));
        let (reload_tx, reloads) = mpsc::channel(4);
        let live = Arc::new(ArcSwap::from_pointee(Live {
            config: config.clone(),
            wake: HashMap::new(),
        }));
        let router_wake = Arc::new(Notify::new());
        let intake = Arc::new(Intake {
            live: live.clone(),
            outbox: outbox.clone(),
            clock: services.clock,
            metrics: services.metrics.clone(),
            reload: reload_tx,
            refusals: RefusalLog::new(REFUSAL_SUMMARY_EVERY),
            router: router_wake.clone(),
            body_budget: intake::body_budget(intake::BODY_BUDGET),
        });
        let refusal_summaries = tokio::spawn(summarize_refusals(
            intake.clone(),
            services.clock,
            pruner_stop.subscribe(),
        ));
        let router = tokio::spawn(
            EventRouter {
                outbox: outbox.clone(),
                live: live.clone(),
                clock: services.clock,
                metrics: services.metrics.clone(),
                wake: router_wake,
                shutdown: pruner_stop.subscribe(),
            }
            .run(),
        );
        let apps = verified_apps(&config, &HashMap::new(), &services)
            .await
            .map_err(ServeError::App)?;
        let console = console(&config, &apps, &outbox, services.clock);
        let mut daemon = Daemon {
            live,
            outbox,
            intake,
            workers: HashMap::new(),
            apps,
            console,
            pruner,
            router,
            pruner_stop,
            refusal_summaries,
            services,
            reloads,
        };
        daemon.start_workers(config).await;
        daemon.report_orphans().await;
        Ok(daemon)
    }

    /// The HTTP routes: every source, health, readiness, metrics, reload, and the console when
    /// configured.
    pub fn router(&self) -> axum::Router {
        let router = intake::router(self.intake.clone());
        match &self.console {
            Some(console) => router.merge(crate::console::web::router(console.clone())),
            None => router,
        }
    }

    /// The outbox the daemon uses.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The config in use.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// Starts a worker for every robot of `config` and publishes it with their wake-ups.
    async fn start_workers(&mut self, config: Arc<Config>) {
        let mut wake = HashMap::new();
        for robot in config.robots.values() {
            let settings = config
                .robot_delivery
                .get(&robot.name)
                .cloned()
                .unwrap_or_default();
            // Keep the robot's pace and pause across reloads, unless its rate changed.
            let runtime = match self.workers.remove(&robot.name) {
                Some(old) if old.runtime.rate_per_minute == settings.rate_per_minute => old.runtime,
                _ => RobotRuntime::new(settings.rate_per_minute),
            };
            let notify = Arc::new(Notify::new());
            let (stop, stop_rx) = watch::channel(false);
            let worker = Worker {
                robot: robot.clone(),
                settings,
                outbox: self.outbox.clone(),
                transport: self.services.transport.clone(),
                clock: self.services.clock,
                send_timeout: config.delivery.send_timeout,
                wake: notify.clone(),
                shutdown: stop_rx,
                dry_run: self.services.dry_run.clone(),
                runtime: runtime.clone(),
                metrics: self.services.metrics.clone(),
                app: robot
                    .endpoint
                    .app()
                    .and_then(|robot| self.apps.get(&robot.app.name).cloned()),
            };
            wake.insert(robot.name.clone(), notify);
            self.workers.insert(
                robot.name.clone(),
                RunningWorker {
                    handle: tokio::spawn(worker.run()),
                    stop,
                    runtime,
                },
            );
        }
        self.services.metrics.set_config_info(
            config.robots.len() as u64,
            config.sources.len() as u64,
            config.rules.rules().len() as u64,
        );
        self.live.store(Arc::new(Live { config, wake }));
    }

    /// Stops every worker after its send in flight (bounded by `deadline`).
    async fn stop_workers(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> HashMap<String, RunningWorker> {
        for worker in self.workers.values() {
            let _ = worker.stop.send(true);
        }
        let mut stopped = HashMap::new();
        for (name, mut worker) in self.workers.drain() {
            if tokio::time::timeout_at(deadline, &mut worker.handle)
                .await
                .is_err()
            {
                tracing::warn!(
                    robot = %name,
                    "A send was still in flight when the worker had to stop; it is sent again later with the same msgUuid."
                );
                worker.handle.abort();
            }
            stopped.insert(name, worker);
        }
        stopped
    }

    /// Logs the messages queued for robots the config does not have: they wait in the outbox.
    async fn report_orphans(&self) {
        let config = self.config();
        let Ok(stats) = self.outbox.robot_stats().await else {
            return;
        };
        for stat in stats
            .iter()
            .filter(|s| !config.robots.contains_key(&s.robot))
        {
            if stat.pending > 0 {
                tracing::warn!(
                    robot = %stat.robot,
                    pending = stat.pending,
                    "Messages are queued for a robot the config does not have; they stay in the outbox, unsent, until a robot of that name is configured again (`dingrelay outbox list --robot NAME` shows them)."
                );
            }
        }
    }

    /// Reloads the config from its file: validates it fully, then swaps it in. On failure the
    /// running config stays and the errors are returned (and logged), as the text of a
    /// [`ReloadError`].
    pub async fn reload(&mut self) -> Result<(), String> {
        systemd::reloading();
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                self.services.metrics.reload(ReloadResult::Ok);
                tracing::info!("Reloaded the config.");
            }
            Err(error) => {
                self.services.metrics.reload(ReloadResult::Invalid);
                tracing::error!(
                    "Refused to reload: the config is invalid; the running config stays. Fix it (`dingrelay check` shows every problem):\n{error}"
                );
            }
        }
        systemd::ready();
        if result.is_err() {
            systemd::status(
                "Reload refused: rules.yaml is invalid; the previous rules keep serving (see the log).",
            );
        }
        result.map_err(|error| error.to_string())
    }

    async fn try_reload(&mut self) -> Result<(), ReloadError> {
        let Some(path) = self.services.config_path.clone() else {
            return Err(ReloadError::NotFromFile);
        };
        let loaded = tokio::task::spawn_blocking(move || {
            let config = Config::load(&path)?;
            let audit = crate::config::audit(&config, jiff::Timestamp::now());
            if !audit.passed() {
                let file_name = path.display().to_string();
                return Err(ReloadError::Audit { file_name, audit });
            }
            Ok(config)
        })
        .await??;

        let old = self.config();
        if loaded.listen != old.listen || loaded.state_dir != old.state_dir {
            tracing::warn!("`listen` and `state_dir` changes take effect at the next restart.");
        }
        for name in old
            .robots
            .keys()
            .filter(|n| !loaded.robots.contains_key(*n))
        {
            let pending = self.outbox.pending_count(name).await.unwrap_or(0);
            tracing::warn!(
                robot = %name,
                pending,
                "A robot was removed; its queued messages stay in the outbox until it is configured again."
            );
        }
        let apps = verified_apps(&loaded, &self.apps, &self.services)
            .await
            .map_err(ReloadError::App)?;
        let deadline = tokio::time::Instant::now() + RELOAD_WORKER_GRACE;
        self.workers = self.stop_workers(deadline).await;
        self.apps = apps;
        self.start_workers(Arc::new(loaded)).await;
        // Runtimes of removed robots are dropped with their entries.
        let current = self.config();
        self.workers
            .retain(|name, _| current.robots.contains_key(name));
        Ok(())
    }

    /// Serves reload requests (SIGHUP, `POST /-/reload`) until `stop` completes.
    async fn run_until(
        &mut self,
        hangups: &mut mpsc::Receiver<()>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut hangups_open = true;
        loop {
            tokio::select! {
                hangup = hangups.recv(), if hangups_open => {
                    match hangup {
                        Some(()) => { let _ = self.reload().await; }
                        None => hangups_open = false,
                    }
                }
                request = self.reloads.recv() => {
                    let Some(reply) = request else { continue };
                    let result = self.reload().await;
                    let _ = reply.send(result);
                }
                _ = stopped(&mut stop) => return,
            }
        }
    }

    /// Stops the workers once their send in flight is done (bounded by `deadline`) and closes
    /// the outbox. Pending messages stay for the next start.
    pub async fn stop(mut self, deadline: tokio::time::Instant) {
        let _ = self.pruner_stop.send(true);
        // The router stops between batches; a batch cut short is routed again at the next start.
        if tokio::time::timeout_at(deadline, &mut self.router)
            .await
            .is_err()
        {
            self.router.abort();
        }
        self.stop_workers(deadline).await;
        self.pruner.abort();
        self.refusal_summaries.abort();
        self.intake.refusals.flush(i64::MAX);
        self.outbox.close().await;
    }
}

/// Runs the daemon on `listener` until `shutdown` completes; reloads the config on every message
/// of `hangups` (SIGHUP in the daemon).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut hangups: mpsc::Receiver<()>,
    services: Services,
) -> Result<(), ServeError> {
    let mut daemon = Daemon::start(config, services).await?;
    let config = daemon.config();
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

    let (signal_tx, signal_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_tx.send(true);
    });
    let mut server = tokio::spawn(http::serve(
        listener,
        daemon.router(),
        http::Limits::default(),
        signal_rx.clone(),
    ));
    systemd::ready();
    let watchdog = systemd::spawn_watchdog();

    // When the signal fires, both branches become ready: the server ends its graceful shutdown
    // (at once when no request is open) and `run_until` returns. Either may be taken, so the
    // server's end is a shutdown whenever the signal has fired; only without it is it an error.
    let ended = tokio::select! {
        result = &mut server => Some(result),
        () = daemon.run_until(&mut hangups, signal_rx.clone()) => None,
    };
    if ended.is_some() && !*signal_rx.borrow() {
        // The server ended without a signal: only a panic in it does that.
        let deadline = tokio::time::Instant::now() + daemon.config().delivery.shutdown_timeout;
        daemon.stop(deadline).await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        return match ended {
            Some(Err(error)) => Err(ServeError::Http(std::io::Error::other(error))),
            _ => Ok(()),
        };
    }

    systemd::stopping();
    tracing::info!("Shutting down: no new webhooks; finishing sends in flight.");
    let deadline = tokio::time::Instant::now() + daemon.config().delivery.shutdown_timeout;
    // Intake first, so every request that got in is answered, then the workers.
    let server = match ended {
        Some(result) => Ok(result),
        None => tokio::time::timeout_at(deadline, server).await,
    };
    match server {
        Ok(Err(error)) => tracing::warn!("The HTTP server stopped with an error: {error}."),
        Ok(Ok(())) => {}
        Err(_) => tracing::warn!(
            "Requests still open at the shutdown timeout were cut off; their senders retry."
        ),
    }
    daemon.stop(deadline).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("Stopped; pending messages stay in the outbox for the next start.");
    Ok(())
}

/// The web console of `config`, when it has one: on its app's client (and token), with its
/// signer (a random one when no key is configured), telling `notify`'s group through `outbox`.
fn console(
    config: &Config,
    apps: &HashMap<String, Arc<AppClient>>,
    outbox: &Outbox,
    clock: Clock,
) -> Option<Arc<Console>> {
    let settings = config.console.as_ref()?;
    let app = apps.get(&settings.app)?.clone();
    let delivery = &config.delivery;
    Some(Arc::new(Console {
        tickets: Tickets::new(app.clone(), delivery.send_timeout),
        agent_id: app.app.agent_id?,
        app,
        signer: settings.signer.clone().unwrap_or_else(Signer::random),
        corp_id: settings.corp_id.clone(),
        session_ttl: settings.session_ttl,
        clock,
        timeout: delivery.send_timeout,
        alertmanager: settings.alertmanager.clone(),
        notify: settings
            .notify
            .as_ref()
            .and_then(|robot| config.robots.get(robot))
            .map(|robot| (outbox.clone(), robot.clone())),
        timezone: config.timezone.clone(),
        http: reqwest::Client::builder()
            .connect_timeout(delivery.connect_timeout)
            .timeout(delivery.send_timeout)
            .build()
            .ok()?,
    }))
}

/// The app clients of `config`: those of `running` whose app is unchanged, and a new one, with a
/// token fetched at once, for every other app, so that a wrong appSecret is said now rather than
/// at the first alert. DingTalk unreachable is only a warning: the workers fetch when they send.
async fn verified_apps(
    config: &Config,
    running: &HashMap<String, Arc<AppClient>>,
    services: &Services,
) -> Result<HashMap<String, Arc<AppClient>>, TokenError> {
    let mut apps = HashMap::new();
    for (name, app) in &config.apps {
        if let Some(client) = running.get(name).filter(|client| client.serves(app)) {
            apps.insert(name.clone(), client.clone());
            continue;
        }
        let client = AppClient::new(
            app.clone(),
            services.transport.clone(),
            services.metrics.clone(),
        );
        match client.verify(config.delivery.send_timeout).await {
            Ok(()) => tracing::info!(app = %name, "Fetched the app's access token."),
            Err(error @ TokenError::Refused { .. }) => return Err(error),
            Err(error) => tracing::warn!(
                app = %name,
                "Could not verify the app's credentials now; its robots fetch a token when they send: {error}."
            ),
        }
        apps.insert(name.clone(), client);
    }
    Ok(apps)
}

/// Completes when the flag turns true (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await.map(|_| ());
}

/// Reports the refused requests of each period that is over, every period.
async fn summarize_refusals(intake: Arc<Intake>, clock: Clock, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFUSAL_SUMMARY_EVERY) => {}
            _ = stop.changed() => return,
        }
        intake.refusals.flush(clock.now_ms());
    }
}

/// Deletes delivered rows older than `keep`, routed events older than `keep_events` and old
/// attempt records, hourly.
async fn prune(
    outbox: Outbox,
    clock: Clock,
    keep: Duration,
    keep_events: Duration,
    mut stop: watch::Receiver<bool>,
) {
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
        match outbox
            .purge_events(now - keep_events.as_millis() as i64)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "Purged routed events past keep_events."),
            Err(error) => tracing::warn!("Could not purge old events: {error}."),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

//! [`Outbox`]: the async handle to the thread that owns the daemon's connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::event_log::{Appended, EventMessage, NewEvent, RoutedEvent, StoredEvent};
use super::lock::StateLock;
use super::model::{Due, Enqueued, NewMessage, OutboxError, RobotStats, StoredMessage};
use super::schema;
use super::store::{Batch, Store};
use crate::dingtalk::Message;

/// How many commands may wait for the thread before callers wait to send.
const CHANNEL_CAPACITY: usize = 1024;

/// At most this many enqueue calls share one transaction, so a flood still gets answers.
const MAX_GROUP: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, OutboxError>>;

/// One enqueue call waiting for the next group commit.
struct EnqueueCall {
    batch: Vec<NewMessage>,
    now_ms: i64,
    reply: Reply<Vec<Enqueued>>,
}

/// One event append waiting for the next group commit.
struct AppendCall {
    event: NewEvent,
    dedup_window_ms: i64,
    reply: Reply<Appended>,
    /// Who has the call: the writer takes it for a commit, or a caller past its deadline takes
    /// it back; whichever comes first decides, so a caller told "not stored" never is.
    turn: Arc<Turn>,
}

/// Whether an append is still waiting, taken by the writer, or given up by its caller.
#[derive(Debug, Default)]
struct Turn(AtomicU8);

impl Turn {
    const WAITING: u8 = 0;
    const TAKEN: u8 = 1;
    const GIVEN_UP: u8 = 2;

    /// The writer takes the call for its commit; false if the caller gave it up first.
    fn take(&self) -> bool {
        self.0
            .compare_exchange(
                Self::WAITING,
                Self::TAKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The caller gives the call up; false if the writer has already taken it.
    fn give_up(&self) -> bool {
        self.0
            .compare_exchange(
                Self::WAITING,
                Self::GIVEN_UP,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

enum Command {
    Enqueue(EnqueueCall),
    Append(AppendCall),
    /// Any other operation: runs on the store and answers through its own reply.
    Run(Box<dyn FnOnce(&mut Store) + Send>),
    Close(oneshot::Sender<()>),
}

/// What every handle shares.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// Enqueue transactions committed so far.
    commits: AtomicU64,
    /// Why the last append of events failed, until one succeeds: readiness reports it, so a full
    /// disk or a lost write lock shows on `/-/ready` and not only in 503s.
    failing: std::sync::Mutex<Option<String>>,
}

/// The daemon's handle to the outbox: cheap to clone, shared by intake and workers.
///
/// Every method sends a command to one dedicated thread that owns the SQLite connection and
/// awaits its answer. Errors are [`OutboxError::Unavailable`]; nothing here panics.
#[derive(Debug, Clone)]
pub struct Outbox {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Enqueue(_) => "Enqueue",
            Command::Append(_) => "Append",
            Command::Run(_) => "Run",
            Command::Close(_) => "Close",
        })
    }
}

fn stopped() -> OutboxError {
    OutboxError::Unavailable("the outbox thread has stopped".to_owned())
}

impl Outbox {
    /// Opens (creating the directory and file) `<state_dir>/outbox.sqlite3`: WAL,
    /// synchronous=FULL, busy_timeout 5 s, schema versioned with PRAGMA user_version.
    pub fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        let path = state_dir.join(schema::FILE_NAME);
        let fail = |reason: String| {
            OutboxError::Unavailable(format!("outbox at {}: {reason}", path.display()))
        };
        std::fs::create_dir_all(state_dir).map_err(|e| {
            fail(format!(
                "cannot create the state directory {}: {e}",
                state_dir.display()
            ))
        })?;
        let lock = StateLock::take(state_dir).map_err(OutboxError::Unavailable)?;
        let conn = schema::open_daemon(&path).map_err(fail)?;
        let (commands, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            path: path.clone(),
            commits: AtomicU64::new(0),
            failing: std::sync::Mutex::new(None),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("outbox".to_owned())
            .spawn(move || {
                run(Store::new(conn), receiver, &thread_shared);
                // Released once the connection is closed, so the next daemon finds it closed.
                drop(lock);
            })
            .map_err(|e| fail(format!("cannot start the outbox thread: {e}")))?;
        tracing::debug!(path = %path.display(), "Opened the outbox.");
        Ok(Outbox { commands, shared })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Why appending events failed, when the last append failed (cleared by the next success).
    pub fn failing(&self) -> Option<String> {
        self.shared
            .failing
            .lock()
            .map_or(None, |failing| failing.clone())
    }

    /// How many enqueue transactions have been committed since [`Outbox::open`]. With group
    /// commit this grows more slowly than the number of `enqueue` calls (tests, metrics).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// All or none: the whole batch is committed, or nothing of it. Concurrent calls share one
    /// transaction and one fsync (group commit): the thread drains every enqueue waiting in the
    /// channel, writes each batch inside its own SAVEPOINT (a failing batch fails alone), commits
    /// once, then answers each caller. Messages made from events go through
    /// [`Outbox::commit_routing`] instead, which marks their event routed in the same transaction;
    /// this is for messages without an event (tests, tools).
    pub async fn enqueue(
        &self,
        batch: Vec<NewMessage>,
        now_ms: i64,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let call = EnqueueCall {
            batch,
            now_ms,
            reply,
        };
        self.commands
            .send(Command::Enqueue(call))
            .await
            .map_err(|_| stopped())?;
        wait(answer).await?
    }

    /// Appends an accepted webhook to the event log; answers once it is committed (fsynced).
    /// Concurrent appends share one transaction and one fsync (group commit). An event whose
    /// source and dedup key were appended within `dedup_window_ms` (0: no dedup) is not stored
    /// again: [`Appended::Duplicate`] names the earlier event.
    pub async fn append(
        &self,
        event: NewEvent,
        dedup_window_ms: i64,
    ) -> Result<Appended, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let call = AppendCall {
            event,
            dedup_window_ms,
            reply,
            turn: Arc::default(),
        };
        self.commands
            .send(Command::Append(call))
            .await
            .map_err(|_| stopped())?;
        wait(answer).await?
    }

    /// [`Outbox::append`] for a caller that gives up at `deadline` (its request timed out),
    /// telling it the truth: if the writer has not taken the append into a commit by then, it
    /// never will (`Ok(None)`: not stored); if it has, the answer waits for that commit's
    /// outcome, which can come after the deadline by as much as the commit takes (a write lock
    /// held by another process: SQLite's 5 s busy timeout).
    pub async fn append_before(
        &self,
        event: NewEvent,
        dedup_window_ms: i64,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Appended>, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let turn = Arc::new(Turn::default());
        let call = AppendCall {
            event,
            dedup_window_ms,
            reply,
            turn: turn.clone(),
        };
        match tokio::time::timeout_at(deadline, self.commands.send(Command::Append(call))).await {
            Ok(sent) => sent.map_err(|_| stopped())?,
            // Never sent: the writer never sees it.
            Err(_) => return Ok(None),
        }
        let answer = wait(answer);
        tokio::pin!(answer);
        tokio::select! {
            answer = &mut answer => return answer?.map(Some),
            () = tokio::time::sleep_until(deadline) => {}
        }
        if turn.give_up() {
            return Ok(None);
        }
        // The writer took it first: its commit decides, and the answer says so.
        answer.await?.map(Some)
    }

    /// Reads the dedup keys of the events appended within `dedup_window_ms` before `now_ms` (once;
    /// otherwise the first append does it); returns how many there are.
    pub async fn load_recent_keys(
        &self,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        self.call(move |store| store.load_recent_keys(dedup_window_ms, now_ms))
            .await
    }

    /// The oldest events waiting to be routed, in the order they came: at most `limit`, and no
    /// more once their bodies weigh `max_bytes` (at least one, whatever its size).
    pub async fn waiting_events(
        &self,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, OutboxError> {
        self.call(move |store| store.waiting_events(limit, max_bytes))
            .await
    }

    /// Stores routed events' messages and marks the events routed, in one transaction; returns
    /// each event's message ids (none for an event that was no longer waiting).
    pub async fn commit_routing(
        &self,
        routed: Vec<RoutedEvent>,
    ) -> Result<Vec<Vec<i64>>, OutboxError> {
        self.call(move |store| store.commit_routing(&routed)).await
    }

    /// The messages event `event_id` made when it was last routed (none while it waits).
    pub async fn messages_of_event(&self, event_id: i64) -> Result<Vec<EventMessage>, OutboxError> {
        self.call(move |store| store.event_messages(event_id)).await
    }

    /// Deletes routed events routed before `routed_before_ms` (never one waiting to be routed).
    pub async fn purge_events(&self, routed_before_ms: i64) -> Result<usize, OutboxError> {
        self.call(move |store| store.purge_events(routed_before_ms))
            .await
    }

    /// Pending messages of the robot with next_attempt_at <= now_ms, oldest first (by id), at
    /// most `limit`, each with `msgUuid` set from its row.
    pub async fn due(
        &self,
        robot: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.due(&robot, now_ms, limit))
            .await
    }

    /// The robot's pending messages that are due at `now_ms`, in acceptance order, up to the first
    /// one that is not due yet (at most `limit` are read): [`Due::NextAt`] when the oldest pending
    /// message is not due, or nothing is pending. After a restart during a backoff, younger
    /// messages are due while the one that failed is not: they wait for it, so order is kept.
    pub async fn due_in_order(
        &self,
        robot: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Due, OutboxError> {
        let pending = self.due(robot, i64::MAX, limit).await?;
        let due: Vec<StoredMessage> = pending
            .iter()
            .take_while(|m| m.next_attempt_at <= now_ms)
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(Due::NextAt(pending.first().map(|m| m.next_attempt_at)));
        }
        Ok(Due::Messages(due))
    }

    /// The earliest next_attempt_at of the robot's pending messages.
    pub async fn next_due_at(&self, robot: &str) -> Result<Option<i64>, OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.next_due_at(&robot)).await
    }

    /// Per robot with pending or dead messages: the counts and the oldest pending acceptance,
    /// for metrics and for reporting messages left for a robot no longer configured.
    pub async fn robot_stats(&self) -> Result<Vec<RobotStats>, OutboxError> {
        self.call(|store| store.robot_stats()).await
    }

    /// Whether the outbox can take messages now (for readiness): takes and releases the write
    /// lock.
    pub async fn check_writable(&self) -> Result<(), OutboxError> {
        self.call(|store| store.check_writable()).await
    }

    /// How many messages of the robot are pending (due or not).
    pub async fn pending_count(&self, robot: &str) -> Result<usize, OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.pending_count(&robot)).await
    }

    /// The message the robot's worker was sending when it stopped (or is sending), with its rows.
    pub async fn in_flight(&self, robot: &str) -> Result<Option<(Vec<i64>, Message)>, OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.in_flight(&robot)).await
    }

    /// Records, before it is sent, the message the robot's worker sends and the rows it carries.
    pub async fn set_in_flight(
        &self,
        robot: &str,
        ids: Vec<i64>,
        message: Message,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.set_in_flight(&robot, &ids, &message, now_ms))
            .await
    }

    /// Forgets the robot's message in flight once none of its rows is pending.
    pub async fn settle_in_flight(&self, robot: &str) -> Result<(), OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.settle_in_flight(&robot)).await
    }

    /// Records that a request was sent to DingTalk for the robot (every attempt counts against
    /// DingTalk's rate limit, delivered or not), so after a restart the rate limiter can count
    /// what went out in the last minute.
    pub async fn record_attempt(&self, robot: &str, at_ms: i64) -> Result<(), OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.record_attempt(&robot, at_ms))
            .await
    }

    /// How many attempts were recorded for the robot at or after `since_ms`.
    pub async fn attempts_since(&self, robot: &str, since_ms: i64) -> Result<usize, OutboxError> {
        let robot = robot.to_owned();
        self.call(move |store| store.attempts_since(&robot, since_ms))
            .await
    }

    /// Marks the rows delivered at `at_ms` (DingTalk answered errcode 0), in one transaction.
    pub async fn mark_delivered(&self, ids: &[i64], at_ms: i64) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.call(move |store| store.mark_delivered(&ids, at_ms))
            .await
    }

    /// attempts += 1, next_attempt_at = next_attempt_ms, last_error = error; stays pending.
    /// Rows no longer pending are left alone.
    pub async fn mark_retry(
        &self,
        ids: &[i64],
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        let error = error.to_owned();
        self.call(move |store| store.mark_retry(&ids, next_attempt_ms, &error))
            .await
    }

    /// Moves pending rows to the dead letters with the error (attempts += 1).
    pub async fn mark_dead(&self, ids: &[i64], at_ms: i64, error: &str) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        let error = error.to_owned();
        self.call(move |store| store.mark_dead(&ids, at_ms, &error))
            .await
    }

    /// Deletes delivered rows delivered before `delivered_before_ms` and attempt records older
    /// than `attempts_before_ms`; returns rows deleted. (Dead rows are kept until purged by the
    /// operator; pending rows are never pruned.)
    pub async fn prune(
        &self,
        delivered_before_ms: i64,
        attempts_before_ms: i64,
    ) -> Result<usize, OutboxError> {
        self.call(move |store| store.prune(delivered_before_ms, attempts_before_ms))
            .await
    }

    /// Stops the thread after the commands already queued, and waits until it has closed the
    /// database. Calls through other clones of the handle then fail with `Unavailable`.
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Runs `f` on the thread and returns its answer.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Run(Box::new(move |store: &mut Store| {
            let _ = reply.send(f(store));
        }));
        self.commands.send(command).await.map_err(|_| stopped())?;
        wait(answer).await?
    }
}

/// Waits for the thread's answer.
///
/// On a multi-thread runtime (the daemon's) this is a plain await. On a current-thread runtime
/// (the only kind whose clock tests can pause) the wait goes through tokio's blocking pool:
/// the paused clock does not auto-advance while a blocking task runs, so time stands still
/// while SQLite works, as it does for every other await; a plain `.await` there would let the
/// clock jump to the next timer (a request timeout, a backoff) during every commit. The
/// blocking pool costs a thread hand-off per call, which the daemon's intake cannot afford
/// (docs/benchmarks.md).
async fn wait<T: Send + 'static>(answer: oneshot::Receiver<T>) -> Result<T, OutboxError> {
    let current_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    let answer = if current_thread {
        match tokio::task::spawn_blocking(move || answer.blocking_recv()).await {
            Ok(answer) => answer,
            Err(_) => return Err(stopped()),
        }
    } else {
        answer.await
    };
    answer.map_err(|_| stopped())
}

/// The thread: runs commands in order until closed or every handle is gone. WAL checkpoints
/// are run here, between commands, so no commit ever waits on one (see [`schema`]).
fn run(mut store: Store, mut commands: mpsc::Receiver<Command>, shared: &Shared) {
    let mut held: Option<Command> = None;
    let mut checkpoints = Checkpoints;
    loop {
        let command = match held.take() {
            Some(command) => command,
            None => match commands.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Idle: a good time to move the WAL into the database.
                    checkpoints.when_idle(&mut store);
                    match commands.blocking_recv() {
                        Some(command) => command,
                        None => break,
                    }
                }
            },
        };
        match command {
            Command::Enqueue(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Enqueue(call)) => group.push(call),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                commit_group(&mut store, group, shared);
                checkpoints.committed(&mut store);
            }
            Command::Append(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(Command::Append(call)) => group.push(call),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                append_group(&mut store, group, shared);
                checkpoints.committed(&mut store);
            }
            Command::Run(f) => {
                f(&mut store);
                checkpoints.committed(&mut store);
            }
            Command::Close(done) => {
                commands.close();
                store.checkpoint();
                drop(store);
                tracing::debug!(path = %shared.path.display(), "Closed the outbox.");
                let _ = done.send(());
                return;
            }
        }
    }
    store.checkpoint();
    tracing::debug!(path = %shared.path.display(), "Every outbox handle is gone; closed the outbox.");
}

/// When the writer moves the WAL into the database: between commands, never inside a commit, so
/// no caller waits on a checkpoint with its answer. When idle with a few pages in the WAL, and at
/// the latest when the WAL reaches SQLite's own threshold (1,000 pages, about 4 MB), so a constant
/// flood cannot grow it without bound.
#[derive(Debug, Default)]
struct Checkpoints;

impl Checkpoints {
    /// Idle with at least this many pages in the WAL: checkpoint.
    const IDLE_PAGES: i32 = 64;
    /// Never more pages than this without a checkpoint (SQLite's `wal_autocheckpoint` default).
    const MAX_PAGES: i32 = 1000;

    fn committed(&mut self, store: &mut Store) {
        if store.wal_pages() >= Self::MAX_PAGES {
            store.checkpoint();
        }
    }

    fn when_idle(&mut self, store: &mut Store) {
        if store.wal_pages() >= Self::IDLE_PAGES {
            store.checkpoint();
        }
    }
}

/// One group commit of appended events, then each caller's answer.
fn append_group(store: &mut Store, mut group: Vec<AppendCall>, shared: &Shared) {
    // A caller that has given up (its request timed out and is answered 408) or gone (its
    // connection closed) gets nothing stored: its sender retries, and a stored copy would be a
    // duplicate for senders without a dedup key. The rest are taken: their callers now wait for
    // this commit's outcome, so an answer never says "not stored" of a stored event.
    let before = group.len();
    group.retain(|call| !call.reply.is_closed() && call.turn.take());
    if group.len() < before {
        tracing::debug!(
            dropped = before - group.len(),
            "Not storing webhooks whose requests timed out before their turn."
        );
    }
    if group.is_empty() {
        return;
    }
    // Calls of one group share the window in practice (one config); the smallest is the safe
    // one: a shorter window never drops an event a longer one would keep.
    let window = group.iter().map(|c| c.dedup_window_ms).min().unwrap_or(0);
    let (events, replies): (Vec<NewEvent>, Vec<Reply<Appended>>) =
        group.into_iter().map(|c| (c.event, c.reply)).unzip();
    let result = store.append_events(&events, window);
    if let Ok(mut failing) = shared.failing.lock() {
        *failing = result.as_ref().err().map(ToString::to_string);
    }
    match result {
        Ok(answers) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(error) => {
            tracing::error!(
                events = events.len(),
                "Could not commit accepted webhooks; their senders were answered 503: {error}."
            );
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// One group commit: stores every waiting batch in one transaction, then answers each caller.
fn commit_group(store: &mut Store, group: Vec<EnqueueCall>, shared: &Shared) {
    let batches: Vec<Batch<'_>> = group
        .iter()
        .map(|call| Batch {
            messages: &call.batch,
            now_ms: call.now_ms,
        })
        .collect();
    let outcome = store.enqueue_group(&batches);
    drop(batches);
    match outcome {
        Ok(results) => {
            shared.commits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                batches = group.len(),
                "Committed a group of enqueued batches."
            );
            for (call, result) in group.into_iter().zip(results) {
                let _ = call.reply.send(result);
            }
        }
        Err(error) => {
            let messages: usize = group.iter().map(|call| call.batch.len()).sum();
            tracing::error!(
                batches = group.len(),
                messages,
                "Could not commit accepted messages; their senders were answered 503: {error}."
            );
            for call in group {
                let _ = call.reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dingtalk::Message;
    use crate::dingtalk::MessageBody;
    use crate::dingtalk::message::Text;

    /// A state directory under the system temp dir, unique to the test.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "dingrelay-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    /// An Alertmanager event with this body, received at `received_at`.
    fn new_event(body: Vec<u8>, received_at: i64) -> NewEvent {
        NewEvent {
            source: "am".to_owned(),
            name: "firing".to_owned(),
            dedup_key: None,
            headers: Default::default(),
            query: String::new(),
            body,
            received_at,
        }
    }

    fn new(content: &str) -> NewMessage {
        NewMessage {
            robot: "ops".to_owned(),
            rule: "rule".to_owned(),
            source: "src".to_owned(),
            dedup_key: None,
            recipients: Vec::new(),
            message: Message {
                body: MessageBody::Text {
                    text: Text {
                        content: content.to_owned(),
                    },
                },
                at: None,
                msg_uuid: None,
            },
        }
    }

    #[test]
    fn the_writer_checkpoints_at_the_threshold_and_when_idle() {
        let dir = temp_dir("wal");
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = Store::new(schema::open_daemon(&dir.join(schema::FILE_NAME)).unwrap());
        let mut checkpoints = Checkpoints;
        let event = |i: i64| new_event(vec![b'x'; 16_384], i);
        store.append_events(&[event(0)], 0).unwrap();
        let after_one = store.wal_pages();
        assert!(after_one > 0, "SQLite reports the WAL's pages");
        checkpoints.when_idle(&mut store);
        assert_eq!(
            store.wal_pages(),
            after_one,
            "too few pages to bother when idle"
        );
        let mut i = 1;
        while store.wal_pages() < Checkpoints::MAX_PAGES - 10 {
            store.append_events(&[event(i)], 0).unwrap();
            checkpoints.committed(&mut store);
            i += 1;
        }
        assert!(store.wal_pages() > Checkpoints::IDLE_PAGES);
        checkpoints.when_idle(&mut store);
        assert_eq!(store.wal_pages(), 0, "idle: checkpointed");
        while store.wal_pages() < Checkpoints::MAX_PAGES - 10 {
            store.append_events(&[event(i)], 0).unwrap();
            i += 1;
        }
        for _ in 0..10 {
            store.append_events(&[event(i)], 0).unwrap();
            checkpoints.committed(&mut store);
            i += 1;
        }
        assert!(
            store.wal_pages() < Checkpoints::MAX_PAGES,
            "checkpointed at the threshold: {}",
            store.wal_pages()
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_whose_caller_has_given_up_is_not_stored() {
        let dir = temp_dir("gone");
        let outbox = Outbox::open(&dir).unwrap();
        let event = || new_event(b"{}".to_vec(), 1);
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        // The writer is busy (with a slow command) while the request times out.
        let busy = outbox.clone();
        let held = tokio::spawn(async move {
            busy.call(|_| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let answer = outbox.append_before(event(), 0, soon()).await.unwrap();
        assert!(answer.is_none(), "given up before its turn: {answer:?}");
        held.await.unwrap().unwrap();
        assert!(
            outbox
                .waiting_events(10, usize::MAX)
                .await
                .unwrap()
                .is_empty(),
            "what was given up is never stored"
        );
        // A caller that waits is stored as ever.
        let answer = outbox.append_before(event(), 0, soon()).await.unwrap();
        assert!(
            matches!(answer, Some(Appended::Stored { .. })),
            "{answer:?}"
        );
        assert_eq!(
            outbox.waiting_events(10, usize::MAX).await.unwrap().len(),
            1
        );
        outbox.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_whose_commit_has_begun_is_answered_by_its_outcome() {
        let dir = temp_dir("begun");
        let outbox = Outbox::open(&dir).unwrap();
        // Another process holds the write lock: the writer takes the append, then waits on it.
        let mut other = rusqlite::Connection::open(dir.join(schema::FILE_NAME)).unwrap();
        let (locked, lock_held) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let tx = other
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(400));
            tx.commit().unwrap();
        });
        lock_held.recv().unwrap();
        let asked = tokio::time::Instant::now();
        let deadline = asked + std::time::Duration::from_millis(100);
        let answer = outbox
            .append_before(new_event(b"{}".to_vec(), 1), 0, deadline)
            .await
            .unwrap();
        // Past its deadline, yet the truth: stored.
        assert!(
            matches!(answer, Some(Appended::Stored { .. })),
            "{answer:?}"
        );
        assert!(asked.elapsed() >= std::time::Duration::from_millis(300));
        assert_eq!(
            outbox.waiting_events(10, usize::MAX).await.unwrap().len(),
            1
        );
        holder.join().unwrap();
        outbox.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_deleted_or_replaced_outbox_file_is_noticed() {
        let dir = temp_dir("deleted");
        let outbox = Outbox::open(&dir).unwrap();
        let event = || new_event(b"{}".to_vec(), 1);
        assert!(outbox.append(event(), 0).await.is_ok());
        assert!(outbox.check_writable().await.is_ok());
        let file = dir.join(schema::FILE_NAME);
        std::fs::remove_file(&file).unwrap();
        let error = outbox.append(event(), 0).await.unwrap_err().to_string();
        assert!(
            error.contains("was deleted while the daemon runs"),
            "{error}"
        );
        assert!(outbox.check_writable().await.is_err(), "readiness sees it");
        assert!(outbox.failing().is_some());
        std::fs::write(&file, b"").unwrap();
        let error = outbox.check_writable().await.unwrap_err().to_string();
        assert!(error.contains("was replaced"), "{error}");
        outbox.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failed_append_is_reported_until_one_succeeds() {
        let dir = temp_dir("failing");
        let outbox = Outbox::open(&dir).unwrap();
        let event = || new_event(b"{}".to_vec(), 1);
        assert_eq!(outbox.failing(), None);
        // Another process breaks the file under the daemon (its table renamed away).
        let raw = rusqlite::Connection::open(dir.join(schema::FILE_NAME)).unwrap();
        raw.execute_batch("ALTER TABLE event_bodies RENAME TO gone")
            .unwrap();
        assert!(outbox.append(event(), 0).await.is_err());
        let reason = outbox.failing().expect("reported");
        assert!(reason.contains("cannot append events"), "{reason}");
        raw.execute_batch("ALTER TABLE gone RENAME TO event_bodies")
            .unwrap();
        assert!(outbox.append(event(), 0).await.is_ok());
        assert_eq!(outbox.failing(), None, "cleared by a success");
        drop(raw);
        outbox.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn nothing_younger_overtakes_a_message_waiting_for_its_retry() {
        let dir = temp_dir("due");
        let outbox = Outbox::open(&dir).unwrap();
        assert_eq!(
            outbox.due_in_order("ops", 1_000, 10).await.unwrap(),
            Due::NextAt(None)
        );
        let batch = vec![new("one"), new("two"), new("three")];
        outbox.enqueue(batch, 1_000).await.unwrap();
        let Due::Messages(due) = outbox.due_in_order("ops", 1_000, 10).await.unwrap() else {
            panic!("all three are due");
        };
        let ids: Vec<i64> = due.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 3);

        // The second waits for its retry: only the first may go; then, nothing before 5 s.
        outbox
            .mark_retry(&ids[1..2], 5_000, "failed")
            .await
            .unwrap();
        let Due::Messages(due) = outbox.due_in_order("ops", 1_000, 10).await.unwrap() else {
            panic!("the first is due");
        };
        assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..1]);
        outbox.mark_delivered(&ids[..1], 1_000).await.unwrap();
        assert_eq!(
            outbox.due_in_order("ops", 1_000, 10).await.unwrap(),
            Due::NextAt(Some(5_000))
        );
        let Due::Messages(due) = outbox.due_in_order("ops", 5_000, 10).await.unwrap() else {
            panic!("both are due at 5 s");
        };
        assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), ids[1..]);
        outbox.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

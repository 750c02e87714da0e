//! The daemon's operations on its connection, synchronous: run by the outbox thread only.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::event_log::RecentKeys;
use super::model::{Enqueued, NewMessage, OutboxError, RobotStats, StoredMessage};
use crate::dingtalk::Message;

/// What a database error becomes for callers: a reason, without bodies or secrets.
pub(super) fn unavailable(context: &str) -> impl FnOnce(rusqlite::Error) -> OutboxError + '_ {
    move |error| OutboxError::Unavailable(format!("{context}: {error}"))
}

/// Each robot's pending and dead messages and its oldest pending one: the outbox gauges. Read
/// from the `messages_open` index alone (see [`schema`](super::schema)).
const ROBOT_STATS: &str = "SELECT robot,
        SUM(state = 'pending'),
        SUM(state = 'dead'),
        MIN(CASE WHEN state = 'pending' THEN accepted_at END)
 FROM messages WHERE state <> 'delivered' GROUP BY robot ORDER BY robot";

/// One caller's batch within a group commit.
pub(crate) struct Batch<'a> {
    pub messages: &'a [NewMessage],
    pub now_ms: i64,
}

/// The daemon's connection.
pub(crate) struct Store {
    pub(super) conn: Connection,
    /// The event log's dedup keys within the window (see [`RecentKeys`]).
    pub(super) recent: RecentKeys,
    /// The database file and its identity (device, inode) when opened: a file deleted or replaced
    /// under the daemon keeps working through the open descriptor while nothing it writes
    /// survives a restart, so writes check that the path still leads to this file.
    pub(super) file: Option<(std::path::PathBuf, u64, u64)>,
}

thread_local! {
    /// The WAL's size in pages after the last commit on this thread: set by SQLite's WAL hook on
    /// the writer thread (a plain function, so the count lives here), read between commands.
    static WAL_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn count_wal_pages(_wal: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

impl Store {
    /// The writer's store. Its connection's commits report the WAL's size (no automatic
    /// checkpoint: the writer thread runs them, see `handle.rs`).
    pub(crate) fn new(conn: Connection) -> Store {
        conn.wal_hook(Some(count_wal_pages));
        let file = conn.path().map(std::path::PathBuf::from).and_then(|path| {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&path).ok()?;
            Some((path, meta.dev(), meta.ino()))
        });
        Store {
            conn,
            recent: RecentKeys::default(),
            file,
        }
    }

    /// Checks that the database file is still the one opened: not deleted, not replaced.
    pub(crate) fn check_file(&self) -> Result<(), OutboxError> {
        use std::os::unix::fs::MetadataExt;
        let Some((path, dev, ino)) = &self.file else {
            return Ok(());
        };
        let gone = |what: &str| {
            OutboxError::Unavailable(format!(
                "the outbox file {} {what} while the daemon runs: nothing written now would survive a restart; restart dingrelay",
                path.display()
            ))
        };
        match std::fs::metadata(path) {
            Err(_) => Err(gone("was deleted")),
            Ok(meta) if meta.dev() != *dev || meta.ino() != *ino => Err(gone("was replaced")),
            Ok(meta) if meta.nlink() == 0 => Err(gone("was deleted")),
            Ok(_) => Ok(()),
        }
    }

    /// Stores every batch in one transaction, each inside its own savepoint, and commits once.
    ///
    /// Returns one result per batch (a batch that failed to insert is rolled back alone), or an
    /// error for the whole group when the transaction itself failed: then nothing was stored.
    pub(crate) fn enqueue_group(
        &mut self,
        batches: &[Batch<'_>],
    ) -> Result<Vec<Result<Vec<Enqueued>, OutboxError>>, OutboxError> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable("cannot start a transaction"))?;
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut savepoint = tx
                .savepoint()
                .map_err(unavailable("cannot start a savepoint"))?;
            match insert_batch(&savepoint, batch) {
                Ok(enqueued) => {
                    savepoint
                        .commit()
                        .map_err(unavailable("cannot release a savepoint"))?;
                    results.push(Ok(enqueued));
                }
                Err(error) => {
                    // Some errors (a full disk, I/O) make SQLite roll back the whole
                    // transaction: then the batches before this one are gone too.
                    if savepoint.is_autocommit() {
                        return Err(OutboxError::Unavailable(format!(
                            "the transaction was rolled back: {error}"
                        )));
                    }
                    savepoint
                        .rollback()
                        .map_err(unavailable("cannot roll back a failed batch"))?;
                    tracing::warn!(
                        messages = batch.messages.len(),
                        "A batch could not be stored and was rolled back alone: {error}."
                    );
                    results.push(Err(OutboxError::Unavailable(format!(
                        "the batch could not be stored: {error}"
                    ))));
                }
            }
        }
        tx.commit()
            .map_err(unavailable("cannot commit the transaction"))?;
        Ok(results)
    }

    /// Pending messages of the robot due at `now_ms`, oldest first, at most `limit`.
    ///
    /// A row whose stored body cannot be read is moved to the dead letters (with the reason)
    /// instead of blocking the robot's queue.
    pub(crate) fn due(
        &mut self,
        robot: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, OutboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out: Vec<StoredMessage> = Vec::new();
        // Each round moves the unreadable rows it met out of the way; a few rounds are plenty.
        for _round in 0..16 {
            let wanted = limit.saturating_sub(out.len() as i64);
            if wanted <= 0 {
                break;
            }
            let after = out.last().map_or(i64::MIN, |m| m.id);
            let mut broken: Vec<(i64, String)> = Vec::new();
            let mut fetched = 0i64;
            {
                let mut statement = self
                    .conn
                    .prepare_cached(
                        "SELECT id, uuid, robot, rule, source, body, attempts, accepted_at, \
                         age_from, next_attempt_at, last_error, recipients FROM messages \
                         WHERE robot = ?1 AND state <> 'delivered' AND state = 'pending' \
                         AND next_attempt_at <= ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                    )
                    .map_err(unavailable("cannot read due messages"))?;
                let mut rows = statement
                    .query(params![robot, now_ms, after, wanted])
                    .map_err(unavailable("cannot read due messages"))?;
                while let Some(row) = rows
                    .next()
                    .map_err(unavailable("cannot read due messages"))?
                {
                    fetched += 1;
                    match stored_message(row).map_err(unavailable("cannot read a due message"))? {
                        Ok(message) => out.push(message),
                        Err((id, reason)) => broken.push((id, reason)),
                    }
                }
            }
            if broken.is_empty() {
                break;
            }
            for (id, reason) in &broken {
                tracing::error!(
                    id,
                    robot,
                    "A stored message cannot be read; moved to the dead letters: {reason}."
                );
            }
            let ids: Vec<i64> = broken.iter().map(|(id, _)| *id).collect();
            self.mark_dead(
                &ids,
                now_ms,
                "the stored body cannot be read as a DingTalk message",
            )?;
            if fetched < wanted {
                break;
            }
        }
        Ok(out)
    }

    pub(crate) fn next_due_at(&mut self, robot: &str) -> Result<Option<i64>, OutboxError> {
        self.conn
            .prepare_cached(
                "SELECT MIN(next_attempt_at) FROM messages \
                 WHERE robot = ?1 AND state <> 'delivered' AND state = 'pending'",
            )
            .and_then(|mut s| s.query_row([robot], |row| row.get::<_, Option<i64>>(0)))
            .map_err(unavailable("cannot read the next due time"))
    }

    pub(crate) fn pending_count(&mut self, robot: &str) -> Result<usize, OutboxError> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FROM messages \
                 WHERE robot = ?1 AND state <> 'delivered' AND state = 'pending'",
            )
            .and_then(|mut s| s.query_row([robot], |row| row.get::<_, i64>(0)))
            .map(to_usize)
            .map_err(unavailable("cannot count pending messages"))
    }

    /// Per robot with pending or dead messages: how many of each, and when the oldest pending
    /// one was accepted.
    pub(crate) fn robot_stats(&mut self) -> Result<Vec<RobotStats>, OutboxError> {
        self.conn
            .prepare_cached(ROBOT_STATS)
            .and_then(|mut s| {
                s.query_map([], |row| {
                    Ok(RobotStats {
                        robot: row.get(0)?,
                        pending: to_usize(row.get(1)?),
                        dead: to_usize(row.get(2)?),
                        oldest_pending_at: row.get(3)?,
                    })
                })?
                .collect()
            })
            .map_err(unavailable("cannot read the outbox statistics"))
    }

    /// Moves what the WAL holds into the database without waiting for readers (`PASSIVE`); the
    /// writer runs it between transactions, never inside one. A failure only leaves the WAL
    /// longer until the next one.
    pub(crate) fn checkpoint(&mut self) {
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            Ok(()) => WAL_PAGES.set(0),
            Err(error) => {
                tracing::debug!("A WAL checkpoint failed; the next one retries: {error}.");
            }
        }
    }

    /// Pages in the WAL since the last checkpoint, as SQLite reported at the last commit of this
    /// thread's connection.
    pub(crate) fn wal_pages(&self) -> i32 {
        WAL_PAGES.get()
    }

    /// The message the robot's worker was sending, and its rows, if any.
    pub(crate) fn in_flight(
        &mut self,
        robot: &str,
    ) -> Result<Option<(Vec<i64>, Message)>, OutboxError> {
        let context = "cannot read the message in flight";
        let row: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT ids, message FROM in_flight WHERE robot = ?1")
            .and_then(|mut s| {
                s.query_row([robot], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(unavailable(context))?;
        let Some((ids, message)) = row else {
            return Ok(None);
        };
        match (
            serde_json::from_str::<Vec<i64>>(&ids),
            serde_json::from_str::<Message>(&message),
        ) {
            (Ok(ids), Ok(message)) => Ok(Some((ids, message))),
            // Unreadable: forget it; its rows are still pending and go out again.
            _ => {
                self.clear_in_flight(robot)?;
                Ok(None)
            }
        }
    }

    /// Records what the robot's worker is about to send (before it is sent).
    pub(crate) fn set_in_flight(
        &mut self,
        robot: &str,
        ids: &[i64],
        message: &Message,
        now_ms: i64,
    ) -> Result<(), OutboxError> {
        let context = "cannot record the message in flight";
        let ids = serde_json::to_string(ids)
            .map_err(|e| OutboxError::Unavailable(format!("{context}: {e}")))?;
        let message = serde_json::to_string(message)
            .map_err(|e| OutboxError::Unavailable(format!("{context}: {e}")))?;
        self.conn
            .prepare_cached(
                "INSERT INTO in_flight (robot, ids, message, since) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (robot) DO UPDATE SET ids = ?2, message = ?3, since = ?4",
            )
            .and_then(|mut s| s.execute(params![robot, ids, message, now_ms]))
            .map(drop)
            .map_err(unavailable(context))
    }

    /// Forgets the robot's message in flight once none of its rows is pending any more.
    pub(crate) fn settle_in_flight(&mut self, robot: &str) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached(
                "DELETE FROM in_flight WHERE robot = ?1 AND NOT EXISTS (\
                 SELECT 1 FROM messages, json_each(in_flight.ids) AS j \
                 WHERE messages.id = j.value AND messages.state = 'pending')",
            )
            .and_then(|mut s| s.execute([robot]))
            .map(drop)
            .map_err(unavailable("cannot settle the message in flight"))
    }

    fn clear_in_flight(&mut self, robot: &str) -> Result<(), OutboxError> {
        self.conn
            .execute("DELETE FROM in_flight WHERE robot = ?1", [robot])
            .map(drop)
            .map_err(unavailable("cannot clear the message in flight"))
    }

    /// Takes and releases the write lock: the outbox can accept messages right now.
    pub(crate) fn check_writable(&mut self) -> Result<(), OutboxError> {
        self.check_file()?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(unavailable("the outbox cannot be written"))
    }

    pub(crate) fn record_attempt(&mut self, robot: &str, at_ms: i64) -> Result<(), OutboxError> {
        self.conn
            .prepare_cached("INSERT INTO attempts (robot, at_ms) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![robot, at_ms]))
            .map(drop)
            .map_err(unavailable("cannot record an attempt"))
    }

    pub(crate) fn attempts_since(
        &mut self,
        robot: &str,
        since_ms: i64,
    ) -> Result<usize, OutboxError> {
        self.conn
            .prepare_cached("SELECT COUNT(*) FROM attempts WHERE robot = ?1 AND at_ms >= ?2")
            .and_then(|mut s| s.query_row(params![robot, since_ms], |row| row.get::<_, i64>(0)))
            .map(to_usize)
            .map_err(unavailable("cannot count recent attempts"))
    }

    /// Marks rows delivered, whatever their state (DingTalk has them).
    pub(crate) fn mark_delivered(&mut self, ids: &[i64], at_ms: i64) -> Result<(), OutboxError> {
        self.update_each(
            ids,
            "cannot mark messages delivered",
            "UPDATE messages SET state = 'delivered', delivered_at = ?2, dead_at = NULL \
             WHERE id = ?1 AND state <> 'delivered'",
            |statement, id| statement.execute(params![id, at_ms]),
        )
    }

    /// Counts an attempt and schedules the next one; only pending rows change.
    pub(crate) fn mark_retry(
        &mut self,
        ids: &[i64],
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        self.update_each(
            ids,
            "cannot schedule a retry",
            "UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 \
             WHERE id = ?1 AND state = 'pending'",
            |statement, id| statement.execute(params![id, next_attempt_ms, error]),
        )
    }

    /// Counts an attempt and moves pending rows to the dead letters.
    pub(crate) fn mark_dead(
        &mut self,
        ids: &[i64],
        at_ms: i64,
        error: &str,
    ) -> Result<(), OutboxError> {
        self.update_each(
            ids,
            "cannot move messages to the dead letters",
            "UPDATE messages SET state = 'dead', attempts = attempts + 1, dead_at = ?2, \
             last_error = ?3 WHERE id = ?1 AND state = 'pending'",
            |statement, id| statement.execute(params![id, at_ms, error]),
        )
    }

    /// Runs one update per id in one transaction.
    fn update_each(
        &mut self,
        ids: &[i64],
        context: &'static str,
        sql: &str,
        run: impl Fn(&mut rusqlite::CachedStatement<'_>, i64) -> rusqlite::Result<usize>,
    ) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        {
            let mut statement = tx.prepare_cached(sql).map_err(unavailable(context))?;
            for &id in ids {
                run(&mut statement, id).map_err(unavailable(context))?;
            }
        }
        tx.commit().map_err(unavailable(context))
    }

    /// Deletes delivered rows delivered before `delivered_before_ms` and attempt records older
    /// than `attempts_before_ms`. Returns how many rows went.
    pub(crate) fn prune(
        &mut self,
        delivered_before_ms: i64,
        attempts_before_ms: i64,
    ) -> Result<usize, OutboxError> {
        let context = "cannot prune";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        let messages = tx
            .execute(
                "DELETE FROM messages WHERE state = 'delivered' AND delivered_at < ?1",
                [delivered_before_ms],
            )
            .map_err(unavailable(context))?;
        let attempts = tx
            .execute(
                "DELETE FROM attempts WHERE at_ms < ?1",
                [attempts_before_ms],
            )
            .map_err(unavailable(context))?;
        tx.commit().map_err(unavailable(context))?;
        Ok(messages + attempts)
    }
}

/// Inserts one batch (inside the caller's savepoint).
fn insert_batch(conn: &Connection, batch: &Batch<'_>) -> Result<Vec<Enqueued>, String> {
    let total = batch.messages.len();
    let mut out = Vec::with_capacity(total);
    for (index, new) in batch.messages.iter().enumerate() {
        let id = insert_message(conn, new, None, batch.now_ms)
            .map_err(|e| format!("message {} of {total}: {e}", index + 1))?;
        out.push(Enqueued::Accepted { id });
    }
    Ok(out)
}

/// Inserts one pending message, due at `now_ms`, and returns its row id. Its `msgUuid` is new
/// and ordered by time: the accept time in ms, then 80 random bits.
pub(super) fn insert_message(
    conn: &Connection,
    new: &NewMessage,
    event_id: Option<i64>,
    now_ms: i64,
) -> Result<i64, String> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO messages (uuid, event_id, robot, rule, source, dedup_key, body, summary, \
             link, state, attempts, accepted_at, age_from, next_attempt_at, recipients) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?10, ?10, ?11)",
        )
        .map_err(|e| e.to_string())?;
    let mut message = new.message.clone();
    message.msg_uuid = None;
    let body = serde_json::to_string(&message).map_err(|e| e.to_string())?;
    let recipients = (!new.recipients.is_empty())
        .then(|| serde_json::to_string(&new.recipients))
        .transpose()
        .map_err(|e| e.to_string())?;
    insert
        .execute(params![
            msg_uuid(now_ms),
            event_id,
            new.robot,
            new.rule,
            new.source,
            new.dedup_key,
            body,
            message.summary(),
            message.link(),
            now_ms,
            recipients,
        ])
        .map_err(|e| e.to_string())?;
    Ok(conn.last_insert_rowid())
}

/// A new `msgUuid`: 48 bits of Unix ms, then 80 random bits, as 32 hex digits. Ordered by time
/// (UUIDv7's layout, without its version bits), so unique without an index to prove it.
fn msg_uuid(now_ms: i64) -> String {
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    let ms = (now_ms.max(0) as u128) & ((1u128 << 48) - 1);
    format!("{:032x}", (ms << 80) | random)
}

/// A due row as a [`StoredMessage`], or its id and why its body cannot be read.
fn stored_message(row: &Row<'_>) -> rusqlite::Result<Result<StoredMessage, (i64, String)>> {
    let id: i64 = row.get("id")?;
    let uuid: String = row.get("uuid")?;
    let body: String = row.get("body")?;
    let mut message: Message = match serde_json::from_str(&body) {
        Ok(message) => message,
        Err(error) => return Ok(Err((id, error.to_string()))),
    };
    message.msg_uuid = Some(uuid);
    let recipients: Option<String> = row.get("recipients")?;
    let recipients = match recipients
        .as_deref()
        .map(serde_json::from_str::<Vec<String>>)
    {
        None => Vec::new(),
        Some(Ok(recipients)) => recipients,
        Some(Err(error)) => return Ok(Err((id, format!("recipients: {error}")))),
    };
    let attempts: i64 = row.get("attempts")?;
    Ok(Ok(StoredMessage {
        id,
        robot: row.get("robot")?,
        rule: row.get("rule")?,
        source: row.get("source")?,
        message,
        recipients,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        accepted_at: row.get("accepted_at")?,
        age_from: row.get("age_from")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_error: row.get("last_error")?,
    }))
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::schema;

    fn new(robot: &str, content: &str) -> NewMessage {
        NewMessage {
            robot: robot.to_owned(),
            rule: "rule".to_owned(),
            source: "src".to_owned(),
            dedup_key: None,
            recipients: Vec::new(),
            message: Message::text(content),
        }
    }

    struct Temp(std::path::PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store(name: &str) -> (Store, Temp) {
        let dir = std::env::temp_dir().join(format!(
            "dingrelay-store-{}-{name}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conn = schema::open_daemon(&dir.join(schema::FILE_NAME)).unwrap();
        (Store::new(conn), Temp(dir))
    }

    #[test]
    fn the_outbox_gauges_are_read_from_the_index_alone() {
        let (store, _temp) = store("stats-plan");
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {ROBOT_STATS}"))
            .unwrap()
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan, ["SCAN messages USING COVERING INDEX messages_open"]);
    }

    #[test]
    fn a_failing_batch_in_a_group_is_rolled_back_alone() {
        let (mut store, _temp) = store("group");
        let good = vec![new("ops", "one"), new("ops", "two")];
        // The third message breaks the schema's CHECK (empty robot) after two were inserted.
        let bad = vec![new("ops", "three"), new("ops", "four"), new("", "five")];
        let also_good = vec![new("dev", "six")];
        let results = store
            .enqueue_group(&[
                Batch {
                    messages: &good,
                    now_ms: 1_000,
                },
                Batch {
                    messages: &bad,
                    now_ms: 1_000,
                },
                Batch {
                    messages: &also_good,
                    now_ms: 1_000,
                },
            ])
            .unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().unwrap().len(), 2);
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("message 3 of 3"), "{error}");
        assert!(error.contains("CHECK constraint failed"), "{error}");
        assert_eq!(results[2].as_ref().unwrap().len(), 1);
        let ops = store.due("ops", 1_000, 100).unwrap();
        let contents: Vec<String> = ops.iter().map(|m| m.message.summary()).collect();
        assert_eq!(contents, ["one", "two"]);
        assert_eq!(store.pending_count("dev").unwrap(), 1);
    }

    #[test]
    fn an_unreadable_body_goes_to_the_dead_letters_and_does_not_block_the_queue() {
        let (mut store, _temp) = store("broken");
        let batch = vec![new("ops", "one"), new("ops", "two"), new("ops", "three")];
        let results = store
            .enqueue_group(&[Batch {
                messages: &batch,
                now_ms: 5,
            }])
            .unwrap();
        let Ok(ids) = &results[0] else {
            panic!("stored")
        };
        let Enqueued::Accepted { id: first } = ids[0];
        store
            .conn
            .execute(
                "UPDATE messages SET body = 'not json' WHERE id = ?1",
                [first],
            )
            .unwrap();
        let due = store.due("ops", 5, 2).unwrap();
        let contents: Vec<String> = due.iter().map(|m| m.message.summary()).collect();
        assert_eq!(
            contents,
            ["two", "three"],
            "the broken row does not count against the limit"
        );
        let (state, error): (String, String) = store
            .conn
            .query_row(
                "SELECT state, last_error FROM messages WHERE id = ?1",
                [first],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(state, "dead");
        assert!(error.contains("cannot be read"), "{error}");
    }

    #[test]
    fn a_negative_attempt_count_or_huge_limit_does_not_panic() {
        let (mut store, _temp) = store("odd");
        let batch = vec![new("ops", "one")];
        store
            .enqueue_group(&[Batch {
                messages: &batch,
                now_ms: 5,
            }])
            .unwrap();
        store
            .conn
            .execute("UPDATE messages SET attempts = -3", [])
            .unwrap();
        let due = store.due("ops", 5, usize::MAX).unwrap();
        assert_eq!(due[0].attempts, 0);
    }
}

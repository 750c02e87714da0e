//! WAL checkpoints off the commit path.
//!
//! With SQLite's default, the connection that commits past 1,000 WAL pages copies the WAL into the
//! database file and fsyncs it inside that commit. For the outbox that meant every few thousand
//! accepted webhooks, one group of senders waited several milliseconds longer for their `202`
//! (`scripts/load.sh`: p99 7.4 ms with it, 4.1 ms without; BENCHMARKS.md).
//!
//! So the daemon's writer connection hands that work to a thread of its own, with its own
//! connection: after a commit the writer wakes it ([`Checkpointer::committed`]), and it runs a
//! `PASSIVE` checkpoint, at most every [`PAUSE`]. A passive checkpoint takes no lock a writer
//! waits for, so commits go on meanwhile.
//!
//! Invariants:
//! - durability does not depend on checkpoints: a commit is durable once its WAL frames are
//!   fsynced (`synchronous=FULL`); a checkpoint only moves committed pages into the main file;
//! - the WAL stays bounded: if this thread falls behind or fails (its errors are logged), the
//!   writer still checkpoints by itself past [`WRITER_BACKSTOP_PAGES`], as SQLite always does;
//!   since the background checkpoints have copied most pages by then, that one is short;
//! - the thread ends when the writer's handle is dropped (the outbox closes).

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::schema;

/// The least time between two background checkpoints.
pub(super) const PAUSE: Duration = Duration::from_millis(200);

/// WAL pages (4 KiB) past which the writer checkpoints by itself (SQLite's
/// `wal_autocheckpoint`; its default is 1,000).
pub(super) const WRITER_BACKSTOP_PAGES: i64 = 10_000;

/// The writer's side: wakes the checkpoint thread.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread. `writer` is the daemon's
    /// writer connection: its own automatic checkpoints are raised to the backstop.
    pub(super) fn start(path: &Path, writer: &Connection) -> Result<Checkpointer, String> {
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_BACKSTOP_PAGES)
            .map_err(|e| format!("cannot set wal_autocheckpoint: {e}"))?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open the checkpoint connection: {e}"))?;
        schema::configure(&conn)
            .map_err(|e| format!("cannot configure the checkpoint connection: {e}"))?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("outbox-checkpoint".to_owned())
            .spawn(move || run(&conn, &woken))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer { wake })
    }

    /// Tells the thread that a transaction committed. Never blocks.
    pub(super) fn committed(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>) {
    let mut last = Instant::now() - PAUSE;
    loop {
        if woken.recv().is_err() {
            return;
        }
        // Commits during the pause are covered by the checkpoint after it.
        if let Some(rest) = PAUSE.checked_sub(last.elapsed()) {
            std::thread::sleep(rest);
            let _ = woken.try_recv();
        }
        last = Instant::now();
        match checkpoint(conn) {
            Ok((wal_pages, copied)) => tracing::trace!(
                wal_pages,
                copied,
                "Checkpointed the outbox's write-ahead log."
            ),
            Err(error) => tracing::warn!(
                "Could not checkpoint the outbox's write-ahead log in the background; the writer \
                 will do it: {error}."
            ),
        }
    }
}

/// One passive checkpoint: the WAL's size in pages and how many of them are in the main file.
pub(super) fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_copies_committed_pages_into_the_database_file() {
        let dir = std::env::temp_dir().join(format!(
            "dingrelay-checkpoint-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.sqlite3");
        let writer = schema::open_daemon(&path).unwrap();
        let checkpointer = Checkpointer::start(&path, &writer).unwrap();
        let size = || std::fs::metadata(&path).map_or(0, |m| m.len());

        // About 2,000 pages: more than SQLite's default threshold, less than the backstop, so
        // the writer does not checkpoint by itself and the file grows only if the thread does.
        writer
            .execute_batch(
                "CREATE TABLE filler (b BLOB); BEGIN; \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
                 INSERT INTO filler SELECT zeroblob(4000) FROM n; COMMIT;",
            )
            .unwrap();
        let before = size();
        assert!(before < 1_000_000, "not checkpointed yet: {before} bytes");
        checkpointer.committed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while size() < 8_000_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(size() >= 8_000_000, "checkpointed: {} bytes", size());
        drop(checkpointer);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

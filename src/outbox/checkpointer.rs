//! The checkpointer: a thread with its own connection that moves the WAL into the database when
//! the writer asks, so neither a commit nor the writer's next group waits on a checkpoint.
//!
//! A `PASSIVE` checkpoint runs beside the writer in WAL mode: it copies committed pages into the
//! database while new commits append to the WAL, and never blocks them. Requests coalesce (one
//! pending request at most). Should checkpoints fall behind a flood, the writer still does one
//! itself past a hard limit (see `handle.rs`), so the WAL stays bounded.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags};

use super::schema;

/// Asks the checkpoint thread for a checkpoint. Dropping it ends the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: mpsc::SyncSender<()>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread; `None` when either fails (the
    /// writer then checkpoints by itself).
    pub(crate) fn start(path: &Path) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(path, flags)
            .and_then(|conn| schema::configure(&conn).map(|()| conn))
        {
            Ok(conn) => conn,
            Err(error) => {
                tracing::debug!("No checkpoint thread; the writer checkpoints itself: {error}.");
                return None;
            }
        };
        let (wake, requests) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("checkpoint".to_owned())
            .spawn(move || {
                while requests.recv().is_ok() {
                    if let Err(error) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!("A WAL checkpoint failed; the next one retries: {error}.");
                    }
                }
            })
            .ok()?;
        Some(Checkpointer { wake })
    }

    /// Asks for a checkpoint; returns at once (a request already pending covers this one).
    pub(crate) fn request(&self) {
        let _ = self.wake.try_send(());
    }
}

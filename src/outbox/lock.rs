//! The state directory's lock: one daemon per `state_dir`.
//!
//! Two daemons on one state directory would each keep their own rate limit per robot (DingTalk
//! would see both, answer "too fast" and block the robot for 10 minutes) and each send the same
//! pending messages. So the daemon holds an exclusive lock (`flock`) on `<state_dir>/lock` for as
//! long as its outbox is open, and a second one refuses to start, naming the first one's pid. The
//! kernel drops the lock when the process dies, however it dies, so a crash never leaves a stale
//! lock. `dingrelay outbox ...` does not take it: it works beside the running daemon.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// How long opening waits for a lock held by this same process (an outbox being closed by a
/// thread that has not finished yet) before calling it taken.
const WAIT: Duration = Duration::from_secs(2);

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock, writing this process's pid into the file. The error is one sentence for
    /// the operator.
    pub(crate) fn take(state_dir: &Path) -> Result<StateLock, String> {
        let path = state_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        let deadline = Instant::now() + WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    let who = if holder.is_empty() {
                        "another dingrelay".to_owned()
                    } else {
                        format!("another dingrelay (pid {holder})")
                    };
                    return Err(format!(
                        "{who} already uses the state directory {}: run one daemon per state_dir \
                         (two would each keep their own rate limit and send the same messages)",
                        state_dir.display()
                    ));
                }
                Err(TryLockError::Error(error)) => {
                    return Err(format!("cannot lock {}: {error}", path.display()));
                }
            }
        }
        // Best effort: the pid only serves the message above.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_first_pid() {
        let dir = std::env::temp_dir().join(format!(
            "dingrelay-lock-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let first = StateLock::take(&dir).unwrap();
        let error = StateLock::take(&dir).unwrap_err();
        assert!(
            error.contains(&format!("another dingrelay (pid {})", std::process::id())),
            "{error}"
        );
        assert!(error.contains("one daemon per state_dir"), "{error}");
        drop(first);
        let again = StateLock::take(&dir).expect("free once the first is dropped");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

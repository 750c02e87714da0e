//! Shared test support: the corpus of real payloads, the DingTalk stand-in as a transport, and a
//! buffer to read back what was printed or logged.

pub mod corpus;
pub mod mock_dingtalk;
pub mod output;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This test process's scratch directory, `<tmp>/dingrelay-tests/<pid>`: every test's files go
/// under it. Tests remove what they can, but one that fails (or a daemon it killed) leaves files;
/// so the first call also removes the scratch directories of test processes that are gone, and
/// at most the last run's leftovers stay in the system's temp directory.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let parent = std::env::temp_dir().join("dingrelay-tests");
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let gone = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = parent.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("the scratch directory can be created");
        dir
    })
}

/// A new, empty directory `<scratch>/<prefix>-N` for one test (N unique in this process).
pub fn fresh_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = scratch_dir().join(format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory can be created");
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a daemon the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Splits a command line as sh would, for plain commands: words, single and double quotes,
/// backslashes; a `#` starting a word starts a comment.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => break,
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

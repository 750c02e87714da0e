//! The database file: its name, connection settings and schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// The outbox file inside the state directory.
pub const FILE_NAME: &str = "outbox.sqlite3";

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

/// How long a connection waits for another one's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The event log: one row per accepted webhook, and what it became. `STRICT` tables: a value of
/// the wrong type is an error, not silently stored. Row ids are the rowid (no `AUTOINCREMENT`),
/// so an id freed by purging the newest rows may be reused. What the request carried is in
/// `event_bodies`, under the same id, written once and never updated: marking an event routed
/// rewrites this small row only, and scans (the dedup window at start, listings) stay cheap.
const EVENTS: &str = "
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    dedup_key   TEXT,
    received_at INTEGER NOT NULL,
    routed_at   INTEGER,
    routings    INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT
) STRICT;
CREATE INDEX events_waiting ON events (id) WHERE routed_at IS NULL;
CREATE TABLE event_bodies (
    id      INTEGER PRIMARY KEY,
    headers TEXT    NOT NULL,
    query   TEXT    NOT NULL,
    body    BLOB    NOT NULL
) STRICT;
";

/// The messages: one row per message and robot. `uuid` is time-ordered and has no index (rows
/// are found by `id`); the one index covers what is not delivered, the only rows workers read.
const MESSAGES: &str = "
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    uuid            TEXT    NOT NULL,
    event_id        INTEGER,
    robot           TEXT    NOT NULL CHECK (robot <> ''),
    rule            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    dedup_key       TEXT,
    body            TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    link            TEXT,
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    accepted_at     INTEGER NOT NULL,
    age_from        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    dead_at         INTEGER,
    last_error      TEXT,
    recipients      TEXT
) STRICT;
";

/// The index on messages, created after the table (and after the copy of a migration). It holds
/// `state` and `accepted_at` too, so the outbox gauges (`/metrics`) read the index alone: with
/// 100,000 pending messages, 29 ms instead of 169 ms a scrape.
const MESSAGES_INDEX: &str = "CREATE INDEX messages_open ON messages (robot, id, state, accepted_at) WHERE state <> 'delivered'";

/// Older builds of schema version 2 made `messages_open` on `(robot, id)` alone; the daemon
/// replaces it when it opens such a file (and migrates it to version 3).
const OLD_MESSAGES_INDEX: &str =
    "CREATE INDEX messages_open ON messages (robot, id) WHERE state <> 'delivered'";

/// Attempts: a few per robot and minute, kept ten minutes, so small enough to scan.
const ATTEMPTS: &str = "
CREATE TABLE attempts (
    robot TEXT    NOT NULL,
    at_ms INTEGER NOT NULL
) STRICT;
";

/// What each robot's worker is sending: the exact message (its `msgUuid` included) and the rows
/// it carries, written before the request goes out, removed once none of them is pending. After
/// a crash the worker sends it again as it was, so a message never goes out under a second
/// `msgUuid` (alone, then inside a digest).
const IN_FLIGHT: &str = "
CREATE TABLE in_flight (
    robot   TEXT    PRIMARY KEY,
    ids     TEXT    NOT NULL,
    message TEXT    NOT NULL,
    since   INTEGER NOT NULL
) STRICT;
";

/// Version 2 to 3: `recipients`, the people a message to an app robot's one-to-one chats or a
/// work notification goes to (a JSON array of user ids; NULL for a group).
const MIGRATE_V2_V3: &str = "ALTER TABLE messages ADD COLUMN recipients TEXT;";

/// Version 1 to 2: adds the event log, rebuilds `messages` without `AUTOINCREMENT`, the `uuid`
/// UNIQUE index and the dedup index, and drops the attempts index.
const MIGRATE_V1_V2: &str = "
ALTER TABLE messages RENAME TO messages_v1;
DROP INDEX IF EXISTS messages_due;
DROP INDEX IF EXISTS messages_dedup;
DROP INDEX IF EXISTS attempts_robot_at;
";

const COPY_V1_V2: &str = "
INSERT INTO messages (id, uuid, event_id, robot, rule, source, dedup_key, body, summary, link,
                      state, attempts, accepted_at, age_from, next_attempt_at, delivered_at,
                      dead_at, last_error)
SELECT id, uuid, NULL, robot, rule, source, dedup_key, body, summary, link, state, attempts,
       accepted_at, age_from, next_attempt_at, delivered_at, dead_at, last_error
FROM messages_v1;
DROP TABLE messages_v1;
DELETE FROM sqlite_sequence;
";

/// Per-connection settings every connection to the file uses.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Opens (creating the file if needed) the daemon's connection: WAL, `synchronous=FULL`, the
/// busy timeout, and the schema brought up to [`SCHEMA_VERSION`].
pub(crate) fn open_daemon(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| format!("cannot open: {e}"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("cannot set the busy timeout: {e}"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| format!("cannot switch to the WAL journal: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "the file system refused the WAL journal (journal mode is `{mode}`)"
        ));
    }
    refuse_read_only(&conn, path)?;
    configure(&conn).map_err(|e| format!("cannot configure the connection: {e}"))?;
    // The writer thread checkpoints between transactions itself, so no commit waits on one.
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(|e| format!("cannot turn off automatic checkpoints: {e}"))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// SQLite opens a file the user cannot write read-only, without an error: refuse that outbox at
/// start, rather than serve and answer 503 to every webhook.
fn refuse_read_only(conn: &Connection, path: &Path) -> Result<(), String> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        return Err(read_only_reason(path));
    }
    Ok(())
}

/// Why SQLite opened the file read-only: said so that the operator can fix it.
fn read_only_reason(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(path)
        .map(|m| format!(" (owner uid {}, mode {:o})", m.uid(), m.mode() & 0o7777))
        .unwrap_or_default();
    format!(
        "the file can only be read by this user{owner}, so nothing could be accepted: give the \
         daemon's user write access to it and to its directory (left root-owned by a manual run?)"
    )
}

/// Creates the schema of an empty database; refuses a database written by a newer dingrelay.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot start the schema transaction: {e}"))?;
    let version = user_version(&tx).map_err(|e| format!("cannot read the schema version: {e}"))?;
    let mut drop_old_index = false;
    let created = match version {
        0 => {
            tx.execute_batch(&format!(
                "{EVENTS}{MESSAGES}{MESSAGES_INDEX};{ATTEMPTS}{IN_FLIGHT}"
            ))
            .map_err(|e| format!("cannot create the schema: {e}"))?;
            true
        }
        1 => {
            tx.execute_batch(&format!(
                "{MIGRATE_V1_V2}{EVENTS}{MESSAGES}{COPY_V1_V2}{MESSAGES_INDEX};{IN_FLIGHT}"
            ))
            .map_err(|e| format!("cannot migrate the schema from version 1: {e}"))?;
            false
        }
        2 => {
            tx.execute_batch(MIGRATE_V2_V3)
                .map_err(|e| format!("cannot migrate the schema from version 2: {e}"))?;
            drop_old_index = true;
            false
        }
        SCHEMA_VERSION => {
            drop(tx);
            return cover_open_messages(conn);
        }
        other => return Err(version_error(other)),
    };
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| format!("cannot set the schema version: {e}"))?;
    tx.commit()
        .map_err(|e| format!("cannot commit the schema: {e}"))?;
    if created {
        tracing::info!(version = SCHEMA_VERSION, "Created the outbox schema.");
    } else {
        tracing::info!(
            from = version,
            version = SCHEMA_VERSION,
            "Migrated the outbox schema."
        );
    }
    if drop_old_index {
        return cover_open_messages(conn);
    }
    Ok(())
}

/// Replaces an older build's `messages_open` ([`OLD_MESSAGES_INDEX`]) with [`MESSAGES_INDEX`].
fn cover_open_messages(conn: &mut Connection) -> Result<(), String> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'messages_open'",
            [],
            |row| row.get(0),
        )
        .ok();
    if sql.as_deref() != Some(OLD_MESSAGES_INDEX) {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot start the index transaction: {e}"))?;
    tx.execute_batch(&format!("DROP INDEX messages_open; {MESSAGES_INDEX};"))
        .map_err(|e| format!("cannot rebuild the index of open messages: {e}"))?;
    tx.commit()
        .map_err(|e| format!("cannot commit the index of open messages: {e}"))?;
    tracing::info!("Rebuilt the index of open messages to cover the outbox gauges.");
    Ok(())
}

/// Whether an existing dingrelay database has an older schema this build migrates.
pub(crate) fn needs_migration(conn: &Connection) -> bool {
    user_version(conn).is_ok_and(|v| v > 0 && v < SCHEMA_VERSION)
}

/// Checks that an existing database has the schema this build reads.
pub(crate) fn check_version(conn: &Connection) -> Result<(), String> {
    match user_version(conn).map_err(|e| format!("cannot read the schema version: {e}"))? {
        SCHEMA_VERSION => Ok(()),
        0 => Err("it is not a dingrelay outbox (no schema)".to_owned()),
        other => Err(version_error(other)),
    }
}

fn version_error(version: i64) -> String {
    if version > SCHEMA_VERSION {
        format!(
            "its schema version {version} is newer than this dingrelay reads ({SCHEMA_VERSION}): \
             run the newer dingrelay"
        )
    } else {
        format!("unknown schema version {version} (this dingrelay reads {SCHEMA_VERSION})")
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dingrelay-schema-{}-{name}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(FILE_NAME)
    }

    #[test]
    fn a_new_file_gets_wal_full_sync_and_the_current_version() {
        let path = temp_file("new");
        let conn = open_daemon(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        drop(conn);
        // Opening again keeps the schema and its rows.
        let conn = open_daemon(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_version_2_outbox_gets_recipients_and_the_covering_index() {
        let path = temp_file("v2-index");
        drop(open_daemon(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        // Version 2 as an older build left it: no `recipients`, the narrower index.
        conn.execute_batch(&format!(
            "DROP INDEX messages_open; ALTER TABLE messages DROP COLUMN recipients; \
             {OLD_MESSAGES_INDEX}; PRAGMA user_version = 2;"
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO messages (uuid, robot, rule, source, body, summary, accepted_at, \
             age_from, next_attempt_at) VALUES ('u1', 'ops', 'r', 's', '{}', 'one', 5, 5, 9)",
        )
        .unwrap();
        let index = |conn: &Connection| -> String {
            conn.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'messages_open'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(index(&conn), OLD_MESSAGES_INDEX, "as SQLite keeps it");
        drop(conn);
        let conn = open_daemon(&path).unwrap();
        assert_eq!(index(&conn), MESSAGES_INDEX);
        assert_eq!(user_version(&conn).unwrap(), 3);
        let (count, recipients): (i64, Option<String>) = conn
            .query_row("SELECT count(*), max(recipients) FROM messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, recipients), (1, None), "kept, to a group");
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Version 1, as dingrelay 0.1 wrote it.
    const SCHEMA_V1: &str = "
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE,
    robot TEXT NOT NULL CHECK (robot <> ''), rule TEXT NOT NULL, source TEXT NOT NULL,
    dedup_key TEXT, body TEXT NOT NULL, summary TEXT NOT NULL, link TEXT,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0, accepted_at INTEGER NOT NULL, age_from INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL, delivered_at INTEGER, dead_at INTEGER, last_error TEXT
) STRICT;
CREATE INDEX messages_due ON messages (robot, state, next_attempt_at, id);
CREATE INDEX messages_dedup ON messages (robot, dedup_key);
CREATE TABLE attempts (robot TEXT NOT NULL, at_ms INTEGER NOT NULL) STRICT;
CREATE INDEX attempts_robot_at ON attempts (robot, at_ms);
PRAGMA user_version = 1;
";

    #[test]
    fn a_version_1_outbox_keeps_its_messages_and_gets_the_event_log() {
        let path = temp_file("v1");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (uuid, robot, rule, source, body, summary, state, attempts, \
             accepted_at, age_from, next_attempt_at, last_error) VALUES \
             ('u1', 'ops', 'r', 's', '{}', 'one', 'pending', 2, 5, 5, 9, 'HTTP 500'), \
             ('u2', 'dev', 'r', 's', '{}', 'two', 'dead', 1, 6, 6, 6, 'refused');
             INSERT INTO attempts VALUES ('ops', 7);",
        )
        .unwrap();
        drop(conn);
        let conn = open_daemon(&path).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let rows: Vec<(i64, String, String, i64, Option<String>)> = conn
            .prepare("SELECT id, uuid, state, attempts, last_error FROM messages ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "u1".into(), "pending".into(), 2, Some("HTTP 500".into())),
                (2, "u2".into(), "dead".into(), 1, Some("refused".into()))
            ]
        );
        let attempts: i64 = conn
            .query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(attempts, 1);
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            ["events_waiting", "messages_open"],
            "only what queries need"
        );
        // New rows continue after the migrated ones.
        conn.execute(
            "INSERT INTO messages (uuid, robot, rule, source, body, summary, accepted_at, \
             age_from, next_attempt_at) VALUES ('u3', 'ops', 'r', 's', '{}', '', 0, 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 3);
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_due_query_reads_the_open_messages_index() {
        let path = temp_file("plan");
        let conn = open_daemon(&path).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE robot = 'ops' \
                 AND state <> 'delivered' AND state = 'pending' AND next_attempt_at <= 5 \
                 AND id > 0 ORDER BY id LIMIT 10",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("messages_open")), "{plan:?}");
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_file_opened_read_only_is_refused_with_its_owner_and_mode() {
        let path = temp_file("readonly");
        drop(open_daemon(&path).unwrap());
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let error = refuse_read_only(&conn, &path).unwrap_err();
        assert!(
            error.contains("can only be read by this user (owner uid"),
            "{error}"
        );
        assert!(
            error.contains("give the daemon's user write access"),
            "{error}"
        );
        let writable = Connection::open(&path).unwrap();
        assert_eq!(refuse_read_only(&writable, &path), Ok(()));
        drop((conn, writable));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let path = temp_file("newer");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let error = open_daemon(&path).unwrap_err();
        assert!(error.contains("newer than this dingrelay reads"), "{error}");
        let conn = Connection::open(&path).unwrap();
        let error = check_version(&conn).unwrap_err();
        assert!(error.contains("newer"), "{error}");
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_schema_refuses_an_empty_robot_and_an_unknown_state() {
        let path = temp_file("checks");
        let conn = open_daemon(&path).unwrap();
        let insert = |robot: &str, state: &str| {
            conn.execute(
                "INSERT INTO messages (uuid, robot, rule, source, body, summary, state, \
                 accepted_at, age_from, next_attempt_at) VALUES (?1, ?2, 'r', 's', '{}', '', ?3, 0, 0, 0)",
                (format!("{robot}-{state}"), robot, state),
            )
        };
        assert!(insert("", "pending").is_err());
        assert!(insert("ops", "lost").is_err());
        assert!(insert("ops", "pending").is_ok());
        drop(conn);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

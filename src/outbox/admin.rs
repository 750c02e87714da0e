//! [`Admin`]: the operator's synchronous access to the outbox file, used by `dingrelay outbox`.
//!
//! It opens its own read-write connection, so it works while the daemon runs: WAL lets it read
//! while the daemon writes, and the busy timeout makes its writes wait for the daemon's.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::event_log::{
    EventFilter, EventListing, EventMessage, StoredEvent, event_listing, event_messages,
    select_events,
};
use super::model::State;
use super::schema;

/// Why `dingrelay outbox` cannot do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The file does not exist: the daemon never ran with this state directory.
    #[error("no outbox at {}: has the daemon run with this state_dir?", .0.display())]
    Missing(PathBuf),
    /// The file cannot be used, or a query failed; the text names the file and what failed.
    #[error("outbox at {}: {reason}", .path.display())]
    Database { path: PathBuf, reason: String },
}

/// The states an operator may purge. Pending rows cannot be purged: that would lose messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purgeable {
    Dead,
    Delivered,
}

/// One row of `dingrelay outbox list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub id: i64,
    pub robot: String,
    pub rule: String,
    pub state: State,
    pub attempts: i64,
    pub accepted_at: i64,
    pub next_attempt_at: i64,
    pub summary: String,
    pub last_error: Option<String>,
}

/// Every column of one row, for `dingrelay outbox show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub id: i64,
    /// Sent as `msgUuid`.
    pub uuid: String,
    pub robot: String,
    pub rule: String,
    pub source: String,
    pub dedup_key: Option<String>,
    /// The message JSON as stored (without `msgUuid`).
    pub body: String,
    pub summary: String,
    pub link: Option<String>,
    pub state: State,
    pub attempts: i64,
    pub accepted_at: i64,
    pub age_from: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub dead_at: Option<i64>,
    pub last_error: Option<String>,
    /// Whom it goes to (user ids), for a robot that addresses people; empty for a group.
    pub recipients: Vec<String>,
}

/// How many messages of one robot are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RobotCounts {
    pub robot: String,
    pub pending: usize,
    pub dead: usize,
    pub delivered: usize,
}

/// The operator's connection to an existing outbox.
#[derive(Debug)]
pub struct Admin {
    conn: Connection,
    path: PathBuf,
}

const LISTING_COLUMNS: &str =
    "id, robot, rule, state, attempts, accepted_at, next_attempt_at, summary, last_error";

impl Admin {
    /// Opens `<state_dir>/outbox.sqlite3` read-write, without creating it: a missing file is
    /// [`AdminError::Missing`].
    pub fn open(state_dir: &Path) -> Result<Admin, AdminError> {
        let path = state_dir.join(schema::FILE_NAME);
        if !path.is_file() {
            return Err(AdminError::Missing(path));
        }
        let fail = |reason: String| AdminError::Database {
            path: path.clone(),
            reason,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| fail(format!("cannot open: {e}")))?;
        schema::configure(&conn).map_err(|e| fail(format!("cannot configure: {e}")))?;
        if schema::needs_migration(&conn) {
            schema::migrate(&mut conn).map_err(&fail)?;
        }
        schema::check_version(&conn).map_err(fail)?;
        Ok(Admin { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, context: &str) -> impl FnOnce(rusqlite::Error) -> AdminError {
        let path = self.path.clone();
        let context = context.to_owned();
        move |e| AdminError::Database {
            path,
            reason: format!("{context}: {e}"),
        }
    }

    /// Messages, oldest first, optionally of one state and one robot.
    pub fn list(
        &self,
        state: Option<State>,
        robot: Option<&str>,
    ) -> Result<Vec<Listing>, AdminError> {
        let sql = format!(
            "SELECT {LISTING_COLUMNS} FROM messages \
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR robot = ?2) ORDER BY id"
        );
        let mut statement = self
            .conn
            .prepare(&sql)
            .map_err(self.error("cannot list messages"))?;
        let rows = statement
            .query_map(params![state.map(State::as_str), robot], listing)
            .map_err(self.error("cannot list messages"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(self.error("cannot read a message"))?);
        }
        Ok(out)
    }

    /// Per robot (by name), how many messages are pending, dead and delivered.
    pub fn counts(&self) -> Result<Vec<RobotCounts>, AdminError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT robot, \
                 SUM(state = 'pending'), SUM(state = 'dead'), SUM(state = 'delivered') \
                 FROM messages GROUP BY robot ORDER BY robot",
            )
            .map_err(self.error("cannot count messages"))?;
        let rows = statement
            .query_map([], |row| {
                let count = |i| {
                    row.get::<_, i64>(i)
                        .map(|n| usize::try_from(n).unwrap_or(0))
                };
                Ok(RobotCounts {
                    robot: row.get(0)?,
                    pending: count(1)?,
                    dead: count(2)?,
                    delivered: count(3)?,
                })
            })
            .map_err(self.error("cannot count messages"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(self.error("cannot count messages"))?);
        }
        Ok(out)
    }

    /// Every column of message `id`, if it exists.
    pub fn show(&self, id: i64) -> Result<Option<Detail>, AdminError> {
        self.conn
            .query_row(
                "SELECT id, uuid, robot, rule, source, dedup_key, body, summary, link, state, \
                 attempts, accepted_at, age_from, next_attempt_at, delivered_at, dead_at, \
                 last_error, recipients FROM messages WHERE id = ?1",
                [id],
                |row| {
                    Ok(Detail {
                        id: row.get("id")?,
                        uuid: row.get("uuid")?,
                        robot: row.get("robot")?,
                        rule: row.get("rule")?,
                        source: row.get("source")?,
                        dedup_key: row.get("dedup_key")?,
                        body: row.get("body")?,
                        summary: row.get("summary")?,
                        link: row.get("link")?,
                        state: state(row, "state")?,
                        attempts: row.get("attempts")?,
                        accepted_at: row.get("accepted_at")?,
                        age_from: row.get("age_from")?,
                        next_attempt_at: row.get("next_attempt_at")?,
                        delivered_at: row.get("delivered_at")?,
                        dead_at: row.get("dead_at")?,
                        last_error: row.get("last_error")?,
                        recipients: row
                            .get::<_, Option<String>>("recipients")?
                            .and_then(|json| serde_json::from_str(&json).ok())
                            .unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(self.error("cannot read the message"))
    }

    /// Sends message `id` again: a dead or pending message becomes pending, with attempts 0 and
    /// its age and due time reset to `now_ms`. Returns false when there is no such message or it
    /// was already delivered.
    pub fn retry(&self, id: i64, now_ms: i64) -> Result<bool, AdminError> {
        let changed = self
            .conn
            .execute(
                "UPDATE messages SET state = 'pending', attempts = 0, age_from = ?2, \
                 next_attempt_at = ?2, dead_at = NULL \
                 WHERE id = ?1 AND state IN ('pending', 'dead')",
                params![id, now_ms],
            )
            .map_err(self.error("cannot retry the message"))?;
        Ok(changed > 0)
    }

    /// Sends every dead message (of one robot, or of all) again, as [`Admin::retry`] does.
    /// Returns how many.
    pub fn retry_dead(&self, robot: Option<&str>, now_ms: i64) -> Result<usize, AdminError> {
        self.conn
            .execute(
                "UPDATE messages SET state = 'pending', attempts = 0, age_from = ?2, \
                 next_attempt_at = ?2, dead_at = NULL \
                 WHERE state = 'dead' AND (?1 IS NULL OR robot = ?1)",
                params![robot, now_ms],
            )
            .map_err(self.error("cannot retry dead messages"))
    }

    /// Deletes dead or delivered messages (of one robot, or of all), optionally only those that
    /// died or were delivered more than `older_than_ms` before `now_ms`. Never deletes pending
    /// messages. Returns how many went.
    pub fn purge(
        &self,
        state: Purgeable,
        robot: Option<&str>,
        older_than_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<usize, AdminError> {
        let (state, since) = match state {
            Purgeable::Dead => ("dead", "dead_at"),
            Purgeable::Delivered => ("delivered", "delivered_at"),
        };
        let before = older_than_ms.map(|age| now_ms.saturating_sub(age));
        let sql = format!(
            "DELETE FROM messages WHERE state = ?1 AND state <> 'pending' \
             AND (?2 IS NULL OR robot = ?2) AND (?3 IS NULL OR {since} < ?3)"
        );
        self.conn
            .execute(&sql, params![state, robot, before])
            .map_err(self.error("cannot purge messages"))
    }
}

fn state(row: &Row<'_>, column: &str) -> rusqlite::Result<State> {
    let text: String = row.get(column)?;
    text.parse().map_err(|reason: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, reason.into())
    })
}

fn listing(row: &Row<'_>) -> rusqlite::Result<Listing> {
    Ok(Listing {
        id: row.get("id")?,
        robot: row.get("robot")?,
        rule: row.get("rule")?,
        state: state(row, "state")?,
        attempts: row.get("attempts")?,
        accepted_at: row.get("accepted_at")?,
        next_attempt_at: row.get("next_attempt_at")?,
        summary: row.get("summary")?,
        last_error: row.get("last_error")?,
    })
}

/// The event log, for `dingrelay outbox events`, `reroute` and `dry-run`.
impl Admin {
    /// Events matching `filter`, newest first (at most `filter.limit`); only those waiting to be
    /// routed with `waiting`.
    pub fn events(
        &self,
        filter: &EventFilter,
        waiting: bool,
    ) -> Result<Vec<EventListing>, AdminError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT e.id, source, name, dedup_key, received_at, routed_at, routings, outcome, \
                 (SELECT length(body) FROM event_bodies b WHERE b.id = e.id) FROM events e \
                 WHERE e.id >= ?1 AND e.id <= ?2 AND received_at >= ?3 \
                 AND received_at <= ?4 AND (?5 IS NULL OR source = ?5) \
                 AND (?6 = 0 OR routed_at IS NULL) ORDER BY e.id DESC LIMIT ?7",
            )
            .map_err(self.error("cannot list events"))?;
        statement
            .query_map(
                rusqlite::params![
                    filter.from_id,
                    filter.to_id,
                    filter.since_ms,
                    filter.until_ms,
                    filter.source,
                    i64::from(waiting),
                    filter.limit
                ],
                event_listing,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.error("cannot list events"))
    }

    /// The messages an event made when it was last routed.
    pub fn event_messages(&self, event_id: i64) -> Result<Vec<EventMessage>, AdminError> {
        event_messages(&self.conn, event_id).map_err(self.error("cannot read an event's messages"))
    }

    /// The stored events matching `filter`, oldest first, with their bodies (for a dry run).
    pub fn stored_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, AdminError> {
        select_events(&self.conn, filter).map_err(self.error("cannot read events"))
    }

    /// Marks the routed events matching `filter` as waiting again: the running daemon routes
    /// them through the rules it has now, into new messages (with new msgUuids), and sends
    /// them. Returns how many were marked.
    pub fn reroute(&self, filter: &EventFilter) -> Result<usize, AdminError> {
        self.conn
            .execute(
                "UPDATE events SET routed_at = NULL WHERE routed_at IS NOT NULL \
                 AND id >= ?1 AND id <= ?2 AND received_at >= ?3 AND received_at <= ?4 \
                 AND (?5 IS NULL OR source = ?5)",
                rusqlite::params![
                    filter.from_id,
                    filter.to_id,
                    filter.since_ms,
                    filter.until_ms,
                    filter.source
                ],
            )
            .map_err(self.error("cannot mark events for re-routing"))
    }
}

//! The event log: every accepted webhook as it arrived, until it is routed and its retention is
//! over. What goes in ([`NewEvent`]), what routing reads ([`StoredEvent`]), what it writes back
//! ([`RoutedEvent`], [`Outcome`]); the writer thread's operations on it are in `event_store.rs`.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::model::NewMessage;

/// An accepted webhook to append: what its source needs to parse it again, and when it came.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    /// The event's name (`firing`, `push`, ...), for listings.
    pub name: String,
    /// The sender's redelivery key: an event with the same source and key appended within the
    /// dedup window is a duplicate, not stored again.
    pub dedup_key: Option<String>,
    /// The request headers the source may read, authentication and signatures removed.
    pub headers: BTreeMap<String, String>,
    /// The query string, without values carrying a secret.
    pub query: String,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// When it was received (Unix ms).
    pub received_at: i64,
}

/// What happened to an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored as event `id`, waiting to be routed.
    Stored { id: i64 },
    /// The same source and dedup key were appended within the window, as event `id`.
    Duplicate { id: i64 },
}

/// An event as routing reads it back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub source: String,
    pub name: String,
    /// The sender's redelivery key, when it has one.
    pub dedup_key: Option<String>,
    pub received_at: i64,
    /// How many times it was routed before (a re-route counts).
    pub routings: i64,
    pub headers: BTreeMap<String, String>,
    pub query: String,
    pub body: Vec<u8>,
}

/// What routing made of one event: its messages and its outcome, written in one transaction
/// with the mark that the event is routed.
#[derive(Debug, Clone)]
pub struct RoutedEvent {
    pub event_id: i64,
    pub messages: Vec<NewMessage>,
    pub outcome: Outcome,
    pub routed_at: i64,
}

/// What became of an event, kept with it (JSON in `events.outcome`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The rules that matched, in file order.
    #[serde(default)]
    pub rules: Vec<String>,
    /// The rules that failed on it, each with its reason; their robots got a fallback message.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// The message rows it made (filled in by the outbox when it stores them).
    #[serde(default)]
    pub messages: Vec<i64>,
    /// Why it made nothing, when it made nothing (no rule matched, its source is gone, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A rule that failed on an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub rule: String,
    /// The robot, when the rule failed for that robot only (its keywords, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot: Option<String>,
    pub reason: String,
}

/// One event of the log, for `dingrelay outbox events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventListing {
    pub id: i64,
    pub source: String,
    pub name: String,
    pub dedup_key: Option<String>,
    pub received_at: i64,
    pub routed_at: Option<i64>,
    pub routings: i64,
    /// `None` while it waits to be routed, or when the stored outcome cannot be read.
    pub outcome: Option<Outcome>,
    pub body_bytes: i64,
}

/// A message an event made, as listed with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    pub id: i64,
    pub robot: String,
    pub rule: String,
    pub state: super::model::State,
    pub summary: String,
}

/// The messages event `event_id` made when it was last routed, in order: none while it waits,
/// or when it made none, or when its messages were pruned.
pub(crate) fn event_messages(
    conn: &Connection,
    event_id: i64,
) -> rusqlite::Result<Vec<EventMessage>> {
    let outcome: Option<Option<String>> = conn
        .query_row(
            "SELECT outcome FROM events WHERE id = ?1",
            [event_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(outcome) = outcome
        .flatten()
        .and_then(|o| serde_json::from_str::<Outcome>(&o).ok())
    else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(
        "SELECT id, robot, rule, state, summary FROM messages WHERE id = ?1 AND event_id = ?2",
    )?;
    let mut out = Vec::new();
    for id in outcome.messages {
        let row = statement
            .query_row(params![id, event_id], |row| {
                let state: String = row.get(3)?;
                Ok(EventMessage {
                    id: row.get(0)?,
                    robot: row.get(1)?,
                    rule: row.get(2)?,
                    state: state.parse().unwrap_or(super::model::State::Dead),
                    summary: row.get(4)?,
                })
            })
            .optional()?;
        out.extend(row);
    }
    Ok(out)
}

/// The dedup keys appended within the window, kept by the writer thread so that appending
/// needs no index: rebuilt from the log's newest rows on the first append after opening.
#[derive(Debug, Default)]
pub(crate) struct RecentKeys {
    pub(super) loaded: bool,
    /// (source, key) → (event id, received at).
    pub(super) keys: HashMap<(String, String), (i64, i64)>,
    /// Appends since the last sweep of expired keys.
    since_sweep: usize,
}

/// Expired keys are swept after this many appends (and the map is at least this big).
const SWEEP_EVERY: usize = 4096;

impl RecentKeys {
    pub(super) fn load(&mut self, conn: &Connection, window_start: i64) -> rusqlite::Result<()> {
        let mut statement =
            conn.prepare("SELECT id, source, dedup_key, received_at FROM events ORDER BY id DESC")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let received_at: i64 = row.get(3)?;
            if received_at <= window_start {
                break;
            }
            let Some(key): Option<String> = row.get(2)? else {
                continue;
            };
            self.keys
                .entry((row.get(1)?, key))
                .or_insert((row.get(0)?, received_at));
        }
        self.loaded = true;
        Ok(())
    }

    pub(super) fn sweep(&mut self, window_start: i64) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY && self.keys.len() >= SWEEP_EVERY {
            self.keys.retain(|_, (_, at)| *at > window_start);
            self.since_sweep = 0;
        }
    }
}

/// The start of a query for [`StoredEvent`]s (read by [`stored_event`]), to complete with a
/// `WHERE` on `e` (events) and `b` (event_bodies).
pub(super) const STORED_EVENT: &str = "SELECT e.id, source, name, dedup_key, received_at, \
     routings, headers, query, body FROM events e JOIN event_bodies b ON b.id = e.id";

pub(super) fn stored_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let headers: String = row.get("headers")?;
    Ok(StoredEvent {
        id: row.get("id")?,
        source: row.get("source")?,
        name: row.get("name")?,
        dedup_key: row.get("dedup_key")?,
        received_at: row.get("received_at")?,
        routings: row.get("routings")?,
        // Written by `append_events` from a map; an unreadable one is shown to routing as empty
        // (the source then decides whether it can parse the event without headers).
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        query: row.get("query")?,
        body: row.get("body")?,
    })
}

/// A row of `events` as listed, from `SELECT id, source, name, dedup_key, received_at,
/// routed_at, routings, outcome, length(body)`.
pub(crate) fn event_listing(row: &Row<'_>) -> rusqlite::Result<EventListing> {
    let outcome: Option<String> = row.get(7)?;
    Ok(EventListing {
        id: row.get(0)?,
        source: row.get(1)?,
        name: row.get(2)?,
        dedup_key: row.get(3)?,
        received_at: row.get(4)?,
        routed_at: row.get(5)?,
        routings: row.get(6)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        body_bytes: row.get::<_, Option<i64>>(8)?.unwrap_or(0),
    })
}

/// Reads stored events by id range and time, for re-routing and dry runs (admin connection).
pub(crate) fn select_events(
    conn: &Connection,
    filter: &EventFilter,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut statement = conn.prepare(&format!(
        "{STORED_EVENT} WHERE e.id >= ?1 AND e.id <= ?2 AND received_at >= ?3 \
         AND received_at <= ?4 AND (?5 IS NULL OR source = ?5) ORDER BY e.id LIMIT ?6"
    ))?;
    statement
        .query_map(
            params![
                filter.from_id,
                filter.to_id,
                filter.since_ms,
                filter.until_ms,
                filter.source,
                filter.limit
            ],
            stored_event,
        )?
        .collect()
}

/// Which events an operator means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub from_id: i64,
    pub to_id: i64,
    pub since_ms: i64,
    pub until_ms: i64,
    pub source: Option<String>,
    pub limit: i64,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            from_id: i64::MIN,
            to_id: i64::MAX,
            since_ms: i64::MIN,
            until_ms: i64::MAX,
            source: None,
            limit: i64::MAX,
        }
    }
}

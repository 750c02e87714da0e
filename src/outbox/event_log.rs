//! The event log: every accepted webhook as it arrived, until it is routed and its retention is
//! over. What goes in ([`NewEvent`]), what routing reads ([`StoredEvent`]), what it writes back
//! ([`RoutedEvent`], [`Outcome`]), and the writer thread's operations on the `events` table.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::model::{NewMessage, OutboxError};
use super::store::{Store, insert_message, unavailable};

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

/// The dedup keys appended within the window, kept by the writer thread so that appending
/// needs no index: rebuilt from the log's newest rows on the first append after opening.
#[derive(Debug, Default)]
pub(crate) struct RecentKeys {
    loaded: bool,
    /// (source, key) → (event id, received at).
    keys: HashMap<(String, String), (i64, i64)>,
    /// Appends since the last sweep of expired keys.
    since_sweep: usize,
}

/// Expired keys are swept after this many appends (and the map is at least this big).
const SWEEP_EVERY: usize = 4096;

impl RecentKeys {
    fn load(&mut self, conn: &Connection, window_start: i64) -> rusqlite::Result<()> {
        let mut statement = conn.prepare(
            "SELECT id, source, dedup_key, received_at FROM events ORDER BY id DESC",
        )?;
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

    fn sweep(&mut self, window_start: i64) {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY && self.keys.len() >= SWEEP_EVERY {
            self.keys.retain(|_, (_, at)| *at > window_start);
            self.since_sweep = 0;
        }
    }
}

impl Store {
    /// Appends every event in one transaction (one fsync), each after its dedup check: a
    /// duplicate within `dedup_window_ms` (0 or less: no dedup) is answered with the earlier id.
    pub(crate) fn append_events(
        &mut self,
        events: &[NewEvent],
        dedup_window_ms: i64,
    ) -> Result<Vec<Appended>, OutboxError> {
        let context = "cannot append events";
        let now = events.iter().map(|e| e.received_at).max().unwrap_or(0);
        let window_start = now.saturating_sub(dedup_window_ms);
        if dedup_window_ms > 0 && !self.recent.loaded {
            self.recent
                .load(&self.conn, window_start)
                .map_err(unavailable("cannot read recent events"))?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        let mut answers = Vec::with_capacity(events.len());
        let mut added: Vec<((String, String), (i64, i64))> = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (source, name, dedup_key, received_at, headers, query, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(unavailable(context))?;
            for event in events {
                let key = event
                    .dedup_key
                    .as_ref()
                    .filter(|_| dedup_window_ms > 0)
                    .map(|k| (event.source.clone(), k.clone()));
                if let Some(key) = &key {
                    let earlier = added
                        .iter()
                        .rev()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| *v)
                        .or_else(|| self.recent.keys.get(key).copied());
                    if let Some((id, at)) = earlier
                        && at > event.received_at.saturating_sub(dedup_window_ms)
                    {
                        answers.push(Appended::Duplicate { id });
                        continue;
                    }
                }
                let headers = serde_json::to_string(&event.headers)
                    .map_err(|e| OutboxError::Unavailable(format!("{context}: {e}")))?;
                insert
                    .execute(params![
                        event.source,
                        event.name,
                        event.dedup_key,
                        event.received_at,
                        headers,
                        event.query,
                        event.body,
                    ])
                    .map_err(unavailable(context))?;
                let id = tx.last_insert_rowid();
                if let Some(key) = key {
                    added.push((key, (id, event.received_at)));
                }
                answers.push(Appended::Stored { id });
            }
        }
        tx.commit().map_err(unavailable(context))?;
        // Only committed keys count: a failed transaction leaves the map as it was.
        for (key, value) in added {
            self.recent.keys.insert(key, value);
            self.recent.sweep(window_start);
        }
        Ok(answers)
    }

    /// The oldest events waiting to be routed, at most `limit`, in the order they came.
    pub(crate) fn waiting_events(&mut self, limit: usize) -> Result<Vec<StoredEvent>, OutboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let context = "cannot read waiting events";
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT id, source, name, dedup_key, received_at, routings, headers, query, body \
                 FROM events WHERE routed_at IS NULL ORDER BY id LIMIT ?1",
            )
            .map_err(unavailable(context))?;
        statement
            .query_map([limit], stored_event)
            .and_then(|rows| rows.collect())
            .map_err(unavailable(context))
    }

    /// Stores each routed event's messages and marks it routed with its outcome, all in one
    /// transaction: after a crash an event is either routed with all its messages, or waiting
    /// with none. An event no longer waiting (re-routed meanwhile? purged?) is skipped, its
    /// messages not stored. Returns the ids of each event's messages, in order.
    pub(crate) fn commit_routing(
        &mut self,
        routed: &[RoutedEvent],
    ) -> Result<Vec<Vec<i64>>, OutboxError> {
        let context = "cannot store routed messages";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        let mut all_ids = Vec::with_capacity(routed.len());
        for event in routed {
            let waiting: Option<i64> = tx
                .prepare_cached("SELECT id FROM events WHERE id = ?1 AND routed_at IS NULL")
                .and_then(|mut s| s.query_row([event.event_id], |r| r.get(0)).optional())
                .map_err(unavailable(context))?;
            if waiting.is_none() {
                all_ids.push(Vec::new());
                continue;
            }
            let mut ids = Vec::with_capacity(event.messages.len());
            for message in &event.messages {
                let id = insert_message(&tx, message, Some(event.event_id), event.routed_at)
                    .map_err(|e| OutboxError::Unavailable(format!("{context}: {e}")))?;
                ids.push(id);
            }
            let mut outcome = event.outcome.clone();
            outcome.messages = ids.clone();
            let outcome = serde_json::to_string(&outcome)
                .map_err(|e| OutboxError::Unavailable(format!("{context}: {e}")))?;
            tx.prepare_cached(
                "UPDATE events SET routed_at = ?2, routings = routings + 1, outcome = ?3 \
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![event.event_id, event.routed_at, outcome]))
            .map_err(unavailable(context))?;
            all_ids.push(ids);
        }
        tx.commit().map_err(unavailable(context))?;
        Ok(all_ids)
    }

    /// Deletes routed events routed before `routed_before_ms`; returns how many went.
    pub(crate) fn purge_events(&mut self, routed_before_ms: i64) -> Result<usize, OutboxError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE routed_at IS NOT NULL AND routed_at < ?1",
                [routed_before_ms],
            )
            .map_err(unavailable("cannot purge routed events"))
    }
}

fn stored_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
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
        body_bytes: row.get(8)?,
    })
}

/// Reads stored events by id range and time, for re-routing and dry runs (admin connection).
pub(crate) fn select_events(
    conn: &Connection,
    filter: &EventFilter,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut statement = conn.prepare(
        "SELECT id, source, name, dedup_key, received_at, routings, headers, query, body \
         FROM events WHERE id >= ?1 AND id <= ?2 AND received_at >= ?3 AND received_at <= ?4 \
         AND (?5 IS NULL OR source = ?5) ORDER BY id LIMIT ?6",
    )?;
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

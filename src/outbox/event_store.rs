//! The writer thread's operations on the event log: append (with dedup), read what waits, store
//! what routing made of it, purge.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::event_log::{
    Appended, EventMessage, NewEvent, RoutedEvent, STORED_EVENT, StoredEvent, event_messages,
    stored_event,
};
use super::model::OutboxError;
use super::store::{Store, insert_message, unavailable};

impl Store {
    /// Appends every event in one transaction (one fsync), each after its dedup check: a
    /// duplicate within `dedup_window_ms` (0 or less: no dedup) is answered with the earlier id.
    pub(crate) fn append_events(
        &mut self,
        events: &[NewEvent],
        dedup_window_ms: i64,
    ) -> Result<Vec<Appended>, OutboxError> {
        let context = "cannot append events";
        self.check_file()?;
        let now = events.iter().map(|e| e.received_at).max().unwrap_or(0);
        let window_start = now.saturating_sub(dedup_window_ms);
        self.load_recent_keys(dedup_window_ms, now)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        let mut answers = Vec::with_capacity(events.len());
        let mut added: Vec<((String, String), (i64, i64))> = Vec::new();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (source, name, dedup_key, received_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(unavailable(context))?;
            let mut insert_body = tx
                .prepare_cached(
                    "INSERT INTO event_bodies (id, headers, query, body) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(unavailable(context))?;
            for event in events {
                let key = event
                    .dedup_key
                    .as_ref()
                    .map(|k| (event.source.clone(), k.clone()));
                if let Some(key) = key.as_ref().filter(|_| dedup_window_ms > 0) {
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
                    ])
                    .map_err(unavailable(context))?;
                let id = tx.last_insert_rowid();
                insert_body
                    .execute(params![id, headers, event.query, event.body])
                    .map_err(unavailable(context))?;
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

    /// Reads the dedup keys of the events appended within the window, if not read yet: the
    /// daemon does it at start, so no sender's first request waits for it.
    pub(crate) fn load_recent_keys(
        &mut self,
        dedup_window_ms: i64,
        now_ms: i64,
    ) -> Result<usize, OutboxError> {
        if !self.recent.loaded && dedup_window_ms > 0 {
            self.recent
                .load(&self.conn, now_ms.saturating_sub(dedup_window_ms))
                .map_err(unavailable("cannot read recent events"))?;
        }
        Ok(self.recent.keys.len())
    }

    /// The oldest events waiting to be routed, in the order they came: at most `limit`, and no
    /// more once their bodies reach `max_bytes` (the first always comes, whatever its size).
    pub(crate) fn waiting_events(
        &mut self,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, OutboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let context = "cannot read waiting events";
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "{STORED_EVENT} WHERE routed_at IS NULL ORDER BY e.id LIMIT ?1"
            ))
            .map_err(unavailable(context))?;
        let mut rows = statement.query([limit]).map_err(unavailable(context))?;
        let mut events = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.next().map_err(unavailable(context))? {
            let event = stored_event(row).map_err(unavailable(context))?;
            bytes = bytes.saturating_add(event.body.len());
            events.push(event);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(events)
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
        self.check_file()?;
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
        let context = "cannot purge routed events";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable(context))?;
        tx.execute(
            "DELETE FROM event_bodies WHERE id IN \
             (SELECT id FROM events WHERE routed_at IS NOT NULL AND routed_at < ?1)",
            [routed_before_ms],
        )
        .map_err(unavailable(context))?;
        let purged = tx
            .execute(
                "DELETE FROM events WHERE routed_at IS NOT NULL AND routed_at < ?1",
                [routed_before_ms],
            )
            .map_err(unavailable(context))?;
        tx.commit().map_err(unavailable(context))?;
        Ok(purged)
    }

    /// The messages an event made when it was last routed.
    pub(crate) fn event_messages(
        &mut self,
        event_id: i64,
    ) -> Result<Vec<EventMessage>, OutboxError> {
        event_messages(&self.conn, event_id).map_err(unavailable("cannot read an event's messages"))
    }
}

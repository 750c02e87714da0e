//! The durable state: the event log and the messages, in one SQLite file, until DingTalk has
//! every message.
//!
//! One file, `<state_dir>/outbox.sqlite3` (WAL journal, `synchronous=FULL`, busy timeout 5 s,
//! schema versioned with `PRAGMA user_version`, migrated forward at open), holds:
//! - `events`: every accepted webhook (source, event name, dedup key, time), and once routed, what
//!   it became ([`Outcome`]); `event_bodies`, under the same id, what the request carried (the
//!   headers its kind reads, query, body), written once and never updated, so marking an event
//!   routed rewrites a small row and not its body;
//! - `messages`: one row per message and robot, made by routing an event;
//! - `attempts`: every request sent to DingTalk in the last minutes, for the rate limiter.
//!
//! The daemon reaches it through [`Outbox`], a handle to one dedicated thread that owns the
//! connection; `dingrelay outbox ...` reaches the same file through [`Admin`], its own connection
//! in another process.
//!
//! # Durability contract
//!
//! - **Accepted** means committed: a webhook counts as accepted only once the transaction that
//!   appended its event has committed with `synchronous=FULL` (the WAL is fsynced).
//!   [`Outbox::append`] answers only after that commit, and the HTTP intake answers `202` only
//!   after `append` answered. Any failure before (a full disk, a lock held beyond the busy
//!   timeout, a dead thread) is an [`OutboxError::Unavailable`], answered `503`, so the sender
//!   retries: nothing it was told is accepted can be lost with the machine.
//! - Concurrent appends share one transaction and one fsync (group commit).
//! - **Routed exactly once.** [`Outbox::commit_routing`] stores an event's messages and marks the
//!   event routed in one transaction, and stores nothing for an event no longer waiting. So after
//!   a crash at any point an event is either waiting with no message (routed again at the next
//!   start) or routed with all of them; it is never routed twice on its own. Only an operator's
//!   re-route ([`Admin::reroute`]) routes it again, on purpose, into new messages.
//! - **Delivered** means DingTalk answered `errcode 0` *and* [`Outbox::mark_delivered`] committed.
//!   Until then the row stays `pending` and is sent again after a restart.
//! - So a crash can duplicate only a send that was in flight at the crash (sent, but
//!   `mark_delivered` not committed). Every message row has its own `uuid` (48 bits of time, 80
//!   random bits), sent as DingTalk's `msgUuid`; a digest's is derived from its rows. Before a
//!   request goes out, the worker records it in `in_flight` (the exact message and its rows), and
//!   after a restart sends that same message again, alone, before anything else: the repeat
//!   carries the same `msgUuid`, so DingTalk can drop it, and the message never goes out again
//!   under another one (inside a digest, say). The record goes once none of its rows is pending.
//!   The robots of an app are the exception: their APIs take no `msgUuid`, so the repeat of a send
//!   in flight at a crash can show its message twice (once per person for one-to-one chats).
//! - A message for people (an app robot's one-to-one chats, work notifications) keeps whom it goes
//!   to in `recipients`; one-to-one messages are stored one row per person, so each person's
//!   delivery is retried or dead-lettered on its own.
//! - A delivery the outbox cannot record (a full disk) is kept in memory and the robot sends
//!   nothing else until the record is written: it is not sent again in a loop.
//! - A message that can never be delivered (refused by DingTalk, too old, or a stored body that
//!   cannot be read) moves to the dead letters (`state = dead`) and stays there until an operator
//!   retries it (`dingrelay outbox retry`) or purges it (`dingrelay outbox purge`).
//!
//! # Deduplication
//!
//! An event with a dedup key (the sender's delivery id, an alert group's state, a json source's
//! `dedup` template) is not stored again when an event of the same source with the same key was
//! appended less than `dedup_window` before: [`Appended::Duplicate`] names the earlier event. The
//! writer keeps the keys of the window in memory, rebuilt from the newest events at the first
//! append after opening, so appending needs no index. A longer `dedup_window` after a reload takes
//! full effect after a restart. Events are kept at least as long as the window (`keep_events`).
//!
//! # Write path
//!
//! Only the indexes queries need: the waiting events (a partial index, emptied as they are
//! routed) and the messages not yet delivered (a partial index on robot and id). Row ids are plain
//! rowids (no `AUTOINCREMENT`, no `sqlite_sequence` write per insert), so an id freed by pruning
//! the newest rows can be taken again; a `msgUuid` never is. The writer thread runs the WAL
//! checkpoints itself, between transactions (when idle with 64 pages in the WAL, or at the latest
//! at 1,000 pages, SQLite's own threshold), so no commit, and no `202`, waits on one.
//!
//! # Pruning
//!
//! [`Outbox::prune`] deletes delivered messages delivered before a given time and attempt records
//! older than a given time; [`Outbox::purge_events`] deletes events routed before a given time.
//! Neither touches what waits: pending messages and events not yet routed. Dead messages are kept
//! until an operator purges them.
//!
//! # Attempts
//!
//! Every request sent to DingTalk for a robot, delivered or not, is recorded
//! ([`Outbox::record_attempt`]): DingTalk's rate limit counts them all, and after a restart the
//! limiter starts from what went out in the last minute ([`Outbox::attempts_since`]).

mod admin;
mod event_log;
mod event_store;
mod handle;
mod lock;
mod model;
mod schema;
mod store;

pub use admin::{Admin, AdminError, Detail, Listing, Purgeable, RobotCounts};
pub use event_log::{
    Appended, EventFilter, EventListing, EventMessage, Failure, NewEvent, Outcome, RoutedEvent,
    StoredEvent,
};
pub use handle::Outbox;
pub use lock::LOCK_FILE;
pub use model::{Due, Enqueued, NewMessage, OutboxError, RobotStats, State, StoredMessage};
pub use schema::{FILE_NAME, SCHEMA_VERSION};

//! The outbox: every accepted message, durably, until DingTalk has it.
//!
//! One SQLite file, `<state_dir>/outbox.sqlite3` (WAL journal, `synchronous=FULL`, busy timeout
//! 5 s, schema versioned with `PRAGMA user_version`), holds one row per message and robot. The
//! daemon reaches it through [`Outbox`], a handle to one dedicated thread that owns the
//! connection; `dingrelay outbox ...` reaches the same file through [`Admin`], its own connection
//! in another process.
//!
//! # Durability contract
//!
//! - **Accepted** means committed: a message counts as accepted only once the transaction that
//!   inserted it has committed with `synchronous=FULL` (the WAL is fsynced). [`Outbox::enqueue`]
//!   answers only after that commit, and the HTTP intake answers `202` only after `enqueue`
//!   answered. Any failure before (a full disk, a lock held beyond the busy timeout, a dead
//!   thread) is an [`OutboxError::Unavailable`], answered `503`, so the sender retries: nothing it
//!   was told is accepted can be lost with the machine.
//! - A batch (the messages one webhook produced) is all or none: it is stored whole or not at all.
//!   Concurrent batches share one transaction and one fsync (group commit), each inside its own
//!   savepoint, so a batch that fails to insert fails alone.
//! - **Delivered** means DingTalk answered `errcode 0` *and* [`Outbox::mark_delivered`] committed.
//!   Until then the row stays `pending` and is sent again after a restart.
//! - So a crash can duplicate only a send that was in flight at the crash (sent, but
//!   `mark_delivered` not committed). Every row has a random 128-bit `uuid`, sent as DingTalk's
//!   `msgUuid`; the resend carries the same one, so DingTalk can drop the repeat.
//! - A message that can never be delivered (refused by DingTalk, too old, or a stored body that
//!   cannot be read) moves to the dead letters (`state = dead`) and stays there until an operator
//!   retries it (`dingrelay outbox retry`) or purges it (`dingrelay outbox purge`).
//!
//! # Deduplication
//!
//! A message with a `dedup_key` is not stored when a row of the same robot with the same key was
//! accepted less than `dedup_window_ms` before (`accepted_at > now_ms - dedup_window_ms`), whatever
//! that row's state, or earlier in the same batch: it is reported as
//! [`Enqueued::Duplicate`] with the id of that row. A window of 0 or less disables deduplication.
//! Dedup only sees rows that still exist: [`Outbox::prune`] must keep delivered rows at least as
//! long as the dedup window.
//!
//! # Pruning
//!
//! [`Outbox::prune`] deletes delivered rows delivered before a given time and attempt records
//! older than a given time. It never touches pending rows, and dead rows are kept until an
//! operator purges them. Row ids come from `AUTOINCREMENT`, so a pruned id is never reused.
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
mod model;
mod schema;
mod store;

pub use admin::{Admin, AdminError, Detail, Listing, Purgeable, RobotCounts};
pub use event_log::{
    Appended, EventFilter, EventListing, EventMessage, Failure, NewEvent, Outcome, RoutedEvent,
    StoredEvent,
};
pub use handle::Outbox;
pub use model::{Due, Enqueued, NewMessage, OutboxError, RobotStats, State, StoredMessage};
pub use schema::{FILE_NAME, SCHEMA_VERSION};

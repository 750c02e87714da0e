//! dingrelay relays webhooks to DingTalk (钉钉) group robots without dropping a message.
//!
//! Data flows one way, and each stage is a module of its own:
//!
//! ```text
//! HTTP intake -> source (verify, parse) -> event log (durable) -> routing: rules (match, render),
//!   dingtalk message (typed, validated) -> messages (durable) -> per-robot worker (rate limit,
//!   sign, send, classify, retry or dead-letter)
//! ```
//!
//! The list below runs lowest first: each module imports only from those above it (a test,
//! `cargo test layering`, holds the code to that, and ARCHITECTURE.md draws the map).
//!
//! - [`text`], [`clock`], [`metrics`], [`links`]: leaves every stage may use ([`links`]: signed,
//!   expiring tokens for the console's sessions and the links messages carry).
//! - [`yaml`]: locating nodes of a YAML file, rustc-style diagnostics, `${VAR}` expansion, and the
//!   checker that validates a document collecting every error.
//! - [`dingtalk`]: the typed robot message, its validation against DingTalk's real rules, and
//!   signing.
//! - [`source`]: one module per sender kind; verifies a request over its raw bytes, then parses it
//!   into a [`source::Event`].
//! - [`rules`]: the raw and compiled rules; matches an event and renders DingTalk messages through
//!   templates.
//! - [`config`]: `rules.yaml`, parsed into raw structs, then validated into [`config::Config`],
//!   which holds compiled templates and resolved references (the rest of the code only sees
//!   that), and its audit.
//! - [`outbox`]: the durable state (SQLite): the event log intake appends to, and the messages
//!   routing makes of each event, until delivered.
//! - [`routing`]: the stage between the two: takes stored events in order, runs the rules, puts a
//!   fallback message in place of a rule that fails, and stores the messages exactly once.
//! - [`delivery`]: one worker per robot: rate limit, sign, send, classify, retry or dead-letter.
//! - [`intake`]: the HTTP routes.
//! - [`daemon`]: wires everything into the running service, with systemd's notifications.
//! - [`cli`]: the commands `check`, `render`, `test`, `serve` and `outbox`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod delivery;
pub mod dingtalk;
pub mod intake;
pub mod links;
pub mod metrics;
pub mod outbox;
pub mod routing;
pub mod rules;
pub mod source;
pub mod text;
pub mod yaml;

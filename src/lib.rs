//! dingrelay relays webhooks to DingTalk (钉钉) group robots without dropping a message.
//!
//! Data flows one way, and each stage is a module of its own:
//!
//! ```text
//! HTTP intake -> source (verify, parse) -> rules (match, render) -> dingtalk message (typed, validated)
//!   -> outbox (durable) -> per-robot worker (rate limit, sign, send, classify, retry or dead-letter)
//! ```
//!
//! - [`config`]: `rules.yaml`, parsed into raw structs, then validated into [`config::Config`], which
//!   holds compiled templates and resolved references. The rest of the code only sees that.
//! - [`source`]: one module per sender kind; verifies a request over its raw bytes, then parses it
//!   into an [`source::Event`].
//! - [`rules`]: matches an event against the rules and renders DingTalk messages through templates.
//! - [`dingtalk`]: the typed robot message, its validation against DingTalk's real rules, and signing.
//! - [`outbox`]: the durable queue between intake and delivery (SQLite).
//! - [`delivery`]: one worker per robot: rate limit, sign, send, classify, retry or dead-letter.
//! - [`intake`]: the HTTP routes; [`serve`] wires everything into the daemon.
//! - [`commands`]: `check`, `render`, `serve` and `outbox`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod dingtalk;
pub mod intake;
pub mod metrics;
pub mod outbox;
pub mod rules;
pub mod source;
pub mod text;
pub mod yaml;

//! `rules.yaml`: parsed into raw structs ([`raw`]), then validated into [`Config`] (`load.rs`),
//! then, for `check` and reloads, audited by running every rule on example payloads ([`audit`](mod@audit)).
//!
//! Loading happens in two steps. serde reads the file into [`raw::RawConfig`], whose structs deny
//! unknown keys; a structural error there (unknown key, wrong type, bad YAML) stops loading with
//! one located error. Then validation expands `${VAR}`s, reads `*_file` secrets, resolves every
//! reference and compiles every template, collecting *all* its errors, each located at the YAML
//! node it is about (see [`crate::yaml`]).
//!
//! A [`Config`] only exists when all of that succeeded: the rest of the code never sees an
//! unexpanded value, a dangling reference or an uncompiled template.
//!
//! Relative paths (`state_dir`, `*_file`) are relative to the directory of the config file, so the
//! meaning of a file does not depend on where the daemon is started from.

pub mod audit;
mod load;
mod model;
pub mod raw;
mod robots;
mod sources;
mod wording;

pub use audit::{Audit, Finding, Problem, audit};
pub use load::ConfigError;
pub use model::{
    Config, DEFAULT_LISTEN, DEFAULT_TIMEZONE, DINGTALK_HOST, DeliverySettings, IntakeSettings,
    RobotDelivery,
};
pub use wording::{RUST_WORDS, plain as plain_serde_error};

//! YAML documents as dingrelay reads them: where each node is ([`locate`]), errors pointing at a
//! node and rendered the way rustc does ([`diagnostic`]), `${VAR}` expansion ([`expand`]), and a
//! [`Checker`] that validates a document node by node collecting every error.
//!
//! A leaf: it knows nothing of robots, sources or rules, so both `rules` and `config` build on it.

pub mod checker;
pub mod diagnostic;
pub mod expand;
pub mod locate;

pub use checker::{Checker, serde_diagnostic};
pub use diagnostic::Diagnostic;
pub use locate::{Location, Locations, Path};

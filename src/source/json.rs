//! Generic JSON webhooks: any sender that posts a JSON object.
//!
//! Authentication: `auth` (bearer or basic). There is no signature scheme to check, so a
//! `secret` is refused (by the config loader, and by [`Source::verify`](super::Source::verify)
//! should one get through).
//!
//! Invariants:
//! - any JSON object is accepted, unchanged;
//! - the event name is the `event` query parameter (`/hooks/ci?event=deploy`), empty when absent;
//! - there is no dedup key: a generic sender has no delivery id we could trust.

use std::collections::BTreeMap;

use super::request::Parsed;

/// The query parameter naming the event.
pub const EVENT_PARAMETER: &str = "event";

pub(super) fn parse(query: &BTreeMap<String, String>) -> Parsed {
    Parsed {
        name: query.get(EVENT_PARAMETER).cloned().unwrap_or_default(),
        ignored: None,
        dedup_key: None,
    }
}

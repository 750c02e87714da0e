//! One incoming event, parsed: what rules match and templates read (its template context is
//! built in [`super::context`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::alerts;
use super::kind::SourceKind;

/// One incoming event, parsed.
#[derive(Debug, Clone)]
pub struct Event {
    /// The configured source name.
    pub source: String,
    pub kind: SourceKind,
    /// The event name: `X-GitHub-Event`, GitLab's `object_kind`, `firing`/`resolved` for alerts,
    /// the `event` query parameter for json sources (empty when absent).
    pub name: String,
    /// Set when the event is answered without matching rules (GitHub `ping`), with the reason.
    pub ignored: Option<String>,
    /// The parsed body (a JSON object).
    pub payload: serde_json::Value,
    /// Request headers, names lower-cased, authentication headers removed.
    pub headers: BTreeMap<String, String>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// A key identifying this delivery, so a redelivery is not posted twice.
    pub dedup_key: Option<String>,
}

impl Event {
    /// [`Event::template_context`] as JSON (without `now`), for `check` and tests.
    pub fn context(&self, alert_limit: Option<usize>) -> (serde_json::Value, usize) {
        let (context, omitted) = self.template_context(alert_limit, None);
        (serde_json::to_value(&context).unwrap_or_default(), omitted)
    }

    /// The query parameters as a query string again (what the event log stores).
    pub fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.query)
            .finish()
    }

    /// How many alerts the event carries, for alert kinds.
    pub fn alert_count(&self) -> Option<usize> {
        self.kind
            .has_alerts()
            .then(|| alerts::list(&self.payload).map_or(0, <[Value]>::len))
    }
}

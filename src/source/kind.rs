//! The kinds of sender dingrelay understands, and what each one's requests look like.

use http::HeaderMap;
use serde::Deserialize;

/// The kinds of sender dingrelay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Prometheus Alertmanager, webhook payload version 4.
    Alertmanager,
    /// Grafana unified alerting webhook contact point.
    Grafana,
    Github,
    Gitlab,
    /// Any JSON object.
    Json,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Alertmanager,
        SourceKind::Grafana,
        SourceKind::Github,
        SourceKind::Gitlab,
        SourceKind::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Grafana => "grafana",
            SourceKind::Github => "github",
            SourceKind::Gitlab => "gitlab",
            SourceKind::Json => "json",
        }
    }

    /// The request header that names the event, for kinds that have one.
    pub fn event_header(self) -> Option<&'static str> {
        match self {
            SourceKind::Github => Some("x-github-event"),
            SourceKind::Gitlab => Some("x-gitlab-event"),
            _ => None,
        }
    }

    /// The content type a sender of this kind uses for `body` when none is given (commands that
    /// replay a payload from a file): GitHub's form encoding for a `payload=` body, else JSON.
    pub fn default_content_type(self, body: &[u8]) -> &'static str {
        if self == SourceKind::Github && body.starts_with(b"payload=") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        }
    }

    /// Whether events of this kind carry an alert list (`alerts`, `firing`, `resolved`), which
    /// is shortened with an "...and N more alerts" marker when a message would be too long.
    pub fn has_alerts(self) -> bool {
        matches!(self, SourceKind::Alertmanager | SourceKind::Grafana)
    }

    /// Recognises the sender of a payload by its headers and shape (`render` and `test` pick a
    /// source by it when none is named).
    pub fn guess(headers: &HeaderMap, body: &[u8]) -> SourceKind {
        if headers.contains_key("x-github-event") || body.starts_with(b"payload=") {
            return SourceKind::Github;
        }
        if headers.contains_key("x-gitlab-event") {
            return SourceKind::Gitlab;
        }
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
        else {
            return SourceKind::Json;
        };
        if map.contains_key("alerts") && map.contains_key("orgId") {
            SourceKind::Grafana
        } else if map.contains_key("alerts")
            && (map.contains_key("groupKey") || map.contains_key("receiver"))
        {
            SourceKind::Alertmanager
        } else if map.contains_key("object_kind") {
            SourceKind::Gitlab
        } else if map.contains_key("repository")
            && (map.contains_key("sender") || map.contains_key("hook"))
        {
            SourceKind::Github
        } else {
            SourceKind::Json
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

//! Silencing an alert in Alertmanager as the DingTalk user who pressed "Silence": `POST
//! /api/v2/silences` with the alert's labels as equality matchers and the user's name as
//! `createdBy`, so Alertmanager's own UI shows who did it.
//!
//! Invariants: only the alert's labels are matched (each exactly, never a regular expression),
//! so a silence can never cover more than alerts with those very labels; the silence ends at a
//! time the caller chooses (the button's duration), never open-ended; Alertmanager's refusal is
//! said with its status and message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// A silence to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRequest {
    /// The alert's labels: each becomes an equality matcher.
    pub labels: BTreeMap<String, String>,
    /// The DingTalk user's name (`createdBy`).
    pub created_by: String,
    pub comment: String,
    /// When it starts and ends, RFC 3339.
    pub starts_at: jiff::Timestamp,
    pub ends_at: jiff::Timestamp,
}

impl SilenceRequest {
    /// A silence of `labels` by `user` from `now` for `length`.
    pub fn new(
        labels: BTreeMap<String, String>,
        user: &str,
        now: jiff::Timestamp,
        length: Duration,
    ) -> SilenceRequest {
        let ends_at = jiff::SignedDuration::try_from(length)
            .ok()
            .and_then(|length| now.checked_add(length).ok())
            .unwrap_or(now);
        SilenceRequest {
            labels,
            created_by: user.to_owned(),
            comment: format!("Silenced from DingTalk by {user} (dingrelay)"),
            starts_at: now,
            ends_at,
        }
    }

    /// The body of `POST /api/v2/silences`.
    pub fn body(&self) -> serde_json::Value {
        let matchers: Vec<serde_json::Value> = self
            .labels
            .iter()
            .map(|(name, value)| {
                json!({"name": name, "value": value, "isRegex": false, "isEqual": true})
            })
            .collect();
        json!({
            "matchers": matchers,
            "startsAt": self.starts_at.to_string(),
            "endsAt": self.ends_at.to_string(),
            "createdBy": self.created_by,
            "comment": self.comment,
        })
    }
}

/// Why no silence was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("an alert without labels cannot be silenced (it would silence everything)")]
    NoLabels,
    #[error("Alertmanager refused the silence (HTTP {status}: {message})")]
    Refused { status: u16, message: String },
    #[error("Alertmanager could not be reached: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// Creates `silence` in the Alertmanager at `base` (`http://alertmanager:9093`); its id.
///
/// # Errors
///
/// See [`SilenceError`].
pub async fn create(
    client: &reqwest::Client,
    base: &url::Url,
    silence: &SilenceRequest,
) -> Result<String, SilenceError> {
    if silence.labels.is_empty() {
        return Err(SilenceError::NoLabels);
    }
    let url = base
        .join("api/v2/silences")
        .map_err(|e| SilenceError::Unavailable(e.to_string()))?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(silence.body().to_string())
        .send()
        .await
        .map_err(|e| SilenceError::Unavailable(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| SilenceError::Unavailable(e.without_url().to_string()))?;
    if status != 200 {
        return Err(SilenceError::Refused {
            status,
            message: crate::text::shorten(body.trim(), 300),
        });
    }
    serde_json::from_str::<Created>(&body)
        .map(|created| created.silence_id)
        .map_err(|_| SilenceError::Refused {
            status,
            message: "an answer without silenceID".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_matches_each_label_exactly_and_ends() {
        let labels: BTreeMap<String, String> = [("alertname", "DiskFull"), ("instance", "db-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let now: jiff::Timestamp = "2026-12-03T08:00:00Z".parse().unwrap();
        let silence = SilenceRequest::new(labels, "张三", now, Duration::from_secs(7200));
        assert_eq!(
            silence.body(),
            json!({
                "matchers": [
                    {"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
                    {"name": "instance", "value": "db-1", "isRegex": false, "isEqual": true},
                ],
                "startsAt": "2026-12-03T08:00:00Z",
                "endsAt": "2026-12-03T10:00:00Z",
                "createdBy": "张三",
                "comment": "Silenced from DingTalk by 张三 (dingrelay)",
            })
        );
    }
}

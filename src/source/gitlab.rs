//! GitLab project, group and system webhooks.
//!
//! Authentication: `secret` must equal the `X-Gitlab-Token` header (GitLab's "Secret token"),
//! compared in constant time; `auth` (bearer/basic) works too.
//!
//! Invariants:
//! - the event name is the body's `object_kind` (`push`, `tag_push`, `merge_request`,
//!   `pipeline`, `issue`, `note`, `build`, ...), else its `event_name` (system and group hooks),
//!   else the `X-Gitlab-Event` header mapped to the same names (`Push Hook` → `push`, ...); a
//!   request with none of the three is refused;
//! - the dedup key is the `Idempotency-Key` header (GitLab 17.1+, kept when GitLab re-runs a
//!   delivery), else none.

use http::HeaderMap;
use serde_json::{Map, Value};

use super::request::{Inbound, Parsed, Rejection, ct_eq, header_text, single_header};

/// The header carrying the secret token.
pub const TOKEN_HEADER: &str = "X-Gitlab-Token";
/// The header naming the hook (`Push Hook`, ...).
pub const EVENT_HEADER: &str = "X-Gitlab-Event";
/// The per-delivery key, used for dedup.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

pub(super) fn verify(secret: &[u8], inbound: &Inbound<'_>) -> Result<(), Rejection> {
    let Some(token) = single_header(inbound.headers, TOKEN_HEADER)? else {
        return Err(Rejection::Unauthorized(
            "missing X-Gitlab-Token header (is the secret token set on the GitLab webhook?)".into(),
        ));
    };
    if ct_eq(token.as_bytes(), secret) {
        Ok(())
    } else {
        Err(Rejection::Unauthorized("wrong X-Gitlab-Token".into()))
    }
}

pub(super) fn parse(
    payload: &Map<String, Value>,
    headers: &HeaderMap,
) -> Result<Parsed, Rejection> {
    let from_body = ["object_kind", "event_name"].iter().find_map(|key| {
        payload
            .get(*key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    });
    let name = match from_body {
        Some(name) => name,
        None => match header_text(headers, EVENT_HEADER) {
            Some(hook) => event_for_hook(hook),
            None => {
                return Err(Rejection::Malformed(
                    "cannot tell the GitLab event: no `object_kind` in the body and no \
                     X-Gitlab-Event header"
                        .into(),
                ));
            }
        },
    };
    Ok(Parsed {
        name,
        ignored: None,
        dedup_key: header_text(headers, IDEMPOTENCY_HEADER).map(str::to_owned),
    })
}

/// Maps an `X-Gitlab-Event` value to the `object_kind` GitLab puts in that hook's body
/// (`Push Hook` → `push`, `Job Hook` → `build`, ...). Unknown hooks are snake-cased without the
/// ` Hook` suffix (`Foo Bar Hook` → `foo_bar`).
pub fn event_for_hook(hook: &str) -> String {
    let known = match hook {
        "Push Hook" => Some("push"),
        "Tag Push Hook" => Some("tag_push"),
        "Issue Hook" | "Confidential Issue Hook" => Some("issue"),
        "Note Hook" | "Confidential Note Hook" => Some("note"),
        "Merge Request Hook" => Some("merge_request"),
        "Wiki Page Hook" => Some("wiki_page"),
        "Pipeline Hook" => Some("pipeline"),
        "Job Hook" | "Build Hook" => Some("build"),
        "Deployment Hook" => Some("deployment"),
        "Feature Flag Hook" => Some("feature_flag"),
        "Release Hook" => Some("release"),
        "Milestone Hook" => Some("milestone"),
        "Emoji Hook" => Some("emoji"),
        "Resource Access Token Hook" => Some("access_token"),
        "Vulnerability Hook" => Some("vulnerability"),
        _ => None,
    };
    match known {
        Some(name) => name.to_owned(),
        None => {
            let trimmed = hook.strip_suffix(" Hook").unwrap_or(hook).trim();
            trimmed
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join("_")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_for_hook;

    #[test]
    fn hooks_map_to_object_kinds() {
        for (hook, kind) in [
            ("Push Hook", "push"),
            ("Tag Push Hook", "tag_push"),
            ("Note Hook", "note"),
            ("Build Hook", "build"),
            ("Wiki Page Hook", "wiki_page"),
            ("System Hook", "system"),
            ("Member Hook", "member"),
            ("Weird", "weird"),
        ] {
            assert_eq!(event_for_hook(hook), kind, "{hook}");
        }
    }
}

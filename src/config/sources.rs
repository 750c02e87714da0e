//! Building a source from its raw entry: its path, bearer or basic authentication, and the
//! kind's own secret and headers.

use super::raw;
use crate::source::{Auth, Source, SourceKind, auth::BasicAuth};
use crate::yaml::{Checker, Path};

pub(super) fn build_source(
    name: &str,
    raw: &raw::RawSource,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<Source> {
    let errors_before = checker.diagnostics.len();
    let path = match &raw.path {
        Some(path) => checker.expand(&at.key("path"), path),
        None => Some(format!("/hooks/{name}")),
    };
    if let Some(path) = &path
        && (!path.starts_with('/') || path.contains(char::is_whitespace))
    {
        checker.error(
            &at.key("path"),
            format!("sources.{name}.path: `{path}` must start with `/` and contain no spaces"),
        );
    }

    let mut auth = Auth::default();
    if let Some(raw_auth) = &raw.auth {
        let auth_at = at.key("auth");
        auth.bearer = checker.secret(
            &auth_at,
            "bearer",
            raw_auth.bearer.as_deref(),
            raw_auth.bearer_file.as_deref(),
        );
        if let Some(basic) = &raw_auth.basic {
            let basic_at = auth_at.key("basic");
            let username = checker.expand(&basic_at.key("username"), &basic.username);
            let password = checker.secret(
                &basic_at,
                "password",
                basic.password.as_deref(),
                basic.password_file.as_deref(),
            );
            match (username, password) {
                (Some(username), Some(password)) if !username.is_empty() => {
                    auth.basic = Some(BasicAuth { username, password });
                }
                (Some(_), _) => checker.error(
                    &basic_at,
                    format!("sources.{name}.auth.basic: needs a non-empty username and password"),
                ),
                _ => {}
            }
        }
    }

    let secret = checker.secret(
        at,
        "secret",
        raw.secret.as_deref(),
        raw.secret_file.as_deref(),
    );
    let has_secret_key = raw.secret.is_some() || raw.secret_file.is_some();
    if has_secret_key && matches!(raw.kind, SourceKind::Alertmanager | SourceKind::Json) {
        checker.error_at_key(
            &at.key(if raw.secret.is_some() { "secret" } else { "secret_file" }),
            format!(
                "sources.{name}: {} senders do not sign requests; use `auth: {{ bearer: ... }}` or `auth: {{ basic: ... }}`",
                raw.kind
            ),
        );
    }
    if raw.dedup.is_some() && raw.kind != SourceKind::Json {
        checker.error_at_key(
            &at.key("dedup"),
            format!(
                "sources.{name}.dedup: only json sources take a dedup template; {} events carry their own key",
                raw.kind
            ),
        );
    }
    for (key, value) in [
        ("signature_header", &raw.signature_header),
        ("timestamp_header", &raw.timestamp_header),
    ] {
        if value.is_some() && raw.kind != SourceKind::Grafana {
            checker.error_at_key(
                &at.key(key),
                format!("sources.{name}.{key}: only grafana sources have this setting"),
            );
        }
    }
    let signature_header = raw
        .signature_header
        .as_deref()
        .and_then(|h| checker.expand(&at.key("signature_header"), h));
    let timestamp_header = raw
        .timestamp_header
        .as_deref()
        .and_then(|h| checker.expand(&at.key("timestamp_header"), h));
    for (key, header) in [
        ("signature_header", &signature_header),
        ("timestamp_header", &timestamp_header),
    ] {
        if let Some(header) = header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            checker.error(
                &at.key(key),
                format!("sources.{name}.{key}: `{header}` is not a valid header name"),
            );
        }
    }

    if auth.bearer.is_none() && auth.basic.is_none() && secret.is_none() {
        checker.warnings.push(format!(
            "source `{name}` accepts unauthenticated requests: set `auth` (or, for github/gitlab/grafana, `secret`) before exposing it"
        ));
    }

    if checker.diagnostics.len() > errors_before {
        return None;
    }
    Some(Source {
        name: name.to_owned(),
        kind: raw.kind,
        path: path?,
        auth,
        secret,
        signature_header,
        timestamp_header,
    })
}

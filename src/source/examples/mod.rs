//! Built-in example requests, one set per source kind, for `dingrelay check` and `render`.
//!
//! Invariants: the examples are synthetic (written for dingrelay, no third-party data), use
//! the field shapes real senders send, and each one parses with [`Source::parse`](super::Source::parse)
//! for its kind (tested).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::kind::SourceKind;

/// One example request: what a sender of the kind would post.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// A short name, unique within its kind (`firing`, `push`, `pull_request.merged`, ...).
    pub name: &'static str,
    /// The request headers the sender would set (content type, event headers, delivery ids).
    pub headers: &'static [(&'static str, &'static str)],
    /// The request body, a JSON object.
    pub body: &'static str,
}

impl Example {
    /// The headers as a [`HeaderMap`], ready for an [`Inbound`](super::Inbound).
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.headers {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                map.append(name, HeaderValue::from_static(value));
            }
        }
        map
    }
}

/// The built-in examples for a kind, most common first.
pub fn for_kind(kind: SourceKind) -> &'static [Example] {
    match kind {
        SourceKind::Alertmanager => ALERTMANAGER,
        SourceKind::Grafana => GRAFANA,
        SourceKind::Github => GITHUB,
        SourceKind::Gitlab => GITLAB,
        SourceKind::Json => JSON,
    }
}

const JSON_CONTENT: (&str, &str) = ("Content-Type", "application/json");

const ALERTMANAGER_HEADERS: &[(&str, &str)] =
    &[JSON_CONTENT, ("User-Agent", "Alertmanager/0.28.1")];

static ALERTMANAGER: &[Example] = &[
    Example {
        name: "firing",
        headers: ALERTMANAGER_HEADERS,
        body: include_str!("alertmanager-firing.json"),
    },
    Example {
        name: "resolved",
        headers: ALERTMANAGER_HEADERS,
        body: include_str!("alertmanager-resolved.json"),
    },
];

const GRAFANA_HEADERS: &[(&str, &str)] = &[JSON_CONTENT, ("User-Agent", "Grafana")];

static GRAFANA: &[Example] = &[
    Example {
        name: "firing",
        headers: GRAFANA_HEADERS,
        body: include_str!("grafana-firing.json"),
    },
    Example {
        name: "resolved",
        headers: GRAFANA_HEADERS,
        body: include_str!("grafana-resolved.json"),
    },
];

/// Headers of one GitHub delivery.
macro_rules! github_headers {
    ($event:literal, $delivery:literal) => {
        &[
            JSON_CONTENT,
            ("User-Agent", "GitHub-Hookshot/8b2f1e4"),
            ("X-GitHub-Event", $event),
            ("X-GitHub-Delivery", $delivery),
            ("X-GitHub-Hook-ID", "498765432"),
            ("X-GitHub-Hook-Installation-Target-Type", "repository"),
            ("X-GitHub-Hook-Installation-Target-ID", "712345678"),
        ]
    };
}

static GITHUB: &[Example] = &[
    Example {
        name: "ping",
        headers: github_headers!("ping", "0b7e6a10-00a1-11f0-8e2c-4a1c9d3e5f01"),
        body: include_str!("github-ping.json"),
    },
    Example {
        name: "push",
        headers: github_headers!("push", "4c2d9e80-00a9-11f0-9a31-6b2e0f4d7a12"),
        body: include_str!("github-push.json"),
    },
    Example {
        name: "pull_request.opened",
        headers: github_headers!("pull_request", "7f1a3c20-00aa-11f0-8d47-2c9b5e1f3a23"),
        body: include_str!("github-pull_request-opened.json"),
    },
    Example {
        name: "pull_request.merged",
        headers: github_headers!("pull_request", "a8e4b6d0-00b4-11f0-95f3-1d7c3a9e2b34"),
        body: include_str!("github-pull_request-merged.json"),
    },
    Example {
        name: "issues.opened",
        headers: github_headers!("issues", "c3d5f7a0-00b9-11f0-8b66-5e2a4c6d8f45"),
        body: include_str!("github-issues-opened.json"),
    },
    Example {
        name: "release.published",
        headers: github_headers!("release", "e9b1d3f0-00bc-11f0-97a8-3f5b7d9e1c56"),
        body: include_str!("github-release-published.json"),
    },
    Example {
        name: "workflow_run.failure",
        headers: github_headers!("workflow_run", "1a3c5e70-00c2-11f0-8c19-7d9f1b3e5a67"),
        body: include_str!("github-workflow_run-failure.json"),
    },
    Example {
        name: "workflow_job.failure",
        headers: github_headers!("workflow_job", "2b4d6f80-00c3-11f0-8d2a-8e0a2c4f6b78"),
        body: include_str!("github-workflow_job-failure.json"),
    },
    Example {
        name: "issue_comment.created",
        headers: github_headers!("issue_comment", "3c5e7091-00c4-11f0-9e3b-9f1b3d5a7c89"),
        body: include_str!("github-issue_comment-created.json"),
    },
    Example {
        name: "create.tag",
        headers: github_headers!("create", "4d6f81a2-00c5-11f0-8f4c-a02c4e6b8d9a"),
        body: include_str!("github-create-tag.json"),
    },
];

/// Headers of one GitLab delivery.
macro_rules! gitlab_headers {
    ($hook:literal, $uuid:literal) => {
        &[
            JSON_CONTENT,
            ("User-Agent", "GitLab/17.9.2"),
            ("X-Gitlab-Event", $hook),
            ("X-Gitlab-Instance", "https://gitlab.example.com"),
            ("X-Gitlab-Webhook-UUID", $uuid),
            (
                "X-Gitlab-Event-UUID",
                "5b9f0c2e-7d41-4a86-b3e5-0f1d2c3b4a59",
            ),
            ("Idempotency-Key", $uuid),
        ]
    };
}

static GITLAB: &[Example] = &[
    Example {
        name: "push",
        headers: gitlab_headers!("Push Hook", "0e6f2a4c-91b3-4d57-8e0a-2c4e6a8b0d13"),
        body: include_str!("gitlab-push.json"),
    },
    Example {
        name: "merge_request",
        headers: gitlab_headers!("Merge Request Hook", "2a8c4e6f-03d5-4f79-a0b2-4e6a8c0d2f35"),
        body: include_str!("gitlab-merge_request.json"),
    },
    Example {
        name: "pipeline.failed",
        headers: gitlab_headers!("Pipeline Hook", "4c0e6a8b-25f7-4b91-82d4-6a8c0e2f4b57"),
        body: include_str!("gitlab-pipeline-failed.json"),
    },
    Example {
        name: "issue",
        headers: gitlab_headers!("Issue Hook", "6e2a8c0d-47b9-4d13-a4f6-8c0e2a4b6d79"),
        body: include_str!("gitlab-issue.json"),
    },
    Example {
        name: "tag_push",
        headers: gitlab_headers!("Tag Push Hook", "8a4c0e2f-69db-4f35-86b8-0e2a4c6d8f91"),
        body: include_str!("gitlab-tag_push.json"),
    },
    Example {
        name: "note",
        headers: gitlab_headers!("Note Hook", "9b5d1f3a-7aec-4a46-97c9-1f3b5d7e9a02"),
        body: include_str!("gitlab-note.json"),
    },
    Example {
        name: "build.failed",
        headers: gitlab_headers!("Job Hook", "ac6e2a4b-8bfd-4b57-a8da-2a4c6e8f0b13"),
        body: include_str!("gitlab-build-failed.json"),
    },
    Example {
        name: "deployment.failed",
        headers: gitlab_headers!("Deployment Hook", "bd7f3b5c-9c0e-4c68-b9eb-3b5d7f9a1c24"),
        body: include_str!("gitlab-deployment-failed.json"),
    },
    Example {
        name: "release",
        headers: gitlab_headers!("Release Hook", "ce804c6d-ad1f-4d79-8afc-4c6e8a0b2d35"),
        body: include_str!("gitlab-release.json"),
    },
];

static JSON: &[Example] = &[Example {
    name: "generic",
    headers: &[JSON_CONTENT, ("User-Agent", "backup-runner/2.3")],
    body: include_str!("json-generic.json"),
}];

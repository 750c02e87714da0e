//! Message templates: named messages a rule uses with `template: <name>` and overrides field by
//! field.
//!
//! Built-in templates are the YAML files of `src/rules/templates/`, embedded in the binary. A
//! team's own live in a `templates/` directory next to `rules.yaml` (`<name>.yaml`); a team template
//! with a built-in's name replaces it. A template file holds exactly one message (`text`, `link`,
//! `markdown`, `action_card` or `feed_card`, with the same keys as in a rule), optionally `at`, and a
//! one-line `description`.
//!
//! Merging: a field the rule sets wins over the template's; a list (`buttons`, `links`) is
//! replaced as a whole; a rule's `at` replaces the template's. A rule may only override the
//! template's message type: giving another type is an error.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use super::raw::{
    RawActionCard, RawAt, RawFeedCard, RawLink, RawMarkdown, RawRule, RawTemplate, RawText,
};
use crate::yaml::diagnostic::{self, Diagnostic};
use crate::yaml::locate;

include!(concat!(env!("OUT_DIR"), "/builtin_templates.rs"));

/// The templates available to a config: built-ins, then the team's, by name.
#[derive(Debug, Default)]
pub struct Templates {
    by_name: BTreeMap<String, Template>,
}

/// A loaded template.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// `built-in` or the file it came from.
    pub origin: String,
    pub raw: RawTemplate,
}

/// A rule's message once its template is applied: what the rule compiler compiles.
#[derive(Debug, Clone, Default)]
pub struct RawMessage {
    pub text: Option<RawText>,
    pub link: Option<RawLink>,
    pub markdown: Option<RawMarkdown>,
    pub action_card: Option<RawActionCard>,
    pub feed_card: Option<RawFeedCard>,
    pub at: Option<RawAt>,
}

impl RawMessage {
    /// The message types given, by their rules.yaml keys.
    pub fn types(&self) -> Vec<&'static str> {
        [
            self.text.as_ref().map(|_| "text"),
            self.link.as_ref().map(|_| "link"),
            self.markdown.as_ref().map(|_| "markdown"),
            self.action_card.as_ref().map(|_| "action_card"),
            self.feed_card.as_ref().map(|_| "feed_card"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn of_rule(rule: &RawRule) -> RawMessage {
        RawMessage {
            text: rule.text.clone(),
            link: rule.link.clone(),
            markdown: rule.markdown.clone(),
            action_card: rule.action_card.clone(),
            feed_card: rule.feed_card.clone(),
            at: rule.at.clone(),
        }
    }

    fn of_template(template: &RawTemplate) -> RawMessage {
        RawMessage {
            text: template.text.clone(),
            link: template.link.clone(),
            markdown: template.markdown.clone(),
            action_card: template.action_card.clone(),
            feed_card: template.feed_card.clone(),
            at: template.at.clone(),
        }
    }
}

impl Templates {
    /// The built-ins, then `<base_dir>/templates/*.yaml`. Errors in a template file are returned
    /// rendered (`templates/x.yaml:3:5: ...` with the line), the others still load.
    pub fn load(base_dir: &FsPath) -> (Templates, Vec<String>) {
        let mut templates = Templates::default();
        let mut errors = Vec::new();
        for (name, text) in BUILTIN {
            match parse(&format!("built-in template {name}.yaml"), text) {
                Ok(raw) => templates.insert(name, "built-in", raw),
                Err(error) => errors.push(error),
            }
        }
        let dir = base_dir.join("templates");
        let Ok(read) = std::fs::read_dir(&dir) else {
            return (templates, errors);
        };
        let mut files: Vec<_> = read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let shown = format!(
                "templates/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse(&shown, &text) {
                    Ok(raw) => templates.insert(name, &shown, raw),
                    Err(error) => errors.push(error),
                },
                Err(error) => errors.push(format!("{shown}: cannot read: {error}")),
            }
        }
        (templates, errors)
    }

    fn insert(&mut self, name: &str, origin: &str, raw: RawTemplate) {
        self.by_name.insert(
            name.to_owned(),
            Template {
                name: name.to_owned(),
                origin: origin.to_owned(),
                raw,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&Template> {
        self.by_name.get(name)
    }

    /// Every template, by name.
    pub fn all(&self) -> impl Iterator<Item = &Template> {
        self.by_name.values()
    }

    /// The names, for "unknown template" errors.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The rule's message: its own, or its template's with the rule's fields laid over it.
    pub fn message_of(&self, rule: &RawRule) -> Result<RawMessage, String> {
        let own = RawMessage::of_rule(rule);
        let Some(name) = &rule.template else {
            return Ok(own);
        };
        let template = self.get(name).ok_or_else(|| {
            format!(
                "unknown template `{name}` (templates: {})",
                self.names().join(", ")
            )
        })?;
        let base = RawMessage::of_template(&template.raw);
        let (own_types, base_types) = (own.types(), base.types());
        if let Some(other) = own_types.iter().find(|t| !base_types.contains(t)) {
            return Err(format!(
                "template `{name}` sends {}; the rule can override its fields but not send `{other}`",
                base_types.join(", ")
            ));
        }
        Ok(RawMessage {
            text: merge(own.text, base.text, |o, b| RawText {
                content: o.content.or(b.content),
            }),
            link: merge(own.link, base.link, |o, b| RawLink {
                title: o.title.or(b.title),
                text: o.text.or(b.text),
                message_url: o.message_url.or(b.message_url),
                pic_url: o.pic_url.or(b.pic_url),
            }),
            markdown: merge(own.markdown, base.markdown, |o, b| RawMarkdown {
                title: o.title.or(b.title),
                text: o.text.or(b.text),
            }),
            action_card: merge(own.action_card, base.action_card, |o, b| {
                // The button(s) are one choice: the rule's, if it makes one.
                let own_action =
                    o.single_title.is_some() || o.single_url.is_some() || !o.buttons.is_empty();
                let (single_title, single_url, buttons) = if own_action {
                    (o.single_title, o.single_url, o.buttons)
                } else {
                    (b.single_title, b.single_url, b.buttons)
                };
                RawActionCard {
                    title: o.title.or(b.title),
                    text: o.text.or(b.text),
                    single_title,
                    single_url,
                    buttons,
                    button_orientation: o.button_orientation.or(b.button_orientation),
                    hide_avatar: o.hide_avatar.or(b.hide_avatar),
                }
            }),
            feed_card: merge(own.feed_card, base.feed_card, |o, b| RawFeedCard {
                links: if o.links.is_empty() { b.links } else { o.links },
                each: o.each.or(b.each),
                link: o.link.or(b.link),
                max_links: o.max_links.or(b.max_links),
            }),
            at: own.at.or(base.at),
        })
    }
}

fn merge<T>(own: Option<T>, base: Option<T>, both: impl FnOnce(T, T) -> T) -> Option<T> {
    match (own, base) {
        (Some(own), Some(base)) => Some(both(own, base)),
        (own, base) => own.or(base),
    }
}

/// Parses a template file; an error is rendered with its place in the file.
fn parse(file_name: &str, text: &str) -> Result<RawTemplate, String> {
    let fail = |diagnostics: Vec<Diagnostic>| diagnostic::render(file_name, text, &diagnostics);
    let raw: RawTemplate = serde_yaml::from_str(text)
        .map_err(|error| fail(vec![crate::yaml::serde_diagnostic(&error)]))?;
    let types = RawMessage::of_template(&raw).types();
    if types.len() != 1 {
        return Err(fail(vec![Diagnostic::at(
            locate::Location::START,
            format!(
                "a template holds exactly one message (`text`, `link`, `markdown`, `action_card` or `feed_card`), found {}",
                if types.is_empty() {
                    "none".to_owned()
                } else {
                    types.join(", ")
                }
            ),
        )]));
    }
    Ok(raw)
}

/// The built-in template made for an event of a source kind: what a rule for that event should
/// name in `template:`. Families share one template (`github-comment` for every kind of comment,
/// `github-security` for advisories and alerts, ...); events without one of their own get the
/// generic `github-event` / `gitlab-event`. `None` for json sources, which have no built-in.
pub fn builtin_for(kind: crate::source::SourceKind, event: &str) -> Option<&'static str> {
    use crate::source::SourceKind;
    Some(match kind {
        SourceKind::Alertmanager => "alertmanager",
        SourceKind::Grafana => "grafana",
        SourceKind::Json => return None,
        SourceKind::Github => match event {
            "push" => "github-push",
            "pull_request" => "github-pull-request",
            "pull_request_review" => "github-pull-request-review",
            "issues" => "github-issues",
            "issue_comment" => "github-issue-comment",
            "commit_comment" | "discussion_comment" | "pull_request_review_comment" => {
                "github-comment"
            }
            "discussion" => "github-discussion",
            "create" | "delete" => "github-ref",
            "release" => "github-release",
            "workflow_run" => "github-workflow-run",
            "workflow_job" | "check_run" | "status" => "github-job",
            "check_suite" => "github-check-suite",
            "deployment"
            | "deployment_status"
            | "deployment_review"
            | "deployment_protection_rule" => "github-deployment",
            "security_advisory"
            | "repository_advisory"
            | "dependabot_alert"
            | "code_scanning_alert"
            | "secret_scanning_alert"
            | "secret_scanning_alert_location"
            | "secret_scanning_scan"
            | "repository_vulnerability_alert" => "github-security",
            "star" => "github-star",
            _ => "github-event",
        },
        SourceKind::Gitlab => match event {
            "push" => "gitlab-push",
            "tag_push" => "gitlab-tag-push",
            "merge_request" => "gitlab-merge-request",
            "pipeline" => "gitlab-pipeline",
            "build" => "gitlab-job",
            "deployment" => "gitlab-deployment",
            "release" => "gitlab-release",
            "issue" => "gitlab-issue",
            "note" => "gitlab-note",
            _ => "gitlab-event",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> RawRule {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn templates(entries: &[(&str, &str)]) -> Templates {
        let mut templates = Templates::default();
        for (name, yaml) in entries {
            templates.insert(name, "test", parse(name, yaml).unwrap());
        }
        templates
    }

    #[test]
    fn fields_of_the_rule_win_field_by_field() {
        let t = templates(&[(
            "t",
            "markdown: { title: T, text: X }\nat: { mobiles: ['1'] }",
        )]);
        let merged = t
            .message_of(&rule(
                "{ name: r, source: s, to: o, template: t, markdown: { title: Mine } }",
            ))
            .unwrap();
        let markdown = merged.markdown.unwrap();
        assert_eq!(markdown.title.as_deref(), Some("Mine"));
        assert_eq!(markdown.text.as_deref(), Some("X"));
        assert_eq!(merged.at.unwrap().mobiles, ["1"]);
    }

    #[test]
    fn buttons_are_one_choice() {
        let t = templates(&[(
            "t",
            "action_card: { title: T, text: X, buttons: [{ title: a, url: u }] }",
        )]);
        let merged = t
            .message_of(&rule(
                "{ name: r, source: s, to: o, template: t, action_card: { single_title: Go, single_url: v } }",
            ))
            .unwrap()
            .action_card
            .unwrap();
        assert!(merged.buttons.is_empty());
        assert_eq!(merged.single_title.as_deref(), Some("Go"));
        assert_eq!(merged.title.as_deref(), Some("T"));
    }

    #[test]
    fn another_message_type_or_an_unknown_name_is_an_error() {
        let t = templates(&[("t", "markdown: { title: T, text: X }")]);
        let error = t
            .message_of(&rule(
                "{ name: r, source: s, to: o, template: t, text: { content: c } }",
            ))
            .unwrap_err();
        assert!(error.contains("not send `text`"), "{error}");
        let error = t
            .message_of(&rule("{ name: r, source: s, to: o, template: nope }"))
            .unwrap_err();
        assert!(
            error.contains("unknown template `nope`") && error.contains("templates: t"),
            "{error}"
        );
    }

    #[test]
    fn a_template_file_is_checked_with_its_place() {
        let error = parse("templates/x.yaml", "markdown:\n  title: T\n  txt: X\n").unwrap_err();
        assert!(error.starts_with("templates/x.yaml:3:3: "), "{error}");
        let error = parse("templates/y.yaml", "description: nothing\n").unwrap_err();
        assert!(error.contains("exactly one message"), "{error}");
    }

    #[test]
    fn every_built_in_template_parses() {
        for (name, text) in BUILTIN {
            parse(name, text).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

//! Turning `rules:` from `rules.yaml` into compiled [`Rule`]s, once, at load.
//!
//! Every template and condition is compiled into the rule set's one minijinja environment under a
//! name that says where it came from (`rules[2].markdown.text`). Syntax errors are reported at the
//! YAML node, with the line inside the template. Unknown filters cannot be found before a template
//! runs: `dingrelay check` renders every rule against example payloads for that.

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use super::filters;
use super::model::{
    AllTemplate, AtTemplate, CardActionTemplate, EachTemplate, FeedLinkTemplate, FieldTemplate,
    MessageTemplate, Rule, RuleSet, When, template_error,
};
use super::raw::{self, BoolOrTemplate, Orientation, RawRule};
use super::templates::{RawMessage, Templates};
use crate::dingtalk::message::BtnOrientation;
use crate::dingtalk::{AppRobotKind, Robot};
use crate::links::SilenceButtons;
use crate::source::SourceKind;
use crate::yaml::{Checker, Diagnostic, Path};

/// Bounds the work one template may do, so a huge payload or a runaway loop cannot stall intake.
const TEMPLATE_FUEL: u64 = 20_000_000;

/// The template environment every rule set uses: undefined values render empty (a missing label
/// must not lose an alert), no HTML escaping (DingTalk is not HTML), bounded work, and no debug
/// dumps of payload values in errors.
pub fn environment(tz: jiff::tz::TimeZone) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_debug(false);
    filters::register(&mut env, tz);
    env
}

/// `silence_button(labels, hours=2)`: the URL of a button that opens the console's Silence page for
/// alerts with exactly these labels (`commonLabels`, an alert's `labels`), signed and expiring;
/// `""` when the console has no Silence buttons configured, so a template can test it.
fn add_silence_button(env: &mut Environment<'static>, buttons: Option<SilenceButtons>) {
    env.add_function(
        "silence_button",
        move |labels: minijinja::Value, hours: Option<f64>| -> Result<String, minijinja::Error> {
            let Some(buttons) = &buttons else {
                return Ok(String::new());
            };
            let mut map = std::collections::BTreeMap::new();
            for key in labels.try_iter()? {
                let value = labels.get_item(&key)?;
                if !value.is_undefined() && !value.is_none() {
                    map.insert(key.to_string(), value.to_string());
                }
            }
            if map.is_empty() {
                return Ok(String::new());
            }
            let seconds = (hours.unwrap_or(2.0) * 3600.0).clamp(60.0, 30.0 * 86400.0) as u64;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            Ok(buttons.url(map, seconds, now_ms))
        },
    );
}

/// What compiling rules needs to know of a source declared in the config.
pub struct DeclaredSource {
    pub kind: SourceKind,
    /// A json source's `dedup` template, as written (expanded when compiled).
    pub dedup: Option<String>,
}

impl RuleSet {
    /// Compiles the rules. `robot_names` are all robots declared (valid or not, so an invalid
    /// robot is not also reported as unknown); `robots` the valid ones.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile(
        raw_rules: &[RawRule],
        robot_names: &[String],
        robots: &IndexMap<String, Arc<Robot>>,
        sources: &IndexMap<String, DeclaredSource>,
        templates: &Templates,
        tz: jiff::tz::TimeZone,
        buttons: Option<SilenceButtons>,
        at: &Path,
        checker: &mut Checker<'_>,
    ) -> Option<RuleSet> {
        let errors_before = checker.diagnostics.len();
        let mut env = environment(tz);
        add_silence_button(&mut env, buttons);
        let mut rules = Vec::new();
        let mut names: IndexMap<&str, usize> = IndexMap::new();
        for (i, raw) in raw_rules.iter().enumerate() {
            let rule_at = at.index(i);
            if let Some(first) = names.insert(raw.name.as_str(), i) {
                checker.error(
                    &rule_at.key("name"),
                    format!(
                        "rules[{i}]: rule name `{}` is already used by rules[{first}]",
                        raw.name
                    ),
                );
            }
            let mut compiler = RuleCompiler {
                env: &mut env,
                checker,
                rule_at: rule_at.clone(),
                index: i,
                name: &raw.name,
                template_name: None,
            };
            if let Some(rule) = compiler.rule(raw, robot_names, robots, sources, templates) {
                rules.push(rule);
            }
        }
        if raw_rules.is_empty() {
            checker.error(at, "no rules: add at least one under `rules:`");
        }
        let mut dedup = std::collections::HashMap::new();
        for (name, source) in sources {
            let Some(template) = source.dedup.as_deref() else {
                continue;
            };
            let path = Path::root().key("sources").key(name.as_str()).key("dedup");
            let Some(text) = checker.expand(&path, template) else {
                continue;
            };
            let id = format!("sources.{name}.dedup");
            match env.add_template_owned(id.clone(), text) {
                Ok(()) => {
                    dedup.insert(
                        name.clone(),
                        FieldTemplate {
                            id,
                            name: "dedup".to_owned(),
                            location: checker.locations.value(&path),
                            block: false,
                        },
                    );
                }
                Err(error) => {
                    let message = format!("sources.{name}: {}", template_error("dedup", &error));
                    checker.error(&path, message);
                }
            }
        }
        let mut recipients = std::collections::HashMap::new();
        for (name, robot) in robots {
            let Some(app) = robot.endpoint.app() else {
                continue;
            };
            let mut fields = Vec::new();
            for (i, text) in app.kind.user_templates().iter().enumerate() {
                let path = Path::root()
                    .key("robots")
                    .key(name.as_str())
                    .key("users")
                    .index(i);
                let id = format!("robots.{name}.users[{i}]");
                match env.add_template_owned(id.clone(), text.clone()) {
                    Ok(()) => fields.push(FieldTemplate {
                        id,
                        name: format!("users[{i}]"),
                        location: checker.locations.value(&path),
                        block: false,
                    }),
                    Err(error) => {
                        let message = format!("robots.{name}: {}", template_error("users", &error));
                        checker.error(&path, message);
                    }
                }
            }
            if !fields.is_empty() {
                recipients.insert(name.clone(), fields);
            }
        }
        (checker.diagnostics.len() == errors_before).then_some(RuleSet {
            env,
            rules,
            dedup,
            recipients,
        })
    }
}

struct RuleCompiler<'a, 'c> {
    env: &'a mut Environment<'static>,
    checker: &'a mut Checker<'c>,
    rule_at: Path,
    index: usize,
    name: &'a str,
    /// The rule's template, named in "missing field" errors.
    template_name: Option<String>,
}

impl RuleCompiler<'_, '_> {
    fn error(&mut self, path: &Path, message: impl std::fmt::Display) {
        let message = format!("rule `{}`: {message}", self.name);
        self.checker.error(path, message);
    }

    fn rule(
        &mut self,
        raw: &RawRule,
        robot_names: &[String],
        robots: &IndexMap<String, Arc<Robot>>,
        sources: &IndexMap<String, DeclaredSource>,
        templates: &Templates,
    ) -> Option<Rule> {
        let errors_before = self.checker.diagnostics.len();
        let at = self.rule_at.clone();

        if raw.name.trim().is_empty() {
            self.error(&at.key("name"), "the name is empty");
        } else if raw.name.chars().any(char::is_control) {
            self.error(&at.key("name"), "the name has control characters");
        }
        if raw.per_alert
            && let Some(source) = sources.get(&raw.source)
            && !source.kind.has_alerts()
        {
            self.error(
                &at.key("per_alert"),
                format!(
                    "`per_alert` splits alert groups; {} events carry no alerts",
                    source.kind
                ),
            );
        }
        if !sources.contains_key(&raw.source) {
            let known: Vec<&str> = sources.keys().map(String::as_str).collect();
            self.error(
                &at.key("source"),
                format!(
                    "unknown source `{}` (sources: {})",
                    raw.source,
                    known.join(", ")
                ),
            );
        }

        let mut rule_robots = Vec::new();
        let targets = raw.to.as_slice();
        if targets.is_empty() {
            self.error(&at.key("to"), "`to` names no robot");
        }
        for (i, target) in targets.iter().enumerate() {
            let path = match &raw.to {
                raw::OneOrMany::One(_) => at.key("to"),
                raw::OneOrMany::Many(_) => at.key("to").index(i),
            };
            match robots.get(target) {
                Some(robot) => rule_robots.push(robot.clone()),
                None if robot_names.contains(target) => {} // reported where the robot is
                None => self.error(
                    &path,
                    format!(
                        "unknown robot `{target}` (robots: {})",
                        robot_names.join(", ")
                    ),
                ),
            }
        }

        let when = raw.when.as_deref().and_then(|expr| self.when(expr));
        let spec = match templates.message_of(raw) {
            Ok(spec) => Some(spec),
            Err(error) => {
                self.error(&at.key("template"), error);
                None
            }
        };
        self.template_name = raw.template.clone();
        let message = spec.as_ref().and_then(|spec| self.message(spec));
        let at_template = spec
            .as_ref()
            .and_then(|spec| spec.at.as_ref())
            .map(|a| self.at(a))
            .unwrap_or_default();

        if let Some(message) = &message {
            self.app_robots_can_send(raw, message, &at_template, &rule_robots);
        }

        if self.checker.diagnostics.len() > errors_before {
            return None;
        }
        Some(Rule {
            name: raw.name.clone(),
            source: raw.source.clone(),
            when,
            robots: rule_robots,
            stop: raw.stop,
            per_alert: raw.per_alert,
            message: message?,
            at: at_template,
            location: self.checker.locations.value(&at),
        })
    }

    /// Reports, at the rule's `to`, what a robot of an app cannot express of the rule's message:
    /// an error for what it could never send (a feedCard, more than 5 buttons, side-by-side
    /// buttons other than 2), a warning for mentions, which it shows as plain text.
    fn app_robots_can_send(
        &mut self,
        raw: &RawRule,
        message: &MessageTemplate,
        at: &AtTemplate,
        robots: &[Arc<Robot>],
    ) {
        for robot in robots {
            let Some(app) = robot.endpoint.app() else {
                continue;
            };
            let work_notice = matches!(app.kind, AppRobotKind::WorkNotice { .. });
            let cannot = match message {
                MessageTemplate::FeedCard { .. } => Some(
                    "a feedCard (DingTalk's app APIs have none): send it a link or markdown message through another rule"
                        .to_owned(),
                ),
                MessageTemplate::ActionCard {
                    action: CardActionTemplate::Buttons(buttons),
                    orientation,
                    ..
                } if !work_notice => {
                    let horizontal = *orientation == Some(BtnOrientation::Horizontal);
                    if buttons.len() > 5 {
                        Some(format!(
                            "an action card with {} buttons (app robots take at most 5)",
                            buttons.len()
                        ))
                    } else if horizontal && buttons.len() > 2 {
                        Some(format!(
                            "{} buttons side by side (app robots lay out 2 side by side, or up to 5 one under another)",
                            buttons.len()
                        ))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            let path = self.robot_path(raw, &robot.name);
            if let Some(what) = cannot {
                self.error(
                    &path,
                    format!(
                        "robot `{}` sends through {}, which cannot express {what}",
                        robot.name,
                        app.kind.describe()
                    ),
                );
            }
            let mentions = !at.mobiles.is_empty()
                || !at.user_ids.is_empty()
                || !matches!(at.all, AllTemplate::No);
            if mentions {
                self.checker.warnings.push(format!(
                    "rule `{}`: robot `{}` sends through {}, which cannot @ anyone: its messages leave the mentions out",
                    self.name,
                    robot.name,
                    app.kind.describe()
                ));
            }
        }
    }

    /// Where the rule names `robot` in its `to`.
    fn robot_path(&self, raw: &RawRule, robot: &str) -> Path {
        let at = self.rule_at.key("to");
        match &raw.to {
            raw::OneOrMany::One(_) => at,
            raw::OneOrMany::Many(targets) => targets
                .iter()
                .position(|t| t == robot)
                .map_or(at.clone(), |i| at.index(i)),
        }
    }

    /// Compiles one template field at `path` (relative to the rule, e.g. `markdown.text`).
    fn template(&mut self, rel: &[&str], source: &str, field: &str) -> Option<FieldTemplate> {
        let path = rel
            .iter()
            .fold(self.rule_at.clone(), |p, seg| match seg.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(*seg),
            });
        self.template_at(&path, source, field, None)
    }

    /// A field DingTalk requires: compiled, or an error saying neither the rule nor its
    /// template sets it.
    fn required(
        &mut self,
        rel: &[&str],
        source: &Option<String>,
        field: &str,
    ) -> Option<FieldTemplate> {
        match source {
            Some(source) => self.template(rel, source, field),
            None => {
                let at = self.rule_at.key(rel[0]);
                let whose = match &self.template_name {
                    Some(t) => format!("neither the rule nor template `{t}` sets it"),
                    None => "the rule does not set it".to_owned(),
                };
                let message = format!("rule `{}`: {field} is missing: {whose}", self.name);
                self.checker.error_at_key(&at, message);
                None
            }
        }
    }

    fn template_at(
        &mut self,
        path: &Path,
        source: &str,
        field: &str,
        wrap: Option<(&str, &str)>,
    ) -> Option<FieldTemplate> {
        let expanded = self.checker.expand(path, source)?;
        let id = format!("rules[{}].{field}", self.index);
        let location = self.checker.locations.value(path);
        let block = match (self.checker.locations.key(path), location) {
            (Some(key), Some(value)) => value.line > key.line,
            _ => false,
        };
        let text = match wrap {
            Some((before, after)) => format!("{before}{expanded}{after}"),
            None => expanded,
        };
        let field = FieldTemplate {
            id: id.clone(),
            name: field.to_owned(),
            location,
            block,
        };
        match self.env.add_template_owned(id, text) {
            Ok(()) => Some(field),
            Err(error) => {
                let message = format!(
                    "rule `{}`: {}",
                    self.name,
                    template_error(&field.name, &error)
                );
                let location = field
                    .location_of_line(error.line())
                    .unwrap_or_else(|| self.checker.locations.nearest(path));
                self.checker
                    .diagnostics
                    .push(Diagnostic::at(location, message));
                None
            }
        }
    }

    /// Compiles an expression (`when`, `each`) into a template that renders it.
    fn expression(
        &mut self,
        path: &Path,
        expr: &str,
        field: &str,
        wrap: (&str, &str),
    ) -> Option<FieldTemplate> {
        let expanded = self.checker.expand(path, expr)?;
        // `when: '{{ event == "push" }}'`: a template where an expression goes.
        let trimmed = expanded.trim();
        if let Some(inner) = trimmed
            .strip_prefix("{{")
            .and_then(|rest| rest.strip_suffix("}}"))
        {
            let inner = inner.trim();
            let message = format!(
                "{field} takes a bare expression, without `{{{{ }}}}`: write `{field}: {inner}` (quoted if it starts with a quote or holds `: `)"
            );
            self.error(path, message);
            return None;
        }
        // Compile the bare expression first: its errors point into what the user wrote.
        if let Err(error) = self.env.compile_expression(&expanded) {
            let message = template_error(field, &error);
            self.error(path, message);
            return None;
        }
        let id = format!("rules[{}].{field}", self.index);
        match self
            .env
            .add_template_owned(id.clone(), format!("{}{expanded}{}", wrap.0, wrap.1))
        {
            Ok(()) => Some(FieldTemplate {
                id,
                name: field.to_owned(),
                location: self.checker.locations.value(path),
                block: false,
            }),
            Err(error) => {
                let message = template_error(field, &error);
                self.error(path, message);
                None
            }
        }
    }

    fn when(&mut self, expr: &str) -> Option<When> {
        let path = self.rule_at.key("when");
        let template = self.expression(
            &path,
            expr,
            "when",
            ("{% if (", ") %}true{% else %}false{% endif %}"),
        )?;
        Some(When {
            text: expr.to_owned(),
            template,
        })
    }

    fn message(&mut self, spec: &RawMessage) -> Option<MessageTemplate> {
        let given = spec.types();
        if given.len() != 1 {
            let at = self.rule_at.clone();
            let problem = if given.is_empty() {
                "has no message: give one of `text`, `link`, `markdown`, `action_card`, `feed_card`, or a `template`".to_owned()
            } else {
                format!(
                    "has {} messages ({}): a rule sends one message type",
                    given.len(),
                    given.join(", ")
                )
            };
            self.error(&at.key("name"), problem);
            return None;
        }

        if let Some(text) = &spec.text {
            return Some(MessageTemplate::Text {
                content: self.required(&["text", "content"], &text.content, "text.content")?,
            });
        }
        if let Some(link) = &spec.link {
            let title = self.required(&["link", "title"], &link.title, "link.title");
            let text = self.required(&["link", "text"], &link.text, "link.text");
            let message_url = self.required(
                &["link", "message_url"],
                &link.message_url,
                "link.message_url",
            );
            let pic_url = match &link.pic_url {
                Some(pic) => Some(self.template(&["link", "pic_url"], pic, "link.pic_url")?),
                None => None,
            };
            return Some(MessageTemplate::Link {
                title: title?,
                text: text?,
                message_url: message_url?,
                pic_url,
            });
        }
        if let Some(markdown) = &spec.markdown {
            let title = self.required(&["markdown", "title"], &markdown.title, "markdown.title");
            let text = self.required(&["markdown", "text"], &markdown.text, "markdown.text");
            return Some(MessageTemplate::Markdown {
                title: title?,
                text: text?,
            });
        }
        if let Some(card) = &spec.action_card {
            return self.action_card(card);
        }
        if let Some(feed) = &spec.feed_card {
            return self.feed_card(feed);
        }
        None
    }

    fn action_card(&mut self, card: &raw::RawActionCard) -> Option<MessageTemplate> {
        let title = self.required(&["action_card", "title"], &card.title, "action_card.title");
        let text = self.required(&["action_card", "text"], &card.text, "action_card.text");
        let at = self.rule_at.key("action_card");
        let action = match (
            &card.single_title,
            &card.single_url,
            card.buttons.is_empty(),
        ) {
            (Some(t), Some(u), true) => {
                let title = self.template(
                    &["action_card", "single_title"],
                    t,
                    "action_card.single_title",
                );
                let url =
                    self.template(&["action_card", "single_url"], u, "action_card.single_url");
                Some(CardActionTemplate::Single {
                    title: title?,
                    url: url?,
                })
            }
            (None, None, false) => {
                let mut buttons = Vec::new();
                let mut ok = true;
                for (i, button) in card.buttons.iter().enumerate() {
                    let i_s = i.to_string();
                    let title = self.template(
                        &["action_card", "buttons", &i_s, "title"],
                        &button.title,
                        &format!("action_card.buttons[{i}].title"),
                    );
                    let url = self.template(
                        &["action_card", "buttons", &i_s, "url"],
                        &button.url,
                        &format!("action_card.buttons[{i}].url"),
                    );
                    match (title, url) {
                        (Some(t), Some(u)) => buttons.push((t, u)),
                        _ => ok = false,
                    }
                }
                ok.then_some(CardActionTemplate::Buttons(buttons))
            }
            (None, None, true) => {
                self.error(
                    &at,
                    "action_card needs `single_title` and `single_url`, or `buttons`",
                );
                None
            }
            (Some(_), Some(_), false) => {
                self.error(
                    &at.key("buttons"),
                    "action_card has both a single button and `buttons`: DingTalk ignores `buttons` then, keep one form",
                );
                None
            }
            _ => {
                self.error(
                    &at,
                    "action_card: `single_title` and `single_url` go together",
                );
                None
            }
        };
        Some(MessageTemplate::ActionCard {
            title: title?,
            text: text?,
            action: action?,
            orientation: card.button_orientation.map(|o| match o {
                Orientation::Vertical => BtnOrientation::Vertical,
                Orientation::Horizontal => BtnOrientation::Horizontal,
            }),
            hide_avatar: card.hide_avatar,
        })
    }

    fn feed_link(
        &mut self,
        prefix: &[&str],
        field: &str,
        link: &raw::RawFeedLink,
    ) -> Option<FeedLinkTemplate> {
        let rel =
            |key: &'static str| -> Vec<&str> { prefix.iter().copied().chain([key]).collect() };
        let title = self.template(&rel("title"), &link.title, &format!("{field}.title"));
        let message_url = self.template(
            &rel("message_url"),
            &link.message_url,
            &format!("{field}.message_url"),
        );
        let pic_url = self.template(&rel("pic_url"), &link.pic_url, &format!("{field}.pic_url"));
        Some(FeedLinkTemplate {
            title: title?,
            message_url: message_url?,
            pic_url: pic_url?,
        })
    }

    fn feed_card(&mut self, feed: &raw::RawFeedCard) -> Option<MessageTemplate> {
        let at = self.rule_at.key("feed_card");
        let mut links = Vec::new();
        let mut ok = true;
        for (i, link) in feed.links.iter().enumerate() {
            let i_s = i.to_string();
            match self.feed_link(
                &["feed_card", "links", &i_s],
                &format!("feed_card.links[{i}]"),
                link,
            ) {
                Some(link) => links.push(link),
                None => ok = false,
            }
        }
        let each = match (&feed.each, &feed.link) {
            (Some(expr), Some(link)) => {
                let list = self.expression(
                    &at.key("each"),
                    expr,
                    "feed_card.each",
                    ("{{ (", ") | tojson }}"),
                );
                let link = self.feed_link(&["feed_card", "link"], "feed_card.link", link);
                match (list, link) {
                    (Some(list), Some(link)) => Some(EachTemplate {
                        list,
                        link,
                        max_links: feed.max_links.unwrap_or(10),
                    }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            (None, None) => None,
            (Some(_), None) => {
                self.error(
                    &at.key("each"),
                    "feed_card: `each` needs a `link` to render per item",
                );
                ok = false;
                None
            }
            (None, Some(_)) => {
                self.error(
                    &at.key("link"),
                    "feed_card: `link` needs `each`, the list to render it for",
                );
                ok = false;
                None
            }
        };
        if feed.links.is_empty() && feed.each.is_none() {
            self.error(&at, "feed_card needs `links`, or `each` with `link`");
            ok = false;
        }
        if feed.max_links == Some(0) {
            self.error(
                &at.key("max_links"),
                "feed_card.max_links must be at least 1",
            );
            ok = false;
        }
        ok.then_some(MessageTemplate::FeedCard { links, each })
    }

    fn at(&mut self, at: &raw::RawAt) -> AtTemplate {
        let mut template = AtTemplate::default();
        for (i, mobile) in at.mobiles.iter().enumerate() {
            let i_s = i.to_string();
            if let Some(f) = self.template(
                &["at", "mobiles", &i_s],
                mobile,
                &format!("at.mobiles[{i}]"),
            ) {
                template.mobiles.push(f);
            }
        }
        for (i, user) in at.user_ids.iter().enumerate() {
            let i_s = i.to_string();
            if let Some(f) = self.template(
                &["at", "user_ids", &i_s],
                user,
                &format!("at.user_ids[{i}]"),
            ) {
                template.user_ids.push(f);
            }
        }
        template.all = match &at.all {
            None | Some(BoolOrTemplate::Bool(false)) => AllTemplate::No,
            Some(BoolOrTemplate::Bool(true)) => AllTemplate::Yes,
            Some(BoolOrTemplate::Template(t)) => self
                .template(&["at", "all"], t, "at.all")
                .map(AllTemplate::Template)
                .unwrap_or_default(),
        };
        template
    }
}

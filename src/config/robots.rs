//! Building a robot from its raw entry: its endpoint (webhook URL or dry run, or a robot of an
//! app), 加签 secret, keywords, and how its worker delivers (rate, penalty, max age, digests);
//! and building an app from its entry under `apps:`.

use std::sync::Arc;

use indexmap::IndexMap;
use url::Url;

use super::model::{DINGTALK_HOST, RobotDelivery};
use super::raw::{self, AppRobotKindName};
use crate::dingtalk::robot::WebhookUrl;
use crate::dingtalk::work_notice;
use crate::dingtalk::{App, AppRobot, AppRobotKind, Endpoint, Robot};
use crate::yaml::{Checker, Path};

pub(super) fn build_robot_delivery(
    name: &str,
    raw: &raw::RawRobot,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<RobotDelivery> {
    let defaults = RobotDelivery::default();
    let rate_per_minute = raw.rate_per_minute.unwrap_or(defaults.rate_per_minute);
    if rate_per_minute < 2 {
        checker.error(
            &at.key("rate_per_minute"),
            format!(
                "robots.{name}.rate_per_minute: must be at least 2 (dingrelay stays one below it)"
            ),
        );
    }
    let throttle_penalty = checker.duration(
        &at.key("throttle_penalty"),
        raw.throttle_penalty.as_deref(),
        defaults.throttle_penalty,
    );
    let max_age = checker.duration(&at.key("max_age"), raw.max_age.as_deref(), defaults.max_age);
    let digest_after = checker.duration(
        &at.key("digest_after"),
        raw.digest_after.as_deref(),
        std::time::Duration::from_secs(60),
    );
    Some(RobotDelivery {
        rate_per_minute,
        throttle_penalty: throttle_penalty?,
        max_age: max_age?,
        digest_after: if raw.digest.unwrap_or(true) {
            Some(digest_after?)
        } else {
            None
        },
    })
    .filter(|_| rate_per_minute >= 2)
}

pub(super) fn build_robot(
    name: &str,
    raw: &raw::RawRobot,
    at: &Path,
    apps: &IndexMap<String, Arc<App>>,
    checker: &mut Checker<'_>,
) -> Option<Robot> {
    if let Some(app) = &raw.app {
        return build_app_robot(name, raw, app, at, apps, checker);
    }
    for (key, set) in [
        ("kind", raw.kind.is_some()),
        ("robot_code", raw.robot_code.is_some()),
        ("conversation", raw.conversation.is_some()),
        ("users", !raw.users.is_empty()),
        ("departments", !raw.departments.is_empty()),
    ] {
        if set {
            checker.error_at_key(
                &at.key(key),
                format!(
                    "`{key}` is for robots of an app: name the app in `app:` (and drop `webhook`)"
                ),
            );
        }
    }
    let secret = checker.secret(
        at,
        "secret",
        raw.secret.as_deref(),
        raw.secret_file.as_deref(),
    );
    if let Some(secret) = &secret {
        use secrecy::ExposeSecret;
        if !secret.expose_secret().starts_with("SEC") {
            checker.warnings.push(format!(
                "robot `{name}`: its 加签 secret does not start with `SEC`; DingTalk's secrets do, check that it is the right value"
            ));
        }
    }

    let mut keywords = Vec::new();
    for (i, keyword) in raw.keywords.iter().enumerate() {
        let path = at.key("keywords").index(i);
        if let Some(keyword) = checker.expand(&path, keyword) {
            if keyword.trim().is_empty() {
                checker.error(&path, format!("robots.{name}.keywords: a keyword is empty"));
            } else {
                keywords.push(keyword.trim().to_owned());
            }
        }
    }
    if keywords.len() > 10 {
        checker.error(
            &at.key("keywords"),
            format!(
                "robots.{name}.keywords: DingTalk allows at most 10 keywords, found {}",
                keywords.len()
            ),
        );
    }

    let allow_host = match &raw.allow_host {
        Some(host) => checker.expand(&at.key("allow_host"), host),
        None => None,
    };

    let webhook = match (&raw.webhook, &raw.webhook_file) {
        (Some(_), Some(_)) => {
            checker.error_at_key(
                &at.key("webhook_file"),
                "`webhook` and `webhook_file` are both set: keep one",
            );
            return None;
        }
        (Some(inline), None) => checker
            .expand(&at.key("webhook"), inline)?
            .trim()
            .to_owned(),
        (None, Some(_)) => {
            use secrecy::ExposeSecret;
            checker
                .secret(at, "webhook", None, raw.webhook_file.as_deref())?
                .expose_secret()
                .to_owned()
        }
        (None, None) => String::new(),
    };

    let endpoint = if webhook.is_empty() || webhook == "log" {
        Endpoint::DryRun { secret }
    } else {
        let path = at.key(if raw.webhook.is_some() {
            "webhook"
        } else {
            "webhook_file"
        });
        // The URL carries the access token: errors describe it without echoing it.
        let url = match Url::parse(&webhook) {
            Ok(url) => url,
            Err(error) => {
                checker.error(
                    &path,
                    format!("robots.{name}.webhook: not a URL ({error}); expected https://oapi.dingtalk.com/robot/send?access_token=... or `log`"),
                );
                return None;
            }
        };
        let host_port = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let allowed = allow_host
            .as_deref()
            .is_some_and(|allowed| allowed == host_port || Some(allowed) == url.host_str());
        if allowed {
            if !matches!(url.scheme(), "http" | "https") {
                checker.error(
                    &path,
                    format!("robots.{name}.webhook: scheme must be http or https"),
                );
                return None;
            }
        } else if url.scheme() != "https" || url.host_str() != Some(DINGTALK_HOST) {
            checker.error(
                &path,
                format!(
                    "robots.{name}.webhook: must be an https URL on {DINGTALK_HOST}, not {}://{host_port}; \
                     to send elsewhere (a proxy or a mock), name that host in `allow_host`",
                    url.scheme()
                ),
            );
            return None;
        } else if !url
            .query_pairs()
            .any(|(k, v)| k == "access_token" && !v.is_empty())
        {
            checker.error(
                &path,
                format!("robots.{name}.webhook: has no access_token; copy the whole webhook URL from the robot's settings"),
            );
            return None;
        }
        Endpoint::Webhook {
            url: WebhookUrl::new(url),
            secret,
        }
    };

    Some(Robot {
        name: name.to_owned(),
        endpoint,
        keywords,
    })
}

/// DingTalk's app APIs, when an app names no `base_url`.
const API_URL: &str = "https://api.dingtalk.com";
const OAPI_URL: &str = "https://oapi.dingtalk.com";

/// Builds the app `name`: its appKey, its appSecret (from the file, env or a systemd credential),
/// its AgentId and where its APIs are.
pub(super) fn build_app(
    name: &str,
    raw: &raw::RawApp,
    at: &Path,
    checker: &mut Checker<'_>,
) -> Option<App> {
    let app_key = checker.expand(&at.key("app_key"), &raw.app_key)?;
    let app_key = app_key.trim().to_owned();
    if app_key.is_empty() {
        checker.error(&at.key("app_key"), format!("apps.{name}.app_key: is empty"));
    }
    let errors_before = checker.diagnostics.len();
    let app_secret = checker.secret(
        at,
        "app_secret",
        raw.app_secret.as_deref(),
        raw.app_secret_file.as_deref(),
    );
    if app_secret.is_none()
        && raw.app_secret.is_some()
        && checker.diagnostics.len() == errors_before
    {
        checker.error(
            &at.key("app_secret"),
            format!("apps.{name}.app_secret: is empty (an unset variable?)"),
        );
    } else if app_secret.is_none() && raw.app_secret.is_none() && raw.app_secret_file.is_none() {
        checker.error(
            at,
            format!(
                "apps.{name}: no `app_secret`: give the app's AppSecret (Client Secret) as `app_secret: ${{VAR}}` or `app_secret_file: /path`"
            ),
        );
    }
    let (api_url, oapi_url) = match &raw.base_url {
        None => (
            Url::parse(API_URL).expect("constant URL"),
            Url::parse(OAPI_URL).expect("constant URL"),
        ),
        Some(base) => {
            let path = at.key("base_url");
            let base = checker.expand(&path, base)?;
            match Url::parse(base.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    (url.clone(), url)
                }
                _ => {
                    checker.error(
                        &path,
                        format!("apps.{name}.base_url: `{base}` is not an http(s) URL like http://127.0.0.1:8090"),
                    );
                    return None;
                }
            }
        }
    };
    Some(App {
        name: name.to_owned(),
        app_key,
        app_secret: app_secret?,
        agent_id: raw.agent_id,
        api_url,
        oapi_url,
    })
    .filter(|app| !app.app_key.is_empty())
}

/// Builds a robot of an app: a group robot, one-to-one chats or work notifications.
fn build_app_robot(
    name: &str,
    raw: &raw::RawRobot,
    app_name: &str,
    at: &Path,
    apps: &IndexMap<String, Arc<App>>,
    checker: &mut Checker<'_>,
) -> Option<Robot> {
    for (key, set) in [
        ("webhook", raw.webhook.is_some()),
        ("webhook_file", raw.webhook_file.is_some()),
        ("secret", raw.secret.is_some()),
        ("secret_file", raw.secret_file.is_some()),
        ("allow_host", raw.allow_host.is_some()),
        ("keywords", !raw.keywords.is_empty()),
    ] {
        if set {
            checker.error_at_key(
                &at.key(key),
                format!(
                    "robots.{name}: `{key}` is for group custom robots (webhooks); a robot of an app is reached with the app's access token"
                ),
            );
        }
    }
    let app_name = checker.expand(&at.key("app"), app_name)?;
    let Some(app) = apps.get(app_name.trim()) else {
        let known: Vec<&str> = apps.keys().map(String::as_str).collect();
        checker.error(
            &at.key("app"),
            if known.is_empty() {
                format!("robots.{name}: unknown app `{app_name}`: declare it under `apps:`")
            } else {
                format!(
                    "robots.{name}: unknown app `{app_name}` (apps: {})",
                    known.join(", ")
                )
            },
        );
        return None;
    };
    let robot_code = match &raw.robot_code {
        Some(code) => checker
            .expand(&at.key("robot_code"), code)?
            .trim()
            .to_owned(),
        None => app.app_key.clone(),
    };
    let conversation = match &raw.conversation {
        Some(cid) => Some(
            checker
                .expand(&at.key("conversation"), cid)?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let mut users = Vec::new();
    for (i, user) in raw.users.iter().enumerate() {
        let path = at.key("users").index(i);
        let user = checker.expand(&path, user)?;
        if user.trim().is_empty() {
            checker.error(&path, format!("robots.{name}.users: a user id is empty"));
        }
        users.push(user.trim().to_owned());
    }
    let mut departments = Vec::new();
    for (i, department) in raw.departments.iter().enumerate() {
        let path = at.key("departments").index(i);
        let department = checker.expand(&path, department)?.trim().to_owned();
        if department.is_empty() || !department.chars().all(|c| c.is_ascii_digit()) {
            checker.error(
                &path,
                format!(
                    "robots.{name}.departments: `{department}` is not a department id (a number)"
                ),
            );
        }
        departments.push(department);
    }
    let kind = match raw.kind {
        Some(kind) => kind,
        None if conversation.is_some() => AppRobotKindName::Group,
        None => {
            checker.error(
                at,
                format!(
                    "robots.{name}: say how this robot of app `{}` sends: `conversation: cid...` for a group, or `kind: one_to_one` or `kind: work_notification` with `users`",
                    app.name
                ),
            );
            return None;
        }
    };
    // Keys of the other kinds: each said where it is, with the kinds it is for.
    use AppRobotKindName::{Group, OneToOne, WorkNotification};
    for (key, set, for_kinds, why) in [
        (
            "conversation",
            conversation.is_some(),
            &[Group][..],
            "is for group robots",
        ),
        (
            "users",
            !users.is_empty(),
            &[OneToOne, WorkNotification][..],
            "is for one-to-one chats and work notifications; a group robot sends to its `conversation`",
        ),
        (
            "departments",
            !departments.is_empty(),
            &[WorkNotification][..],
            "is for work notifications",
        ),
        (
            "robot_code",
            raw.robot_code.is_some(),
            &[Group, OneToOne][..],
            "is for app robots; work notifications use the app's `agent_id`",
        ),
    ] {
        if set && !for_kinds.contains(&kind) {
            checker.error_at_key(&at.key(key), format!("robots.{name}: `{key}` {why}"));
        }
    }
    let kind = match kind {
        AppRobotKindName::Group => {
            let Some(conversation) = conversation.filter(|c| !c.is_empty()) else {
                checker.error(
                    at,
                    format!("robots.{name}: a group app robot needs `conversation`: the group's openConversationId (cid...==)"),
                );
                return None;
            };
            AppRobotKind::Group {
                robot_code,
                conversation,
            }
        }
        AppRobotKindName::OneToOne => {
            if users.is_empty() {
                checker.error(
                    at,
                    format!("robots.{name}: one-to-one chats need `users`: user ids, or templates such as '{{{{ labels.owner }}}}'"),
                );
                return None;
            }
            AppRobotKind::OneToOne { robot_code, users }
        }
        AppRobotKindName::WorkNotification => {
            if users.is_empty() && departments.is_empty() {
                checker.error(
                    at,
                    format!("robots.{name}: work notifications need `users` or `departments`"),
                );
                return None;
            }
            if departments.len() > work_notice::MAX_DEPARTMENTS {
                checker.error(
                    &at.key("departments"),
                    format!(
                        "robots.{name}.departments: DingTalk takes at most {} departments, found {}",
                        work_notice::MAX_DEPARTMENTS,
                        departments.len()
                    ),
                );
            }
            let Some(agent_id) = app.agent_id else {
                checker.error(
                    at,
                    format!(
                        "robots.{name}: work notifications need the app's AgentId: add `agent_id` under apps.{}",
                        app.name
                    ),
                );
                return None;
            };
            AppRobotKind::WorkNotice {
                agent_id,
                users,
                departments,
            }
        }
    };
    Some(Robot {
        name: name.to_owned(),
        endpoint: Endpoint::App(AppRobot {
            app: app.clone(),
            kind,
        }),
        keywords: Vec::new(),
    })
}

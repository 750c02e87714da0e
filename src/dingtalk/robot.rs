//! A robot: where its messages go, and what DingTalk will check them against.
//!
//! Two families of robot exist. A group **custom robot** is a webhook URL with an optional 加签
//! secret. The robots of an **enterprise internal app** ([`App`]) are reached with the app's
//! access token instead: a group app robot (robotCode and openConversationId), an app robot's
//! one-to-one chats with people, and the app's work notifications (工作通知). What each can
//! express and how much it takes differs ([`Endpoint::body_budget`], and
//! [`super::app_message`]).

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A DingTalk group robot, as the rest of the code sees it once the config is validated.
#[derive(Debug, Clone)]
pub struct Robot {
    pub name: String,
    pub endpoint: Endpoint,
    /// The robot's security keywords: DingTalk refuses (errcode 310000) a message that contains
    /// none of them, so validation refuses it first.
    pub keywords: Vec<String>,
}

/// Where a robot's requests go.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The webhook is unset or `log`: the exact request is printed instead of sent.
    DryRun {
        /// A 加签 secret still signs the printed request, so the output is what DingTalk would get.
        secret: Option<SecretString>,
    },
    Webhook {
        url: WebhookUrl,
        /// The 加签 secret (`SEC...`): when set, every request carries `timestamp` and `sign`.
        secret: Option<SecretString>,
    },
    /// A robot of an enterprise internal app, called with the app's access token.
    App(AppRobot),
}

impl Endpoint {
    pub fn secret(&self) -> Option<&SecretString> {
        match self {
            Endpoint::DryRun { secret } | Endpoint::Webhook { secret, .. } => secret.as_ref(),
            Endpoint::App(_) => None,
        }
    }

    /// Where requests go, for people: the webhook with its query values masked, or the app,
    /// its kind and whom it sends to. Never a secret.
    pub fn target(&self) -> String {
        match self {
            Endpoint::DryRun { .. } => "dry run: prints each request instead of sending it".into(),
            Endpoint::Webhook { url, .. } => url.redacted(),
            Endpoint::App(robot) => {
                let app = &robot.app.name;
                match &robot.kind {
                    AppRobotKind::Group { conversation, .. } => {
                        format!("app `{app}`, group robot in {conversation}")
                    }
                    AppRobotKind::OneToOne { users, .. } => {
                        format!("app `{app}`, one-to-one chats with {}", users.join(", "))
                    }
                    AppRobotKind::WorkNotice {
                        users, departments, ..
                    } => {
                        let mut to: Vec<String> = users.clone();
                        to.extend(departments.iter().map(|d| format!("department {d}")));
                        format!("app `{app}`, work notifications to {}", to.join(", "))
                    }
                }
            }
        }
    }

    /// The app robot, if this is one.
    pub fn app(&self) -> Option<&AppRobot> {
        match self {
            Endpoint::App(robot) => Some(robot),
            _ => None,
        }
    }
}

/// An enterprise internal app: its credentials, exchanged for the access token its robots use.
pub struct App {
    /// The app's name in `rules.yaml`.
    pub name: String,
    /// The app's AppKey (Client ID); also the robotCode of its robot.
    pub app_key: String,
    /// The AppSecret (Client Secret): only ever sent to the token endpoint.
    pub app_secret: SecretString,
    /// The AgentId, which work notifications need (not the AppKey).
    pub agent_id: Option<u64>,
    /// `https://api.dingtalk.com`, or a stand-in standing for it (tests, proxies).
    pub api_url: Url,
    /// `https://oapi.dingtalk.com`, or a stand-in standing for it.
    pub oapi_url: Url,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("app_key", &self.app_key)
            .field("agent_id", &self.agent_id)
            .field("api_url", &self.api_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A robot reached through an app.
#[derive(Debug, Clone)]
pub struct AppRobot {
    pub app: Arc<App>,
    pub kind: AppRobotKind,
}

/// What an app robot sends to.
#[derive(Debug, Clone)]
pub enum AppRobotKind {
    /// `POST /v1.0/robot/groupMessages/send`: one group the app's robot was added to.
    Group {
        robot_code: String,
        /// The group's `openConversationId` (`cid…==`).
        conversation: String,
    },
    /// `POST /v1.0/robot/oToMessages/batchSend`: people, each in their one-to-one chat with the
    /// robot. Each message goes to one person (the outbox keeps one row per person, so each is
    /// retried or dead-lettered on its own).
    OneToOne {
        robot_code: String,
        /// User ids, or templates rendering them from the event (`{{ labels.owner }}`);
        /// compiled and rendered by the rules.
        users: Vec<String>,
    },
    /// `POST /topapi/message/corpconversation/asyncsend_v2`: the app's work notification to
    /// people and departments, one message for all of them.
    WorkNotice {
        agent_id: u64,
        /// User ids or templates, as for [`AppRobotKind::OneToOne`].
        users: Vec<String>,
        /// Department ids (sub-departments included).
        departments: Vec<String>,
    },
}

impl AppRobotKind {
    /// The user templates this robot renders for each message, if it addresses people.
    pub fn user_templates(&self) -> &[String] {
        match self {
            AppRobotKind::Group { .. } => &[],
            AppRobotKind::OneToOne { users, .. } | AppRobotKind::WorkNotice { users, .. } => users,
        }
    }

    /// Why a message for this robot with these `recipients` has nowhere to go, if it has not: a
    /// one-to-one message naming nobody, a work notification naming neither people nor
    /// departments.
    pub fn no_recipient(&self, recipients: &[String]) -> Option<&'static str> {
        match self {
            AppRobotKind::Group { .. } => None,
            AppRobotKind::OneToOne { .. } if recipients.is_empty() => Some(
                "no one to send it to: the robot's `users` rendered no user id for this event (a label missing?), or the rule failed and its fallback names nobody",
            ),
            AppRobotKind::WorkNotice { departments, .. }
                if recipients.is_empty() && departments.is_empty() =>
            {
                Some(
                    "no one to send it to: the robot's `users` rendered no user id for this event (a label missing?), and it names no department",
                )
            }
            _ => None,
        }
    }

    /// What this kind is called in messages to people.
    pub fn describe(&self) -> &'static str {
        match self {
            AppRobotKind::Group { .. } => "a group app robot",
            AppRobotKind::OneToOne { .. } => "an app robot's one-to-one chats",
            AppRobotKind::WorkNotice { .. } => "work notifications",
        }
    }
}

/// A webhook URL. Its `access_token` is a secret: `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn new(url: Url) -> Self {
        WebhookUrl(url)
    }

    /// The full URL, token included: only for building the request.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Scheme, host and path, with every query value replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut shown = format!(
            "{}://{}{}",
            self.0.scheme(),
            self.0.host_str().unwrap_or(""),
            self.0.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        shown.push_str(self.0.path());
        let keys: Vec<String> = self
            .0
            .query_pairs()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        if !keys.is_empty() {
            shown.push('?');
            shown.push_str(&keys.join("&"));
        }
        shown
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted())
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Shorthand used by tests and the dry-run printer.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

//! A robot: where its messages go, and what DingTalk will check them against.

use std::fmt;

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
}

impl Endpoint {
    pub fn secret(&self) -> Option<&SecretString> {
        match self {
            Endpoint::DryRun { secret } | Endpoint::Webhook { secret, .. } => secret.as_ref(),
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

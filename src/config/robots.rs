//! Building a robot from its raw entry: its endpoint (webhook URL or dry run), 加签 secret,
//! keywords, and how its worker delivers (rate, penalty, max age, digests).

use url::Url;

use super::model::{DINGTALK_HOST, RobotDelivery};
use super::raw;
use crate::dingtalk::robot::WebhookUrl;
use crate::dingtalk::{Endpoint, Robot};
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
    checker: &mut Checker<'_>,
) -> Option<Robot> {
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

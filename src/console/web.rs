//! The console's HTTP face (in progress): sign-in through 免登 into a signed session cookie, the
//! page that shows who is signed in, the `dd.config` endpoint for the page's JSAPI calls, and a
//! Silence link's confirmation form and its post, which creates the silence in Alertmanager as
//! the signed-in person.
//!
//! Invariants:
//! - the console is off unless `console:` is configured (the daemon merges these routes only
//!   then);
//! - the session cookie is a [`Signer`] token (purpose `session`, expiring), `HttpOnly`,
//!   `SameSite=Strict`, `Path=/console`: a script cannot read it and another site cannot send it;
//! - every failure is a page (or, under `/console/api/`, JSON) saying what went wrong and what to
//!   do, never a stack trace, and never a secret (the app's secret, its token, the ticket);
//! - everything shown that came from outside is HTML-escaped;
//! - a link names what to act on, signed and expiring; acting takes the signed-in person's form,
//!   whose CSRF token is bound to that person and that link, so neither a forwarded link nor
//!   another site's form acts as someone else.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::jsapi::{Hash, Tickets};
use super::link::{Purpose, Signer, SilenceLink};
use super::login::sign_in;
use crate::clock::Clock;
use crate::delivery::app_send::AppClient;

/// The session cookie's name.
pub const COOKIE: &str = "dingrelay_session";

/// What the console runs with.
pub struct Console {
    /// The app whose token signs people in (and whose robots send).
    pub app: Arc<AppClient>,
    pub tickets: Tickets,
    pub signer: Signer,
    /// The organisation's corpId, for `dd.config` and `requestAuthCode`.
    pub corp_id: String,
    /// The app's AgentId, for `dd.config`.
    pub agent_id: u64,
    /// How long a session lasts.
    pub session_ttl: Duration,
    pub clock: Clock,
    /// Each call to DingTalk's bound.
    pub timeout: Duration,
    /// Where silences are created (`http://alertmanager:9093`); `None`: the Silence button says
    /// the console has no Alertmanager.
    pub alertmanager: Option<url::Url>,
    /// The client for Alertmanager.
    pub http: reqwest::Client,
    /// Where "silenced by ..." follow-ups are queued, and the robot that sends them.
    pub notify: Option<(crate::outbox::Outbox, Arc<crate::dingtalk::Robot>)>,
    /// The time zone of the times the follow-ups show.
    pub timezone: jiff::tz::TimeZone,
}

/// The console's routes, under `/console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console/", get(home))
        .route("/console/login", get(login))
        .route("/console/api/dd-config", get(dd_config))
        .route(
            "/console/silence",
            get(silence_form).post(silence_confirmed),
        )
        .with_state(console)
}

/// The signed-in user: id and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
}

impl Console {
    /// The user of the request's session cookie, if it is valid.
    fn user(&self, headers: &HeaderMap) -> Option<User> {
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))?;
        let subject = self
            .signer
            .verify(token, Purpose::Session, self.clock.now_ms())
            .ok()?;
        serde_json::from_str(&subject).ok()
    }
}

impl Console {
    /// Queues "🔕 silenced by <name> until <time>" for the `notify` robot, if there is one. A
    /// follow-up that cannot be queued is logged; the silence stands either way.
    async fn tell_the_group(
        &self,
        user: &User,
        silence: &super::silence::SilenceRequest,
        now: i64,
    ) {
        let Some((outbox, robot)) = &self.notify else {
            return;
        };
        let until = self
            .timezone
            .to_datetime(silence.ends_at)
            .strftime("%m-%d %H:%M")
            .to_string();
        let labels: Vec<String> = silence
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut text = format!("### 🔕 silenced by {} until {until}\n\n", user.name);
        crate::text::escape_markdown_inline(&labels.join(", "), &mut text);
        let message = crate::dingtalk::Message {
            body: crate::dingtalk::MessageBody::Markdown {
                markdown: crate::dingtalk::message::Markdown {
                    title: format!("🔕 silenced by {}", user.name),
                    text,
                },
            },
            at: None,
            msg_uuid: None,
        };
        let message = match crate::dingtalk::prepare(message, robot) {
            Ok(prepared) => prepared.message,
            Err(error) => {
                tracing::warn!(robot = %robot.name, "The silence's follow-up is not valid for the robot: {error}.");
                return;
            }
        };
        let new = crate::outbox::NewMessage {
            robot: robot.name.clone(),
            rule: "console".to_owned(),
            source: "console".to_owned(),
            dedup_key: None,
            message,
            recipients: Vec::new(),
        };
        if let Err(error) = outbox.enqueue(vec![new], now).await {
            tracing::warn!(robot = %robot.name, "Could not queue the silence's follow-up: {error}.");
        }
    }
}

async fn home(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.user(&headers) {
        Some(user) => page(
            StatusCode::OK,
            "dingrelay",
            &format!(
                "<p>Signed in as <b>{}</b> ({}).</p>",
                escape(&user.name),
                escape(&user.id)
            ),
        ),
        None => page(
            StatusCode::OK,
            "Sign in",
            &format!(
                "<p>Open this page from DingTalk to sign in.</p>\n<script>\n\
                 if (window.dd) dd.ready(function () {{ dd.runtime.permission.requestAuthCode({{\n\
                 corpId: {corp},\n\
                 onSuccess: function (r) {{ location.href = '/console/login?code=' + encodeURIComponent(r.code); }},\n\
                 onFail: function () {{ document.body.insertAdjacentHTML('beforeend', '<p>DingTalk did not give a sign-in code.</p>'); }}\n\
                 }}); }});\n</script>",
                corp = serde_json::Value::String(console.corp_id.clone())
            ),
        ),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    code: String,
}

async fn login(State(console): State<Arc<Console>>, Query(query): Query<LoginQuery>) -> Response {
    match sign_in(&console.app, &query.code, console.timeout).await {
        Ok(user) => {
            let user = User {
                id: user.user_id,
                name: user.name,
            };
            let subject = serde_json::to_string(&user).unwrap_or_default();
            let ttl = console.session_ttl;
            let expires = console.clock.now_ms() + ttl.as_millis() as i64;
            let token = console.signer.sign(Purpose::Session, &subject, expires);
            tracing::info!(user = %user.id, "Signed in to the console through DingTalk.");
            (
                StatusCode::SEE_OTHER,
                [
                    (
                        header::SET_COOKIE,
                        format!(
                            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
                            ttl.as_secs()
                        ),
                    ),
                    (header::LOCATION, "/console/".to_owned()),
                ],
            )
                .into_response()
        }
        Err(error) => {
            tracing::warn!("A console sign-in failed: {error}.");
            page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                &format!("<p>{}</p>", escape(&error.to_string())),
            )
        }
    }
}

#[derive(Deserialize)]
struct ConfigQuery {
    #[serde(default)]
    url: String,
}

async fn dd_config(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<ConfigQuery>,
) -> Response {
    if console.user(&headers).is_none() {
        return json_error(StatusCode::UNAUTHORIZED, "sign in first");
    }
    let nonce = hex::encode(rand::random::<[u8; 8]>());
    let timestamp = console.clock.now_ms().to_string();
    match console
        .tickets
        .dd_config(
            &query.url,
            console.agent_id,
            &console.corp_id,
            &nonce,
            &timestamp,
            Hash::Sha256,
        )
        .await
    {
        Ok(config) => (StatusCode::OK, axum::Json(config)).into_response(),
        Err(error) => json_error(StatusCode::BAD_GATEWAY, &error),
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    link: String,
}

/// How long a form's CSRF token is good for.
const FORM_TTL_MS: i64 = 10 * 60 * 1000;

/// `GET /console/silence?link=...`: what the button would silence, and a form to confirm it.
async fn silence_form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Response {
    let now = console.clock.now_ms();
    let link = match SilenceLink::verify(&console.signer, &query.link, now) {
        Ok(link) => link,
        Err(error) => {
            return page(
                StatusCode::FORBIDDEN,
                "Link refused",
                &format!("<p>{}</p>", escape(&error)),
            );
        }
    };
    let Some(user) = console.user(&headers) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "<p>Open this link from DingTalk: it signs you in first.</p>",
        );
    };
    let csrf = console.signer.sign(
        Purpose::Csrf,
        &format!("{}\t{}", user.id, query.link),
        now + FORM_TTL_MS,
    );
    let labels: String = link
        .labels
        .iter()
        .map(|(k, v)| format!("<li><code>{}=\"{}\"</code></li>", escape(k), escape(v)))
        .collect();
    page(
        StatusCode::OK,
        "Silence this alert?",
        &format!(
            "<p>As <b>{name}</b>, for {hours}:</p>\n<ul>{labels}</ul>\n\
             <form method=\"post\" action=\"/console/silence\">\
             <input type=\"hidden\" name=\"link\" value=\"{link}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\">Silence</button></form>",
            name = escape(&user.name),
            hours = escape(&format!(
                "{:#}",
                jiff::SignedDuration::from_secs(link.seconds.try_into().unwrap_or(i64::MAX))
            )),
            link = escape(&query.link),
            csrf = escape(&csrf),
        ),
    )
}

#[derive(Deserialize)]
struct SilenceForm {
    #[serde(default)]
    link: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /console/silence`: the signed-in user confirmed; the silence is created in
/// Alertmanager with their name.
async fn silence_confirmed(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SilenceForm>,
) -> Response {
    let now = console.clock.now_ms();
    let Some(user) = console.user(&headers) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "<p>Your session has ended: open the link from DingTalk again.</p>",
        );
    };
    let expected = format!("{}\t{}", user.id, form.link);
    if console
        .signer
        .verify(&form.csrf, Purpose::Csrf, now)
        .ok()
        .as_deref()
        != Some(expected.as_str())
    {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>This form was not made for you, or it is too old: open the link again.</p>",
        );
    }
    let link = match SilenceLink::verify(&console.signer, &form.link, now) {
        Ok(link) => link,
        Err(error) => {
            return page(
                StatusCode::FORBIDDEN,
                "Link refused",
                &format!("<p>{}</p>", escape(&error)),
            );
        }
    };
    let Some(alertmanager) = &console.alertmanager else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "No Alertmanager",
            "<p>The console has no <code>alertmanager</code> configured.</p>",
        );
    };
    let start = jiff::Timestamp::from_millisecond(now).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let request = super::silence::SilenceRequest::new(
        link.labels.clone(),
        &user.name,
        start,
        Duration::from_secs(link.seconds),
    );
    match super::silence::create(&console.http, alertmanager, &request).await {
        Ok(id) => {
            tracing::info!(user = %user.id, silence = %id, "Silenced an alert from the console.");
            console.tell_the_group(&user, &request, now).await;
            page(
                StatusCode::OK,
                "Silenced",
                &format!(
                    "<p>Silenced by <b>{}</b> until {} (silence <code>{}</code>).</p>",
                    escape(&user.name),
                    escape(&request.ends_at.to_string()),
                    escape(&id)
                ),
            )
        }
        Err(error) => {
            tracing::warn!(user = %user.id, "A silence from the console failed: {error}.");
            page(
                StatusCode::BAD_GATEWAY,
                "Not silenced",
                &format!("<p>{}</p>", escape(&error.to_string())),
            )
        }
    }
}

fn json_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// A page: the title and an HTML body made by the caller (escaped where it shows outside text).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title></head>\n\
         <body><h1>{}</h1>\n{body}\n</body></html>\n",
        escape(title),
        escape(title)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_nothing_to_interpret() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}

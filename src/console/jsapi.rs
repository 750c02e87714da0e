//! JSAPI 鉴权: the signature a page passes to `dd.config`, so that DingTalk lets it call JSAPIs
//! (choose people, confirm natively).
//!
//! The signed string is exactly
//! `jsapi_ticket=<ticket>&noncestr=<nonce>&timestamp=<timestamp>&url=<url>`, keys lower-case and in
//! that order, and the signature its lower-case hex SHA-256 (DingTalk's current documentation) or
//! SHA-1 (its older code, still seen): [`Hash`] chooses, SHA-256 by default.
//!
//! The URL is the page's, rewritten as DingTalk's own helper does ([`signed_url`]): without the
//! fragment, the query percent-decoded (`+` as a space), scheme, authority (an explicit port kept)
//! and path as they are. A signature over the raw URL fails on iOS, which passes it encoded.
//!
//! The ticket comes from [`Tickets`], one cache per app over its access token; if DingTalk hands
//! out a new ticket (another process fetched one), signatures made with the old one fail (52013)
//! until it expires here: one console per app is assumed.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use url::Url;

use crate::delivery::app_send::AppClient;
use crate::delivery::app_token::{AppToken, FetchFuture, Fetched, TokenError, TokenSource};

/// The digest of the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hash {
    /// What DingTalk's current documentation says.
    #[default]
    Sha256,
    /// What DingTalk's older demo code and the one published test vector use.
    Sha1,
}

/// `page` as it is signed: no fragment, the query decoded, the authority's port kept as written.
///
/// # Errors
///
/// When `page` is not an absolute http(s) URL.
pub fn signed_url(page: &str) -> Result<String, String> {
    let without_fragment = page.split('#').next().unwrap_or(page);
    let parsed = Url::parse(without_fragment).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("not an http(s) URL".to_owned());
    }
    // The authority and path exactly as written (the url crate drops a default port, which
    // DingTalk's Java helper keeps: `:80` is part of what is signed).
    let (head, query) = match without_fragment.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (without_fragment, None),
    };
    Ok(match query {
        Some(query) => {
            let spaced = query.replace('+', " ");
            let decoded = percent_decode(&spaced);
            format!("{head}?{decoded}")
        }
        None => head.to_owned(),
    })
}

/// `text` with every `%XX` decoded (as UTF-8, lossily); a `%` not followed by two hex digits
/// stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The signature of `url` (already [`signed_url`]) for `ticket`, `nonce` and `timestamp`, as
/// `dd.config` takes it.
pub fn signature(ticket: &str, nonce: &str, timestamp: &str, url: &str, hash: Hash) -> String {
    let plain = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    match hash {
        Hash::Sha256 => hex::encode(Sha256::digest(plain.as_bytes())),
        Hash::Sha1 => hex::encode(Sha1::digest(plain.as_bytes())),
    }
}

/// What a page passes to `dd.config`, for its URL: all of it from the server, `timeStamp`
/// exactly the string signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DdConfig {
    pub agent_id: String,
    pub corp_id: String,
    pub time_stamp: String,
    pub nonce_str: String,
    pub signature: String,
}

/// The app's jsapi_ticket, fetched with its access token (`POST /v1.0/oauth2/jsapiTickets`) and
/// cached like the token: one fetch at a time, renewed ahead of its expiry ([`AppToken`]).
pub struct Tickets {
    cache: AppToken,
}

/// Fetches tickets for [`Tickets`].
struct TicketSource {
    app: Arc<AppClient>,
    timeout: Duration,
}

impl TokenSource for TicketSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let unavailable = |reason: String| TokenError::Unavailable {
                app: self.app.app.name.clone(),
                reason,
            };
            let answer = self
                .app
                .call_api(
                    "/v1.0/oauth2/jsapiTickets",
                    &serde_json::json!({}),
                    self.timeout,
                )
                .await
                .map_err(unavailable)?;
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Answer {
                jsapi_ticket: Option<String>,
                expire_in: Option<i64>,
                code: Option<String>,
            }
            let parsed: Answer = serde_json::from_slice(&answer.body).map_err(|_| {
                unavailable(format!(
                    "HTTP {} with a body that is not JSON",
                    answer.status
                ))
            })?;
            match parsed.jsapi_ticket.filter(|t| !t.is_empty()) {
                Some(ticket) if answer.status == 200 => Ok(Fetched {
                    token: SecretString::from(ticket),
                    expires_in: Duration::from_secs(
                        parsed.expire_in.unwrap_or(0).max(0).unsigned_abs(),
                    ),
                }),
                _ => Err(unavailable(format!(
                    "HTTP {}, {} (no jsapi_ticket)",
                    answer.status,
                    parsed.code.unwrap_or_else(|| "no code".into())
                ))),
            }
        })
    }
}

impl Tickets {
    /// The ticket cache of `app`; each fetch bounded by `timeout`.
    pub fn new(app: Arc<AppClient>, timeout: Duration) -> Tickets {
        Tickets {
            cache: AppToken::new(Arc::new(TicketSource { app, timeout })),
        }
    }

    /// The `dd.config` parameters for the page at `page_url`, signed with the current ticket,
    /// `nonce` and `timestamp` (what the page will pass back exactly).
    ///
    /// # Errors
    ///
    /// A page URL that is not one, or no ticket.
    pub async fn dd_config(
        &self,
        page_url: &str,
        agent_id: u64,
        corp_id: &str,
        nonce: &str,
        timestamp: &str,
        hash: Hash,
    ) -> Result<DdConfig, String> {
        let url = signed_url(page_url)?;
        let ticket = self.cache.get().await.map_err(|e| e.to_string())?;
        Ok(DdConfig {
            agent_id: agent_id.to_string(),
            corp_id: corp_id.to_owned(),
            time_stamp: timestamp.to_owned(),
            nonce_str: nonce.to_owned(),
            signature: signature(ticket.expose_secret(), nonce, timestamp, &url, hash),
        })
    }

    /// Ticket fetches made (one per expiry).
    pub fn fetches(&self) -> u64 {
        self.cache.fetches()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published ticket (shared/reference/dingtalk-app-api.md §6.3).
    const TICKET: &str =
        "gUsHOoPPzLVZKVkClnESg88m7qMV4c0Ys9VGsMigqzZU7gA8PeoNzHODmYPZ85TYuoZryXuqEUFlXLN1OPEixm";

    #[test]
    fn the_published_vector_and_its_sha256() {
        let url = signed_url("http://test4.weixin.wtoip.com:80/wtoip/dingding/dzmp").unwrap();
        assert_eq!(
            url, "http://test4.weixin.wtoip.com:80/wtoip/dingding/dzmp",
            "port kept"
        );
        assert_eq!(
            signature(TICKET, "abcde12345", "1463125744", &url, Hash::Sha1),
            "d14dfc1d0d98cad2438e664723e8a9d8633b443f"
        );
        assert_eq!(
            signature(TICKET, "abcde12345", "1463125744", &url, Hash::default()),
            "06db718d460dde9fba6788934c0f994abf83a79dd019b7d98e66a3e0b7e5a5b9"
        );
    }

    #[test]
    fn the_url_loses_its_fragment_and_has_its_query_decoded() {
        let page =
            "https://relay.example.com:8443/console/silence?alert=Disk%20Full&who=a+b#/detail";
        let url = signed_url(page).unwrap();
        assert_eq!(
            url,
            "https://relay.example.com:8443/console/silence?alert=Disk Full&who=a b"
        );
        assert_eq!(
            signature(TICKET, "abcde12345", "1463125744", &url, Hash::Sha256),
            "c085eb759b0de4892a86118114144d258801bb367a3e436957914bbd29f4e04e"
        );
        assert_eq!(
            signature(TICKET, "abcde12345", "1463125744", &url, Hash::Sha1),
            "a19364740cd9e6328b11f4251d9ae369729b87f0"
        );
        // Signed as it came, the page would fail DingTalk's check.
        assert_eq!(
            signature(TICKET, "abcde12345", "1463125744", page, Hash::Sha256),
            "6ca35b5744b0424ef850cd9937249cdaa924830272c57f3052fa60d72007c676"
        );
    }

    #[test]
    fn what_is_not_a_page_url_is_refused() {
        assert!(signed_url("/console").is_err());
        assert!(signed_url("ftp://host/x").is_err());
        assert_eq!(
            signed_url("https://h/p?x=%zz").unwrap(),
            "https://h/p?x=%zz"
        );
    }
}

//! 加签: `timestamp` (ms) and `sign` = base64(HMAC-SHA256(secret, timestamp + "\n" + secret)),
//! added to the webhook URL's query and URL-encoded exactly once.
//!
//! Invariants:
//! - The key is the secret exactly as DingTalk shows it (the `SEC…` prefix included), the message
//!   is `"{timestamp_ms}\n{secret}"`, and the signature is standard base64 with padding. The body
//!   and the `access_token` are not signed: that is DingTalk's protocol, not an oversight.
//! - The timestamp is in milliseconds; DingTalk refuses one more than an hour away from its clock.
//! - [`signed_url`] passes the *raw* base64 to `query_pairs_mut().append_pair`, which
//!   percent-encodes it once (`+` → `%2B`, `/` → `%2F`, `=` → `%3D`). Encoding it before that
//!   would double-encode it (`%252B`) and DingTalk would answer 310000 "sign not match".
//! - A signed URL holds exactly one `timestamp` and one `sign`: stale ones are removed, every other
//!   query parameter (`access_token` first of all) is kept byte for byte.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// The query parameters this module owns.
const SIGN_PARAMS: [&str; 2] = ["timestamp", "sign"];

/// The raw (not URL-encoded) 加签 signature: standard base64, with padding, of
/// HMAC-SHA256(key = `secret`, message = `"{timestamp_ms}\n{secret}"`).
///
/// # Panics
///
/// Never: HMAC accepts keys of any length, the empty one included.
#[must_use]
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    // HMAC takes keys of any length (longer ones are hashed first), so this cannot fail whatever
    // the secret is.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL to POST to: `webhook` with `timestamp` and `sign` set in its query when a 加签 secret
/// is given, or `webhook` unchanged when not.
///
/// Any `timestamp`/`sign` already in `webhook` are replaced, never duplicated; `access_token` and
/// every other parameter are kept as they were. The signature is URL-encoded exactly once.
#[must_use]
pub fn signed_url(webhook: &Url, secret: Option<&SecretString>, timestamp_ms: i64) -> Url {
    let Some(secret) = secret else {
        return webhook.clone();
    };
    let mut url = webhook.clone();
    // Keep the other parameters as raw segments, so their encoding is not rewritten.
    let kept: Vec<&str> = webhook
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|segment| !segment.is_empty())
        .filter(|segment| {
            let key = url::form_urlencoded::parse(segment.as_bytes())
                .next()
                .map(|(key, _)| key);
            !key.is_some_and(|key| SIGN_PARAMS.contains(&key.as_ref()))
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.set_query(Some(&kept.join("&")));
    }
    url.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign(secret.expose_secret(), timestamp_ms));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHED_SECRET: &str =
        "SECb90923e19e58b466481e9e7b7a5b4f108a4531abde590ad3967fb29f0eae5c68";
    const PUBLISHED_TS: i64 = 1_582_163_555_000;

    fn webhook(query: &str) -> Url {
        Url::parse(&format!("https://oapi.dingtalk.com/robot/send?{query}"))
            .expect("test URL parses")
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// All values of `key` in `url`'s query, decoded.
    fn values(url: &Url, key: &str) -> Vec<String> {
        url.query_pairs()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    #[test]
    fn published_vector() {
        // CatchZeng/dingtalk internal/security/security_test.go
        assert_eq!(
            sign(PUBLISHED_SECRET, PUBLISHED_TS),
            "BQKsG+QOCl+bYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY="
        );
    }

    #[test]
    fn computed_vector_from_the_doc_sample_inputs() {
        assert_eq!(
            sign("this is secret", 1_577_262_236_757),
            "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="
        );
    }

    #[test]
    fn signed_url_encodes_the_signature_exactly_once() {
        let url = signed_url(
            &webhook("access_token=abc123"),
            Some(&secret(PUBLISHED_SECRET)),
            PUBLISHED_TS,
        );
        let query = url.query().expect("signed URL has a query");
        assert_eq!(
            query,
            "access_token=abc123&timestamp=1582163555000\
             &sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D"
        );
        assert!(
            url.as_str()
                .contains("sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D")
        );
        assert!(!url.as_str().contains("%25"), "double-encoded: {url}");
        // A standard decoder gets the raw base64 back.
        assert_eq!(
            values(&url, "sign"),
            ["BQKsG+QOCl+bYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY="]
        );
        assert_eq!(values(&url, "timestamp"), ["1582163555000"]);
        assert_eq!(url.host_str(), Some("oapi.dingtalk.com"));
        assert_eq!(url.path(), "/robot/send");
    }

    #[test]
    fn stale_sign_params_are_replaced_and_others_kept() {
        let stale = webhook(
            "sign=old%2Bsig%3D&access_token=tok%2Fen&timestamp=1&x=a+b&timestamp=2&sign=zz",
        );
        let url = signed_url(&stale, Some(&secret("this is secret")), 1_577_262_236_757);
        assert_eq!(
            url.query(),
            Some(
                "access_token=tok%2Fen&x=a+b&timestamp=1577262236757\
                 &sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
            )
        );
        assert_eq!(
            values(&url, "sign"),
            ["hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="]
        );
        assert_eq!(values(&url, "timestamp"), ["1577262236757"]);
        assert_eq!(values(&url, "access_token"), ["tok/en"]);
        assert_eq!(values(&url, "x"), ["a b"]);
    }

    #[test]
    fn only_stale_sign_params_leaves_just_the_new_ones() {
        let url = signed_url(
            &webhook("timestamp=1&sign=x"),
            Some(&secret(PUBLISHED_SECRET)),
            PUBLISHED_TS,
        );
        assert_eq!(
            url.query(),
            Some("timestamp=1582163555000&sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D")
        );
    }

    #[test]
    fn url_without_query_gets_one() {
        let bare = Url::parse("http://127.0.0.1:8080/robot/send").expect("test URL parses");
        let url = signed_url(&bare, Some(&secret(PUBLISHED_SECRET)), PUBLISHED_TS);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/robot/send?timestamp=1582163555000\
             &sign=BQKsG%2BQOCl%2BbYJOLc6pxDHxjVquzlZPWgvRzeN2J5zY%3D"
        );
    }

    #[test]
    fn without_a_secret_the_url_is_unchanged() {
        let original = webhook("access_token=abc123&timestamp=1&sign=stale");
        assert_eq!(signed_url(&original, None, PUBLISHED_TS), original);
        let bare = Url::parse("https://oapi.dingtalk.com/robot/send").expect("test URL parses");
        assert_eq!(signed_url(&bare, None, PUBLISHED_TS), bare);
    }

    #[test]
    fn any_secret_and_timestamp_sign_without_panicking() {
        let long = "k".repeat(1000);
        for secret in ["", "SEC", "密钥🔑", long.as_str()] {
            for ts in [i64::MIN, -1, 0, i64::MAX] {
                let raw = sign(secret, ts);
                assert_eq!(raw.len(), 44, "32-byte digest in padded base64");
                let url = signed_url(&webhook("access_token=t"), Some(&self::secret(secret)), ts);
                assert_eq!(values(&url, "sign"), [raw]);
                assert_eq!(values(&url, "timestamp"), [ts.to_string()]);
            }
        }
    }
}

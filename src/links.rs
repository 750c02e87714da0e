//! Signed, expiring tokens: the console's session cookie and the links its buttons open.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, the payload
//! `purpose \n subject \n expires_at_ms`. Invariants:
//! - **a token says what it is for**: a session token is not a link token and the other way round
//!   (`purpose` is signed), so one cannot stand for the other;
//! - **it expires**: past `expires_at_ms` it is refused, however well signed;
//! - **it cannot be forged or altered** without the key: the MAC is compared in constant time
//!   ([`hmac::Mac::verify_slice`]), and any change of purpose, subject or expiry breaks it;
//! - a link names *what* to act on, never *who* acts: the person acting is the one signed in, so a
//!   forwarded message cannot act as the person it was sent to;
//! - the key is never shown; [`Signer`]'s `Debug` leaves it out.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The console's session: the subject is the signed-in DingTalk user id.
    Session,
    /// A link from a message's button: the subject is what it acts on (`silence:<fingerprint>`).
    Link,
    /// A form's CSRF token: the subject binds it to the signed-in user and what the form acts on.
    Csrf,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::Link => "link",
            Purpose::Csrf => "csrf",
        }
    }
}

/// Why a token is refused. Its text is safe to show on a page: it says nothing of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the link or session is not one of this console's")]
    Malformed,
    #[error("the link or session was not signed by this console (altered or forged)")]
    Forged,
    #[error("the link or session is for something else")]
    WrongPurpose,
    #[error("the link or session has expired")]
    Expired,
}

/// Signs and verifies tokens with one key (held by the daemon; restarting with a new key signs
/// everyone out).
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// A signer with `key` (at least 32 bytes of secret).
    ///
    /// # Errors
    ///
    /// When the key is shorter than 32 bytes.
    pub fn new(key: Vec<u8>) -> Result<Signer, String> {
        if key.len() < 32 {
            return Err(format!(
                "the console's signing key has {} bytes; it needs at least 32",
                key.len()
            ));
        }
        Ok(Signer { key })
    }

    /// A signer with a fresh random key: tokens last until the daemon restarts.
    pub fn random() -> Signer {
        Signer {
            key: rand::random::<[u8; 32]>().to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A token for `subject`, valid for `purpose` until `expires_at_ms` (Unix ms).
    pub fn sign(&self, purpose: Purpose, subject: &str, expires_at_ms: i64) -> String {
        let payload = format!("{}\n{subject}\n{expires_at_ms}", purpose.as_str());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The subject of `token` if it is this signer's, for `purpose`, and not expired at `now_ms`.
    ///
    /// # Errors
    ///
    /// Why it is refused; the signature is checked before anything of the payload is trusted.
    pub fn verify(
        &self,
        token: &str,
        purpose: Purpose,
        now_ms: i64,
    ) -> Result<String, TokenRefusal> {
        let (payload, tag) = token.split_once('.').ok_or(TokenRefusal::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenRefusal::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenRefusal::Malformed)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| TokenRefusal::Forged)?;
        let payload = String::from_utf8(payload).map_err(|_| TokenRefusal::Malformed)?;
        let mut parts = payload.splitn(3, '\n');
        let (Some(what), Some(subject), Some(expires)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRefusal::Malformed);
        };
        if what != purpose.as_str() {
            return Err(TokenRefusal::WrongPurpose);
        }
        let expires: i64 = expires.parse().map_err(|_| TokenRefusal::Malformed)?;
        if now_ms >= expires {
            return Err(TokenRefusal::Expired);
        }
        Ok(subject.to_owned())
    }
}

/// What a Silence button's link carries (signed, so no one can change it): the alert's labels
/// and how long to silence it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct SilenceLink {
    pub labels: std::collections::BTreeMap<String, String>,
    /// Seconds.
    pub seconds: u64,
}

impl SilenceLink {
    /// The signed token of the link, valid until `expires_at_ms`.
    pub fn sign(&self, signer: &Signer, expires_at_ms: i64) -> String {
        let subject = serde_json::to_string(self).unwrap_or_default();
        signer.sign(Purpose::Link, &format!("silence:{subject}"), expires_at_ms)
    }

    /// The link of `token`, if this signer made it for a silence and it has not expired.
    ///
    /// # Errors
    ///
    /// Why the link is refused, in words for the page.
    pub fn verify(signer: &Signer, token: &str, now_ms: i64) -> Result<SilenceLink, String> {
        let subject = signer
            .verify(token, Purpose::Link, now_ms)
            .map_err(|e| e.to_string())?;
        subject
            .strip_prefix("silence:")
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| "the link is not a Silence link".to_owned())
    }
}

/// What templates need to put Silence buttons in messages (`silence_button(labels)`): the key the
/// console checks links with, where the console is, and how long a link stays good.
#[derive(Debug, Clone)]
pub struct SilenceButtons {
    pub signer: Signer,
    /// The console's public address (`https://relay.example.com/`).
    pub console_url: url::Url,
    pub link_ttl: std::time::Duration,
}

impl SilenceButtons {
    /// The button URL silencing `labels` for `seconds`, valid from `now_ms` for the link TTL.
    pub fn url(
        &self,
        labels: std::collections::BTreeMap<String, String>,
        seconds: u64,
        now_ms: i64,
    ) -> String {
        let link = SilenceLink { labels, seconds };
        let expires = now_ms.saturating_add(self.link_ttl.as_millis() as i64);
        silence_button_url(&self.console_url, &link.sign(&self.signer, expires))
    }
}

/// The URL a message's button opens for `token`: the console's silence page at `console_url`, in
/// DingTalk's side panel on the desktop (`dingtalk://dingtalkclient/page/link?url=...&pc_slide=true`).
pub fn silence_button_url(console_url: &url::Url, token: &str) -> String {
    let mut page = console_url
        .join("console/silence")
        .unwrap_or_else(|_| console_url.clone());
    page.query_pairs_mut().append_pair("link", token);
    let mut button = url::Url::parse("dingtalk://dingtalkclient/page/link").expect("constant URL");
    button
        .query_pairs_mut()
        .append_pair("url", page.as_str())
        .append_pair("pc_slide", "true");
    button.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn a_token_gives_back_its_subject_until_it_expires() {
        let token = signer().sign(Purpose::Link, "silence:abc123", NOW + 60_000);
        assert_eq!(
            signer().verify(&token, Purpose::Link, NOW),
            Ok("silence:abc123".to_owned())
        );
        assert_eq!(
            signer().verify(&token, Purpose::Link, NOW + 60_000),
            Err(TokenRefusal::Expired)
        );
    }

    #[test]
    fn forged_altered_and_misused_tokens_are_refused() {
        let token = signer().sign(Purpose::Session, "user456", NOW + 60_000);
        // Another key.
        let other = Signer::new(vec![7; 32]).unwrap();
        assert_eq!(
            other.verify(&token, Purpose::Session, NOW),
            Err(TokenRefusal::Forged)
        );
        // The subject or expiry changed, with the old MAC.
        let (_, tag) = token.split_once('.').unwrap();
        for payload in [
            "session\nadmin\n1796000060000",
            "session\nuser456\n9999999999999",
        ] {
            let altered = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload));
            assert_eq!(
                signer().verify(&altered, Purpose::Session, NOW),
                Err(TokenRefusal::Forged)
            );
        }
        // A session is not a link.
        assert_eq!(
            signer().verify(&token, Purpose::Link, NOW),
            Err(TokenRefusal::WrongPurpose)
        );
        for junk in ["", ".", "abc", "a.b", "!!.!!"] {
            assert!(
                signer().verify(junk, Purpose::Session, NOW).is_err(),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_short_key_is_refused_and_the_key_is_never_shown() {
        assert!(Signer::new(vec![1; 16]).is_err());
        assert_eq!(format!("{:?}", signer()), "Signer { .. }");
        let a = Signer::random().sign(Purpose::Session, "u", NOW + 1);
        assert!(Signer::random().verify(&a, Purpose::Session, NOW).is_err());
    }
}

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

use sha1::Sha1;
use sha2::{Digest, Sha256};
use url::Url;

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

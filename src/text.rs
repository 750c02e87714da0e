//! Small text helpers for what people read: one line, a bounded length, markdown that stays
//! literal, URLs that stay one link target, control characters made visible. Shared by the outbox
//! listing, the answer classifier, storm digests, the template filters and every message that
//! quotes a file or a request, so they all flatten, cut and escape the same way.
//!
//! A link target written by [`push_link_target`] holds no space, control character, parenthesis,
//! angle bracket, backslash, backtick or double quote, and nothing outside printable ASCII: in
//! `[text](target)` the link ends at the `)` its writer put there, whatever the URL said.

use std::borrow::Cow;

/// Line breaks, tabs and other control or white-space runs as single spaces; trimmed.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, the last one `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Appends `text` to `out` so that it renders literally inside a line of DingTalk markdown:
/// `\` `` ` `` `*` `_` `[` `]` are backslash-escaped, `<` `>` become `&lt;` `&gt;`. Line breaks are
/// kept (block markers at a line start are the caller's business).
pub fn escape_markdown_inline(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
}

/// The schemes a link in a DingTalk message may have: web links, and `dingtalk://` (DingTalk's own
/// pages, e.g. to open a link in the PC's external browser).
pub const LINK_SCHEMES: [&str; 3] = ["http", "https", "dingtalk"];

/// Whether `url` starts with `<scheme>://` for one of [`LINK_SCHEMES`], the scheme in any case.
pub fn has_link_scheme(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        LINK_SCHEMES
            .iter()
            .any(|known| known.eq_ignore_ascii_case(scheme))
    })
}

/// Appends `url` to `out` as a markdown link target: each byte that is not printable ASCII (a
/// space, a control character, any byte of a non-ASCII character) and each of `(` `)` `<` `>`
/// `\` `` ` `` `"` becomes `%XX`. `%` is kept, so escapes already there stay as they are and
/// writing a written target again changes nothing. A URL without those bytes is written as it is.
pub fn push_link_target(url: &str, out: &mut String) {
    for byte in url.bytes() {
        if byte.is_ascii_graphic()
            && !matches!(byte, b'(' | b')' | b'<' | b'>' | b'\\' | b'`' | b'"')
        {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The plural ending of a count's noun: `""` for 1, else `"s"` (`1 test`, `2 tests`, `0 tests`).
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `text` safe to print on a terminal: each control character (an escape sequence, a line
/// break) is written as Rust escapes it (`\u{1b}`, `\n`). Borrowed when there is none.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape_control_except(text, &[])
}

/// [`escape_control`], but the control characters in `keep` (`\n` and `\t` in a multi-line
/// message) are left as they are.
pub fn escape_control_except<'a>(text: &'a str, keep: &[char]) -> Cow<'a, str> {
    let escaped = |c: char| c.is_control() && !keep.contains(&c);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_breaks_and_runs() {
        assert_eq!(one_line("  a\nb\r\n\tc \u{0} d \u{2028}e  "), "a b c d e");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("磁盘空间不足告警", 5), "磁盘空间…");
        assert_eq!(shorten("short", 5), "short");
        assert_eq!(shorten("abc", 0), "…");
    }

    #[test]
    fn escaped_markdown_stays_literal() {
        let mut out = String::new();
        escape_markdown_inline("a [b](c) *d* <e> \\ `f`_\nnext", &mut out);
        assert_eq!(out, "a \\[b\\](c) \\*d\\* &lt;e&gt; \\\\ \\`f\\`\\_\nnext");
    }

    #[test]
    fn link_targets_cannot_end_the_link_early() {
        let target = |url: &str| {
            let mut out = String::new();
            push_link_target(url, &mut out);
            out
        };
        assert_eq!(
            target("http://am:9093/#/silences?filter=%7Ba%3D%22b%22%7D&x=_y-z.~"),
            "http://am:9093/#/silences?filter=%7Ba%3D%22b%22%7D&x=_y-z.~"
        );
        assert_eq!(
            target("http://prom) **X** [L](http://evil/"),
            "http://prom%29%20**X**%20[L]%28http://evil/"
        );
        assert_eq!(target("h://a<b>\\`\"\t\n"), "h://a%3Cb%3E%5C%60%22%09%0A");
        assert_eq!(
            target("http://钉钉.cn/\u{3000}"),
            "http://%E9%92%89%E9%92%89.cn/%E3%80%80"
        );
        let once = target("http://x/(a b)%20");
        assert_eq!(once, "http://x/%28a%20b%29%20");
        assert_eq!(
            target(&once),
            once,
            "writing a target again changes nothing"
        );
    }

    #[test]
    fn link_schemes_are_web_and_dingtalk() {
        for url in [
            "http://x",
            "HTTPS://x",
            "dingtalk://dingtalkclient/page/link?url=x",
        ] {
            assert!(has_link_scheme(url), "{url}");
        }
        for url in [
            "javascript:alert('http://x')",
            "ftp://x",
            "//x",
            "/relative",
            "",
            "http:x",
        ] {
            assert!(!has_link_scheme(url), "{url}");
        }
    }

    #[test]
    fn control_characters_are_escaped_except_those_kept() {
        assert_eq!(
            escape_control("a\u{1b}[31mb\n\t\r"),
            "a\\u{1b}[31mb\\n\\t\\r"
        );
        assert!(matches!(
            escape_control("plain 文字"),
            Cow::Borrowed("plain 文字")
        ));
        assert_eq!(
            escape_control_except("a\u{7}\n\tb", &['\n', '\t']),
            "a\\u{7}\n\tb"
        );
    }
}

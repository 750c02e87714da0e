//! Small text helpers for what people read: one line, a bounded length, markdown that stays
//! literal, control characters made visible. Shared by the outbox listing, the answer classifier,
//! storm digests, the template filters and every message that quotes a file or a request, so they
//! all flatten, cut and escape the same way.

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

//! Small text helpers for what people read: one line, a bounded length, markdown that stays
//! literal. Shared by the outbox listing, the answer classifier, storm digests and the template
//! filters, so they all flatten, cut and escape the same way.

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
}

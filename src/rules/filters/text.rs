//! Filters over text: `md_escape`, `md_url`, `truncate_bytes`, `first_line`, `ref_name` and
//! `short_sha` (see the [filters' documentation](super)).

use minijinja::value::Value;

/// Makes untrusted text render literally inside DingTalk markdown, while staying readable: see
/// the module documentation for exactly what it escapes.
pub(super) fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start_matches([' ', '\t']);
        out.push_str(&line[..line.len() - body.len()]);
        let rest = escape_line_start(body, &mut out);
        crate::text::escape_markdown_inline(rest, &mut out);
    }
    out
}

/// Writes `line` up to the end of its block marker, escaped; returns the rest of the line.
fn escape_line_start<'a>(line: &'a str, out: &mut String) -> &'a str {
    let ends_marker = |rest: &str| rest.is_empty() || rest.starts_with([' ', '\t', '\r']);
    let bytes = line.as_bytes();
    match bytes.first() {
        Some(b'#') => {
            out.push_str("\\#");
            &line[1..]
        }
        Some(&c @ (b'-' | b'+' | b'=')) => {
            let rest = &line[1..];
            if ends_marker(rest) || rest.as_bytes().first() == Some(&c) {
                out.push('\\');
                out.push(char::from(c));
                rest
            } else {
                line
            }
        }
        Some(b'0'..=b'9') => {
            let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            let after = &line[digits..];
            match after.as_bytes().first() {
                Some(&p @ (b'.' | b')')) if digits <= 9 && ends_marker(&after[1..]) => {
                    out.push_str(&line[..digits]);
                    out.push('\\');
                    out.push(char::from(p));
                    &after[1..]
                }
                _ => line,
            }
        }
        _ => line,
    }
}

/// A URL made safe as a markdown link target, or `""` when `value` is not a string holding an
/// `http`, `https` or `dingtalk` URL: see the module documentation.
pub(super) fn md_url(value: &Value) -> String {
    let Some(url) = value.as_str() else {
        return String::new();
    };
    let url = url.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if !crate::text::has_link_scheme(url) {
        return String::new();
    }
    let mut out = String::with_capacity(url.len());
    crate::text::push_link_target(url, &mut out);
    out
}

/// Shortens `text` to at most `max` UTF-8 bytes including `marker`, cutting on a char boundary.
///
/// Text that fits is returned unchanged. When `max` is too small to hold even the marker, the text
/// is cut to `max` bytes without a marker.
pub(super) fn truncate_bytes(text: &str, max: usize, marker: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    if marker.len() > max {
        return floor_char_boundary(text, max).to_owned();
    }
    let kept = floor_char_boundary(text, max - marker.len());
    let mut out = String::with_capacity(kept.len() + marker.len());
    out.push_str(kept);
    out.push_str(marker);
    out
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn floor_char_boundary(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The first line of a text, without its line break: a commit's subject.
pub(super) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end()
}

/// `refs/heads/main` → `main`, `refs/tags/v1.2` → `v1.2`; other strings unchanged.
pub(super) fn ref_name(reference: &str) -> &str {
    reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
}

/// The first `n` characters of a commit hash.
pub(super) fn short_sha(sha: &str, n: usize) -> &str {
    match sha.char_indices().nth(n) {
        Some((end, _)) => &sha[..end],
        None => sha,
    }
}

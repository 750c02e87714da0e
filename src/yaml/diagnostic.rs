//! Rendering configuration errors the way rustc does: a `file:line:column: message` header, then
//! the offending line with a caret under the column.
//!
//! ```text
//! rules.yaml:12:9: unknown robot `opps` (known robots: ops, dev)
//!    |
//! 12 |     to: [opps]
//!    |         ^
//! ```
//!
//! Columns are counted in chars (see [`Location`]); the caret is placed by display width, so it
//! lines up under text with wide (CJK) characters, and tabs are shown as four spaces.
//!
//! Invariants: a shown line never carries a secret's value. The values of keys known to hold
//! secrets (`secret`, `bearer`, `password`, `token`, `reload_token`) and `access_token=` query
//! parameters are always replaced by `***`; a diagnostic with [`Diagnostic::mask_values`] also
//! hides every value from its location to the end of the line, keeping the keys, so the caret
//! still points at the same key.

use std::fmt;

use super::locate::{Location, Locations, Path};
use crate::text::escape_control_except;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is, when known.
    pub location: Option<Location>,
    /// What is wrong, for people: `unknown robot `opps` (known robots: ops, dev)`.
    pub message: String,
    /// Whether the shown line hides every value from the location on (`secrett: ***`): for a key
    /// where secrets live that nobody recognises, whose value may be a secret under a misspelled
    /// name. The key itself and the caret stay.
    pub mask_values: bool,
}

impl Diagnostic {
    /// A diagnostic without a location: about the file as a whole.
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: None,
            message: message.into(),
            mask_values: false,
        }
    }

    /// A diagnostic at `location`.
    pub fn at(location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: Some(location),
            message: message.into(),
            mask_values: false,
        }
    }

    /// A diagnostic about the node at `path`: at its value, or at its closest located ancestor
    /// (see [`Locations::nearest`]).
    pub fn at_value(locations: &Locations, path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(locations.nearest(path), message)
    }

    /// A diagnostic about the key of the mapping entry at `path` (a duplicate or unknown key):
    /// at the key, or where [`Diagnostic::at_value`] would put it when the key is not known.
    pub fn at_key(locations: &Locations, path: &Path, message: impl Into<String>) -> Diagnostic {
        let location = locations
            .key(path)
            .unwrap_or_else(|| locations.nearest(path));
        Diagnostic::at(location, message)
    }
}

/// `12:9: message`, or just the message without a location.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}

/// Renders `diagnostics` about `source` (the contents of `file_name`), separated by blank lines.
///
/// Each one is a `file:line:column: message` header followed, when the line exists in `source`,
/// by that line and a caret under the column; a diagnostic without a location is only
/// `file: message`. A column past the end of the line puts the caret just after the line.
/// Control characters in the shown line are replaced by `�`, so a hostile file cannot send
/// escape sequences to the terminal.
pub fn render(file_name: &str, source: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, file_name, source, diagnostic);
    }
    out
}

fn render_one(out: &mut String, file_name: &str, source: &str, diagnostic: &Diagnostic) {
    // Messages quote names from the file: control characters in them are shown escaped, never
    // sent to the terminal.
    let message = escape_control_except(&diagnostic.message, &['\n', '\t']);
    let Some(location) = diagnostic.location else {
        out.push_str(&format!("{file_name}: {message}\n"));
        return;
    };
    out.push_str(&format!(
        "{file_name}:{}:{}: {message}\n",
        location.line, location.column
    ));
    let Some(line) = location
        .line
        .checked_sub(1)
        .and_then(|index| source.split('\n').nth(index))
    else {
        return;
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let line = if location.line == 1 {
        line.strip_prefix('\u{feff}').unwrap_or(line)
    } else {
        line
    };

    // Masking first: it keeps everything before the column as it is, so the column still
    // points into the original text.
    let masked;
    let line = if diagnostic.mask_values {
        masked = mask_values_from(line, location.column);
        masked.as_str()
    } else {
        line
    };
    let line = redact(line);
    let line = line.as_str();

    let number = location.line.to_string();
    let gutter = " ".repeat(number.len());
    let mut shown = String::with_capacity(line.len());
    let mut caret_indent = 0;
    for (i, c) in line.chars().enumerate() {
        let (text, width) = display(c);
        match text {
            Some(text) => shown.push_str(text),
            None => shown.push(c),
        }
        if i + 1 < location.column {
            caret_indent += width;
        }
    }
    out.push_str(&format!("{gutter} |\n"));
    if shown.is_empty() {
        out.push_str(&format!("{number} |\n"));
    } else {
        out.push_str(&format!("{number} | {shown}\n"));
    }
    out.push_str(&format!("{gutter} | {}^\n", " ".repeat(caret_indent)));
}

/// Keys whose values are secrets: a config line shown in an error masks them, since `check`
/// output can end up in a journal.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "app_secret",
    "bearer",
    "password",
    "token",
    "reload_token",
];

/// The line with secret values replaced by `***`: the value of an `access_token=` query
/// parameter, and inline values of secret keys (`${VAR}` references and `log` are kept).
fn redact(line: &str) -> String {
    let mut line = line.to_owned();
    let mut from = 0;
    while let Some(found) = line[from..].find("access_token=") {
        let start = from + found + "access_token=".len();
        let end = line[start..]
            .find(['&', '"', '\'', ' ', '\t', '#', ',', '}'])
            .map_or(line.len(), |i| start + i);
        if end > start {
            line.replace_range(start..end, "***");
        }
        from = start + 3.min(line.len() - start);
    }
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(found) = line[from..].find(&format!("{key}:")) {
            let key_start = from + found;
            let value_start = key_start + key.len() + 1;
            from = value_start;
            let before = line[..key_start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &line[value_start..];
            let value_offset = rest.len() - rest.trim_start().len();
            let start = value_start + value_offset;
            let value = &line[start..];
            let end = match value.chars().next() {
                Some(q @ ('"' | '\'')) => value[1..].find(q).map_or(line.len(), |i| start + i + 2),
                _ => value
                    .find([',', '}', '#'])
                    .map_or(line.len(), |i| start + i),
            };
            let end = start + line[start..end].trim_end().len();
            let shown = line[start..end].trim_matches(['"', '\'']);
            if shown.is_empty() || shown.starts_with("${") || shown == "log" {
                continue;
            }
            line.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    line
}

/// The line with every value from the char column `column` (1-based) to the end of the line
/// replaced by `***`, keeping mapping keys, flow punctuation and spacing; a comment is dropped
/// (it could quote the value). A value begun on this line and continued on the next (a quoted
/// string, a flow collection) is hidden up to the end of this line.
///
/// A value is any scalar not followed by `:` (a scalar followed by `:` is a key), and anything
/// after a key's `:` outside flow collections; plain scalars end at the end of the line in block
/// context, and at `,`, `}`, `]` too inside a flow collection.
fn mask_values_from(line: &str, column: usize) -> String {
    let start = line
        .char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    let (kept, rest) = line.split_at(start);
    // The flow collections open where the column is: `{`/`[` before it, outside quotes, not
    // closed before it.
    let mut open = 0usize;
    let mut quote = None;
    for c in kept.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => open += 1,
            (None, '}' | ']') => open = open.saturating_sub(1),
            (None, '#') => break,
            _ => {}
        }
    }

    let chars: Vec<char> = rest.chars().collect();
    let mut out = String::from(kept);
    // In block context, what follows a key's `:` is its value, whatever it looks like.
    let mut block_value = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => {
                out.push(c);
                i += 1;
                continue;
            }
            '#' if i == 0 || chars[i - 1].is_whitespace() => break,
            '{' | '[' => {
                open += 1;
                out.push(c);
                i += 1;
                continue;
            }
            '}' | ']' | ',' if open > 0 => {
                if c != ',' {
                    open -= 1;
                }
                out.push(c);
                i += 1;
                continue;
            }
            ':' => {
                block_value |= open == 0;
                out.push(c);
                i += 1;
                continue;
            }
            _ => {}
        }
        // A scalar: quoted, or plain up to where its context ends it.
        let end = if c == '"' || c == '\'' {
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => break j,
                    Some('\\') if c == '"' => j += 2,
                    Some(&q) if q == c && c == '\'' && chars.get(j + 1) == Some(&'\'') => j += 2,
                    Some(&q) if q == c => break j + 1,
                    Some(_) => j += 1,
                }
            }
            .min(chars.len())
        } else {
            let mut j = i;
            while j < chars.len() {
                let next = chars.get(j + 1).copied();
                let ends_key = chars[j] == ':'
                    && next.is_none_or(|n| n.is_whitespace() || (open > 0 && ",}]".contains(n)));
                let ends_flow = open > 0 && ",}]".contains(chars[j]);
                let comment = j > i && chars[j] == '#' && chars[j - 1].is_whitespace();
                if ends_key || ends_flow || comment {
                    break;
                }
                j += 1;
            }
            // Trailing blanks belong to the spacing, not the value.
            while j > i && chars[j - 1].is_whitespace() {
                j -= 1;
            }
            j
        };
        let mut after = end;
        while chars.get(after).is_some_and(|c| *c == ' ' || *c == '\t') {
            after += 1;
        }
        if chars.get(after) == Some(&':') && !(open == 0 && block_value) {
            out.extend(&chars[i..end]); // a key
        } else {
            out.push_str("***");
        }
        i = end;
    }
    out.truncate(out.trim_end().len());
    out
}

/// How a char of the source line is shown: a replacement text if not itself, and its width.
fn display(c: char) -> (Option<&'static str>, usize) {
    match c {
        '\t' => (Some("    "), 4),
        c if c.is_control() || is_bidi_control(c) => (Some("\u{fffd}"), 1),
        c => (None, width(c)),
    }
}

/// Bidirectional overrides and isolates, which could make the shown line lie.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The terminal width of a char: 2 for East Asian wide and fullwidth characters (CJK, Hangul,
/// kana, fullwidth forms, most emoji), 0 for combining marks and zero-width characters, else 1.
fn width(c: char) -> usize {
    match u32::from(c) {
        0x0300..=0x036f | 0x200b..=0x200f | 0xfe00..=0xfe0f | 0xfe20..=0xfe2f => 0,
        0x1100..=0x115f
        | 0x2e80..=0x303e
        | 0x3041..=0x33ff
        | 0x3400..=0x4dbf
        | 0x4e00..=0x9fff
        | 0xa000..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize, message: &str) -> Diagnostic {
        Diagnostic::at(Location { line, column }, message)
    }

    #[test]
    fn renders_like_rustc() {
        let mut source: String = (1..=11).map(|i| format!("# line {i}\n")).collect();
        source.push_str("    to: [opps]\n");
        let out = render(
            "rules.yaml",
            &source,
            &[at(12, 9, "unknown robot `opps` (known robots: ops, dev)")],
        );
        assert_eq!(
            out,
            "\
rules.yaml:12:9: unknown robot `opps` (known robots: ops, dev)
   |
12 |     to: [opps]
   |         ^
"
        );
    }

    #[test]
    fn without_location() {
        assert_eq!(
            render("rules.yaml", "a: 1\n", &[Diagnostic::new("no rules")]),
            "rules.yaml: no rules\n"
        );
    }

    #[test]
    fn caret_lines_up_under_wide_characters() {
        let source = "robots:\n  name: \"钉钉告警\" x: [opps]\n";
        // `x` is char 16 of its line (1-based), after 4 CJK characters of width 2.
        let out = render("rules.yaml", source, &[at(2, 16, "bad")]);
        let expected = format!(
            "rules.yaml:2:16: bad\n  |\n2 |   name: \"钉钉告警\" x: [opps]\n  | {}^\n",
            // 15 chars before the column, 4 of them two columns wide.
            " ".repeat(19)
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn several_diagnostics_tabs_crlf_and_bom() {
        let source = "\u{feff}a: 1\r\n\tb: 2\r\n";
        let out = render(
            "f.yaml",
            source,
            &[at(1, 4, "one"), at(2, 2, "two"), Diagnostic::new("three")],
        );
        assert_eq!(
            out,
            "\
f.yaml:1:4: one
  |
1 | a: 1
  |    ^

f.yaml:2:2: two
  |
2 |     b: 2
  |     ^

f.yaml: three
"
        );
    }

    #[test]
    fn odd_locations_do_not_panic() {
        let source = "a: 1\n";
        let out = render("f.yaml", source, &[at(1, 40, "past the end")]);
        assert!(out.ends_with("1 | a: 1\n  |     ^\n"), "{out}");
        let out = render("f.yaml", source, &[at(2, 1, "at the end")]);
        assert_eq!(out, "f.yaml:2:1: at the end\n  |\n2 |\n  | ^\n");
        assert_eq!(
            render("f.yaml", source, &[at(9, 1, "gone")]),
            "f.yaml:9:1: gone\n"
        );
        assert_eq!(
            render("f.yaml", source, &[at(0, 0, "zero")]),
            "f.yaml:0:0: zero\n"
        );
        let out = render("f.yaml", "x: \u{1b}[31m\u{202e}", &[at(1, 1, "escape")]);
        assert!(out.contains("1 | x: \u{fffd}[31m\u{fffd}\n"), "{out}");
        assert_eq!(render("f.yaml", "", &[]), "");
    }

    #[test]
    fn constructors_use_locations() {
        let locations = Locations::index("rules:\n  - to: [opps]\n");
        let to = Path::root().key("rules").index(0).key("to");
        let d = Diagnostic::at_value(&locations, &to.index(0), "unknown robot");
        assert_eq!(
            d.location,
            Some(Location {
                line: 2,
                column: 10
            })
        );
        let d = Diagnostic::at_key(&locations, &to, "bad key");
        assert_eq!(d.location, Some(Location { line: 2, column: 5 }));
        let d = Diagnostic::at_key(&locations, &to.key("missing"), "missing");
        assert_eq!(d.location, Some(Location { line: 2, column: 9 }));
        assert_eq!(d.to_string(), "2:9: missing");
        assert_eq!(Diagnostic::new("plain").to_string(), "plain");
    }

    #[test]
    fn mask_values_hides_every_value_from_the_column_and_keeps_the_keys() {
        let cases = [
            // (line, column, shown)
            ("    secrett: SECabc", 5, "    secrett: ***"),
            ("    secrett: \"SEC abc\" # SECabc", 5, "    secrett: ***"),
            ("    secrett: 'it''s: SEC' ", 5, "    secrett: ***"),
            ("    secrett: a: b", 5, "    secrett: ***: ***"),
            ("    secrett: |", 5, "    secrett: ***"),
            ("    secrett:", 5, "    secrett:"),
            ("    secrett:   # note", 5, "    secrett:"),
            (
                "    extra: {tokn: abc, more: [x, \"y,z\"]}",
                5,
                "    extra: {tokn: ***, more: [***, ***]}",
            ),
            (
                "  am: { kind: json, auth: { tokn: abc, user: \"b}c\" } }",
                29,
                "  am: { kind: json, auth: { tokn: ***, user: *** } }",
            ),
            (
                "  a: { tokn: http://x/y?z=1, k: v }",
                8,
                "  a: { tokn: ***, k: *** }",
            ),
            ("  a: { \"tokn\": abc }", 8, "  a: { \"tokn\": *** }"),
            ("  a: { tokn: \"unterminated, k: v", 8, "  a: { tokn: ***"),
            ("密钥: 钉钉 #x", 1, "密钥: ***"),
        ];
        for (line, column, shown) in cases {
            assert_eq!(mask_values_from(line, column), shown, "{line}");
        }
        // Rendered: the caret stays under the key.
        let mut diagnostic = at(1, 5, "unknown field `secrett`");
        diagnostic.mask_values = true;
        assert_eq!(
            render(
                "rules.yaml",
                "    secrett: SECabc # SECabc\n",
                &[diagnostic]
            ),
            "rules.yaml:1:5: unknown field `secrett`\n  |\n1 |     secrett: ***\n  |     ^\n"
        );
    }

    #[test]
    fn secrets_in_the_shown_line_are_masked() {
        let source = "    webhook: https://oapi.dingtalk.com/robot/send?access_token=abc123&x=1\n  a: { bearer: \"t0k\", kind: json }\n    secret: ${S:-}\n    secret: SECxyz # note\n";
        let diagnostics: Vec<Diagnostic> = (1..=4)
            .map(|line| Diagnostic::at(Location { line, column: 5 }, "problem"))
            .collect();
        let rendered = render("rules.yaml", source, &diagnostics);
        for secret in ["abc123", "t0k", "SECxyz"] {
            assert!(!rendered.contains(secret), "{secret} shown:\n{rendered}");
        }
        assert!(rendered.contains("access_token=***&x=1"), "{rendered}");
        assert!(rendered.contains("bearer: ***, kind: json"), "{rendered}");
        assert!(
            rendered.contains("secret: ${S:-}"),
            "references are kept: {rendered}"
        );
        assert!(rendered.contains("secret: *** # note"), "{rendered}");
        let rendered = render(
            "rules.yaml",
            "reload_token: s3cret-value\n",
            &[at(1, 1, "duplicate key `reload_token`")],
        );
        assert!(rendered.contains("1 | reload_token: ***\n"), "{rendered}");
    }
}

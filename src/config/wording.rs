//! serde's errors in the words of `rules.yaml`: serde knows the Rust types the file is read into
//! (`RawRobot`, `OneOrMany`, an untagged enum), a person knows robots, rules and keys. Every
//! error serde reports while reading the file passes through [`explain`], which says what the
//! key takes, points at the line that is actually wrong (a mis-indented key rather than the rule
//! it left), and never names a Rust type.
//!
//! Invariant: a value is quoted back only outside `robots:` and `sources:`, where secrets live;
//! there the shown line is masked too.

use crate::yaml::locate::Segment;
use crate::yaml::{Diagnostic, Location, Locations, Path};

/// Words that name Rust types or serde internals: never in a message to a person.
pub const RUST_WORDS: &[&str] = &[
    "Raw",
    "OneOrMany",
    "untagged",
    "struct",
    "variant",
    "enum ",
    " u8",
    " u16",
    " u32",
    " u64",
    " usize",
    " i32",
    " i64",
    " f64",
];

/// Keys of a rule, a robot and a source: a top-level key with one of these names was meant
/// to be inside one.
const RULE_KEYS: &[&str] = &[
    "name",
    "source",
    "when",
    "to",
    "stop",
    "per_alert",
    "template",
    "text",
    "link",
    "markdown",
    "action_card",
    "feed_card",
    "at",
];
const ROBOT_KEYS: &[&str] = &[
    "webhook",
    "webhook_file",
    "secret",
    "secret_file",
    "keywords",
    "allow_host",
    "rate_per_minute",
    "throttle_penalty",
    "max_age",
    "digest",
    "digest_after",
];
const SOURCE_KEYS: &[&str] = &[
    "kind",
    "path",
    "auth",
    "signature_header",
    "timestamp_header",
    "dedup",
];

/// A serde error about another file than `rules.yaml` (a rule test file) with the names of Rust
/// types and serde internals put in plain words.
pub fn plain(mut diagnostic: Diagnostic) -> Diagnostic {
    diagnostic.message = scrub(&diagnostic.message);
    diagnostic
}

/// A serde error about `text` (indexed as `locations`) rewritten for people.
pub fn explain(diagnostic: Diagnostic, text: &str, locations: &Locations) -> Diagnostic {
    let (prefix, inner) = split_path(&diagnostic.message);
    let path = diagnostic
        .location
        .and_then(|location| locations.path_at(location))
        .unwrap_or_else(|| parse_path(prefix));
    let secret_zone = in_secret_zone(&path);
    let mut explained = Diagnostic {
        mask_values: diagnostic.mask_values || secret_zone,
        ..diagnostic.clone()
    };
    let named = |message: String| {
        if prefix.is_empty() {
            message
        } else {
            format!("{prefix}: {message}")
        }
    };

    if inner.contains("untagged enum OneOrMany") {
        let to = path.key("to");
        explained.location = locations
            .key(&to)
            .or(locations.value(&to))
            .or(diagnostic.location);
        explained.message = named(
            "`to` must be a robot name or a list of robot names, like `to: ops` or `to: [ops, dev]`"
                .to_owned(),
        );
    } else if inner.contains("untagged enum BodySize") {
        explained.message = named(
            "`body_limit` must be a size like 26MiB or 512KiB, or a number of bytes".to_owned(),
        );
    } else if let Some(rest) = inner.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let found = found_words(found, secret_zone);
        explained.message = wrong_type(&path, prefix, &found, expected);
    } else if let Some(rest) = inner.strip_prefix("unknown variant ") {
        explained.message = named(format!("unknown value {rest}"));
    } else if let Some(field) = between(inner, "missing field `", "`") {
        explained.message = named(format!("missing field `{field}`"));
        if let Some(location) = diagnostic.location
            && let Some(dedented) = dedented_key(text, location, field)
        {
            explained.location = Some(dedented);
            explained.message = named(format!(
                "`{field}` is indented less than the other keys here (line {}), so it is not part of this mapping, which lacks it: it is probably mis-indented; indent it to column {}",
                location.line, location.column
            ));
        }
    } else if let Some(field) = between(inner, "unknown field `", "`") {
        let meant = if path.segments().len() <= 1 || prefix.is_empty() {
            if RULE_KEYS.contains(&field) {
                Some("a rule's")
            } else if ROBOT_KEYS.contains(&field) {
                Some("a robot's")
            } else if SOURCE_KEYS.contains(&field) {
                Some("a source's")
            } else {
                None
            }
        } else {
            None
        };
        if let Some(whose) = meant {
            explained.message = format!(
                "{}; `{field}` is {whose} key: it is probably mis-indented",
                diagnostic.message
            );
        }
    } else if inner.contains("more than one document") {
        explained.message =
            "the file holds more than one YAML document (a `---` line?): keep one".to_owned();
    } else if inner.contains("while parsing a block")
        || inner.contains("mapping values are not allowed")
    {
        let cause = inner.split(" at line ").next().unwrap_or(inner);
        let rest = inner
            .split_once(", while ")
            .map(|(_, rest)| format!(", while {rest}"))
            .unwrap_or_default();
        explained.message = format!(
            "{cause}{rest}: this line is probably mis-indented (keys of one mapping must line up; list items start with `- `)"
        );
    }
    explained.message = scrub(&explained.message);
    explained
}

/// `rules[0]: missing field `to`` → (`rules[0]`, `missing field `to``); no prefix → ("", all).
fn split_path(message: &str) -> (&str, &str) {
    match message.split_once(": ") {
        Some((prefix, inner))
            if !prefix.is_empty()
                && !prefix.contains(' ')
                && !prefix.contains('`')
                && !prefix.contains('"') =>
        {
            (prefix, inner)
        }
        _ => ("", message),
    }
}

/// serde_yaml's path text (`rules[0].to`, `robots.ops`) as a [`Path`], for when the location
/// does not name a node.
fn parse_path(text: &str) -> Path {
    let mut path = Path::root();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            path = path.key(key);
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(index) => path = path.index(index),
                Err(_) => path = path.key(index.trim_end_matches(']')),
            }
        }
    }
    path
}

/// Anywhere under `robots:` or `sources:`, or a top-level secret: a value there may be a secret.
fn in_secret_zone(path: &Path) -> bool {
    match path.segments() {
        [Segment::Key(section), ..] => {
            section == "robots" || section == "sources" || section.starts_with("reload_token")
        }
        _ => false,
    }
}

/// serde's description of what it found, for people; values kept back where secrets live.
fn found_words(found: &str, secret_zone: bool) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|value| value.trim_matches('`').to_owned())
    };
    if found == "unit value" {
        return "empty".to_owned();
    }
    if found == "map" {
        return "a mapping".to_owned();
    }
    if found == "sequence" {
        return "a list".to_owned();
    }
    if let Some(value) = quoted("string ") {
        return if secret_zone {
            "a string".to_owned()
        } else {
            format!("the string {value}")
        };
    }
    for (prefix, what) in [
        ("integer ", "the number"),
        ("floating point ", "the number"),
        ("boolean ", "the boolean"),
    ] {
        if let Some(value) = quoted(prefix) {
            return if secret_zone {
                format!("a {}", what.trim_start_matches("the "))
            } else {
                format!("{what} {value}")
            };
        }
    }
    found.to_owned()
}

/// What a key takes, from serde's `expected ...`.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a string" => "a string",
        "a boolean" => "true or false",
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => "a whole number",
        "struct RawText" => "a mapping with `content:`",
        "struct RawMarkdown" => "a mapping with `title:` and `text:`",
        "struct RawLink" => "a mapping with `title:`, `text:` and `message_url:`",
        "struct RawActionCard" => "a mapping with `title:`, `text:` and buttons",
        "struct RawFeedCard" => "a mapping with `links:`",
        "struct RawAt" => "a mapping with `mobiles:`, `user_ids:` or `all:`",
        "struct RawAuth" => "a mapping with `bearer:` or `basic:`",
        "struct RawBasic" => "a mapping with `username:` and `password:`",
        "struct RawButton" => "a mapping with `title:` and `url:`",
        other if other.starts_with("struct ") => "a mapping",
        other if other.starts_with("enum ") => "one of its allowed values",
        other => other,
    };
    words.to_owned()
}

/// The message for a value of the wrong type at `path`.
fn wrong_type(path: &Path, prefix: &str, found: &str, expected: &str) -> String {
    let not = if found == "empty" {
        "it is empty".to_owned()
    } else {
        format!("not {found}")
    };
    match (path.segments(), expected) {
        ([Segment::Key(section), Segment::Key(name)], "struct RawRobot") if section == "robots" => {
            let mut message = format!(
                "robot `{name}` must be a mapping with `webhook:` (and optionally `secret:`, `keywords:` ...), {not}"
            );
            if ROBOT_KEYS.contains(&name.as_str()) {
                message.push_str(&format!(
                    "; `{name}` is a robot's key: it is probably mis-indented (it belongs under a robot's name)"
                ));
            }
            message
        }
        ([Segment::Key(section), Segment::Key(name)], "struct RawSource")
            if section == "sources" =>
        {
            let mut message = format!(
                "source `{name}` must be a mapping with `kind:` (alertmanager, grafana, github, gitlab or json), {not}"
            );
            if SOURCE_KEYS.contains(&name.as_str()) {
                message.push_str(&format!(
                    "; `{name}` is a source's key: it is probably mis-indented (it belongs under a source's name)"
                ));
            }
            message
        }
        (_, "struct RawRule") => format!(
            "{prefix}: a rule must be a mapping with `name:`, `source:`, `to:` and a message, {not}"
        ),
        ([], "struct RawConfig") => format!(
            "the file must be a mapping of settings (`robots:`, `sources:`, `rules:` ...), {not}"
        ),
        _ => {
            let key = match path.segments().last() {
                Some(Segment::Key(key)) => format!("`{key}`"),
                _ => "this value".to_owned(),
            };
            let what = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}: ")
            };
            format!("{what}{key} must be {}, {not}", expected_words(expected))
        }
    }
}

/// The text between `start` and the next `end` in `text`.
fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The key `field:` on a line after `mapping` (where a mapping lacking it starts), indented less
/// than the mapping's keys: the key that was meant for it but landed outside.
fn dedented_key(text: &str, mapping: Location, field: &str) -> Option<Location> {
    let keys_indent = mapping.column.checked_sub(1)?;
    text.split('\n')
        .enumerate()
        .skip(mapping.line)
        .find_map(|(index, line)| {
            let content = line.trim_start_matches(' ');
            let indent = line.len() - content.len();
            let key = content.strip_prefix(field)?;
            let is_key = key.trim_start_matches(' ').starts_with(':');
            (is_key && indent < keys_indent).then_some(Location {
                line: index + 1,
                column: indent + 1,
            })
        })
}

/// Any Rust type name left, in words: the last line of defence of [`RUST_WORDS`].
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut words = message.split(' ').peekable();
    let mut first = true;
    while let Some(word) = words.next() {
        let word = match word {
            "struct" | "enum" => {
                // `struct RawRobot` → `a mapping`; `untagged enum X` has been said above.
                words.next();
                "a mapping"
            }
            "untagged" => continue,
            "variant" => "value",
            "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => "a whole number",
            "f32" | "f64" => "a number",
            w if w
                .trim_matches(|c: char| !c.is_alphanumeric())
                .starts_with("Raw") =>
            {
                "a mapping"
            }
            w => w,
        };
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(word);
    }
    out.replace("OneOrMany", "a name or a list of names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_serde_prints_them() {
        assert_eq!(
            parse_path("rules[2].to").to_string(),
            Path::root().key("rules").index(2).key("to").to_string()
        );
        assert_eq!(parse_path("").to_string(), "");
    }

    #[test]
    fn a_dedented_key_is_found_below_its_mapping() {
        let text = "rules:\n  - name: a\n    source: b\n  to: c\n";
        let at = Location { line: 2, column: 5 };
        assert_eq!(
            dedented_key(text, at, "to"),
            Some(Location { line: 4, column: 3 })
        );
        // A key at the mapping's own indentation is some other mapping's.
        let text = "rules:\n  - name: a\n  - name: b\n    to: c\n";
        assert_eq!(dedented_key(text, at, "to"), None);
    }

    #[test]
    fn scrub_leaves_no_rust_words() {
        let scrubbed = scrub("invalid type: map, expected struct RawRobot or enum Kind variant");
        for word in RUST_WORDS {
            assert!(!scrubbed.contains(word), "{scrubbed}");
        }
    }
}

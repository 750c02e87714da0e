//! Template filters that `rules.yaml` templates can use, on top of minijinja's built-in ones.
//!
//! [`register`] adds them to an [`Environment`]:
//!
//! | filter | example | result |
//! |---|---|---|
//! | `datetime(format="%Y-%m-%d %H:%M:%S")` | `{{ alert.startsAt \| datetime("%H:%M") }}` | `14:31` |
//! | `since(until=none)` | `{{ alert.startsAt \| since }}` | `3h 12m` |
//! | `duration` | `{{ 3725 \| duration }}` | `1h 2m` |
//! | `md_escape` | `{{ commit.message \| md_escape }}` | text that renders literally in DingTalk markdown |
//! | `truncate_bytes(n, marker="…")` | `{{ text \| truncate_bytes(2000) }}` | at most 2000 bytes |
//! | `label_pairs(sep=", ", kv="=", exclude=[])` | `{{ alert.labels \| label_pairs }}` | `alertname=Disk, severity=critical` |
//! | `ref_name` | `{{ ref \| ref_name }}` | `main` for `refs/heads/main` |
//! | `short_sha(n=7)` | `{{ sha \| short_sha }}` | `9fceb02` |
//! | `distinct_labels(common, keys=...)` | `{{ alert.labels \| distinct_labels(commonLabels) \| join(" · ") }}` | `DiskFull · instance=db2` ([`super::alert_labels`]) |
//! | `silence_url(base, keys=...)` | `{{ alert.labels \| silence_url(externalURL) }}` | Alertmanager's new-silence page for the alert ([`super::alert_labels`]) |
//!
//! Every optional argument can be given by position or by keyword (`datetime(format="%H:%M")`).
//!
//! # Times
//!
//! `datetime` and `since` read a time from:
//! - an RFC 3339 string, with `Z` or an offset and up to nanosecond precision, as sent by
//!   Alertmanager, Grafana and GitHub (`2024-05-01T12:00:00.123456789Z`);
//! - GitLab's `2015-04-20 14:31:42 UTC` and `2015-04-20 14:31:42 +0200` forms (fractional seconds
//!   allowed);
//! - a Unix time as a number or a string of digits: seconds, or milliseconds when the value is
//!   greater than 10^11 (a seconds value that large would be past the year 5000).
//!
//! Go's zero time `0001-01-01T00:00:00Z` (the `endsAt` of a firing Alertmanager alert), `none`,
//! undefined and the empty string mean "no time": both filters render them as an empty string,
//! except that a "no time" `until` makes `since` count up to now, so
//! `{{ alert.startsAt | since(alert.endsAt) }}` works for firing and resolved alerts alike.
//! Anything else that cannot be read as a time is a template error that names the value.
//!
//! "Now" is the `now` template variable (a time in any of the forms above, which the renderer
//! sets so that one message uses one "now" and tests can fix it), or the clock when it is absent.
//!
//! Durations (`since`, `duration`) show the two largest non-zero units among days, hours,
//! minutes and seconds (`3h 12m`, `2d 4h`, `2d 5m`, `45s`); fractions of a second are dropped and
//! zero or negative durations are `0s`. `duration` takes a number of seconds (or a string holding
//! one); `none`/undefined render as an empty string.
//!
//! # `md_escape`
//!
//! Makes untrusted text (commit messages, alert descriptions) render literally inside DingTalk
//! markdown, while staying readable. Exactly what it does:
//! - everywhere: `\` `` ` `` `*` `_` `[` `]` get a backslash in front (no emphasis, code spans,
//!   links or images); `<` and `>` become `&lt;` and `&gt;` (no HTML, no autolinks, and no
//!   quote marker at the start of a line);
//! - at the start of a line, after any spaces or tabs:
//!   - `#` gets a backslash (no heading);
//!   - `-`, `+` and `=` get a backslash when followed by a space, a tab, the end of the line or
//!     the same character (no list item, rule or setext heading underline; `-5` is left alone);
//!   - in up to nine digits followed by `.` or `)` and then a space, a tab or the end of the line,
//!     the `.`/`)` gets a backslash (no ordered list; `3.14` is left alone).
//!
//! Everything else, `&` included, is left as it is, and so are line breaks.

use std::borrow::Cow;
use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// The default `datetime` format: `2024-05-01 20:00:00`.
const DEFAULT_DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Unix times above this are taken as milliseconds rather than seconds.
const MILLISECONDS_THRESHOLD: i128 = 100_000_000_000;

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) as Unix seconds.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Registers dingrelay's filters on `env`; times are formatted in `tz`.
///
/// See the [module documentation](self) for the list and what each filter does.
pub fn register(env: &mut Environment<'_>, tz: TimeZone) {
    env.add_filter(
        "datetime",
        move |value: Value, format: Option<String>, kwargs: Kwargs| {
            datetime(&tz, &value, format, &kwargs)
        },
    );
    env.add_filter(
        "since",
        |state: &State, value: Value, until: Option<Value>, kwargs: Kwargs| {
            since(state, &value, until, &kwargs)
        },
    );
    env.add_filter("duration", |value: Value| duration(&value));
    env.add_filter("md_escape", |value: Cow<'_, str>| md_escape(&value));
    env.add_filter(
        "truncate_bytes",
        |value: Cow<'_, str>, n: Option<usize>, marker: Option<String>, kwargs: Kwargs| {
            let n = required("truncate_bytes", "n", arg("n", n, &kwargs)?)?;
            let marker = arg("marker", marker, &kwargs)?;
            kwargs.assert_all_used()?;
            Ok::<_, Error>(truncate_bytes(&value, n, marker.as_deref().unwrap_or("…")))
        },
    );
    env.add_filter(
        "label_pairs",
        |value: Value,
         sep: Option<String>,
         kv: Option<String>,
         exclude: Option<Value>,
         kwargs: Kwargs| {
            let sep = arg("sep", sep, &kwargs)?;
            let kv = arg("kv", kv, &kwargs)?;
            let exclude = arg("exclude", exclude, &kwargs)?;
            kwargs.assert_all_used()?;
            label_pairs(
                &value,
                sep.as_deref().unwrap_or(", "),
                kv.as_deref().unwrap_or("="),
                exclude.as_ref(),
            )
        },
    );
    env.add_filter("ref_name", |value: Cow<'_, str>| {
        ref_name(&value).to_owned()
    });
    env.add_filter("first_line", |value: Cow<'_, str>| {
        first_line(&value).to_owned()
    });
    env.add_filter(
        "short_sha",
        |value: Cow<'_, str>, n: Option<usize>, kwargs: Kwargs| {
            let n = arg("n", n, &kwargs)?;
            kwargs.assert_all_used()?;
            Ok::<_, Error>(short_sha(&value, n.unwrap_or(7)).to_owned())
        },
    );
    super::alert_labels::register(env);
}

/// An optional filter argument that may be given by position or by keyword, but not both.
pub(super) fn arg<'k, T>(
    name: &'k str,
    positional: Option<T>,
    kwargs: &'k Kwargs,
) -> Result<Option<T>, Error>
where
    T: minijinja::value::ArgType<'k, Output = T>,
{
    let keyword: Option<T> = kwargs.get(name)?;
    match (positional, keyword) {
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("argument `{name}` given both by position and by keyword"),
        )),
        (Some(value), None) | (None, Some(value)) => Ok(Some(value)),
        (None, None) => Ok(None),
    }
}

/// Fails with "missing argument" when a required argument is absent.
fn required<T>(filter: &str, name: &str, value: Option<T>) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingArgument,
            format!("`{filter}` needs the argument `{name}`"),
        )
    })
}

pub(super) fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `datetime(value, format="%Y-%m-%d %H:%M:%S")`: formats a time in the configured zone.
fn datetime(
    tz: &TimeZone,
    value: &Value,
    format: Option<String>,
    kwargs: &Kwargs,
) -> Result<String, Error> {
    let format = arg("format", format, kwargs)?;
    kwargs.assert_all_used()?;
    let format = format.as_deref().unwrap_or(DEFAULT_DATETIME_FORMAT);
    let Some(ts) = read_time("datetime", value)? else {
        return Ok(String::new());
    };
    let zoned = ts.to_zoned_datetime(tz.clone());
    jiff::fmt::strtime::format(format, &zoned)
        .map_err(|err| invalid(format!("datetime: bad format {format:?}: {err}")))
}

/// `since(value, until=none)`: the human duration from `value` to `until`, or to `now`.
fn since(
    state: &State,
    value: &Value,
    until: Option<Value>,
    kwargs: &Kwargs,
) -> Result<String, Error> {
    let until = arg("until", until, kwargs)?;
    kwargs.assert_all_used()?;
    let Some(from) = read_time("since", value)? else {
        return Ok(String::new());
    };
    let to = match until.as_ref().map(|u| read_time("since", u)).transpose()? {
        Some(Some(to)) => to,
        // `until` not given, or an empty time (say, the `endsAt` of a firing alert): up to now.
        None | Some(None) => now(state)?,
    };
    Ok(human_duration(to.duration_since(from)))
}

/// The `now` template variable, or the real current time when the context has none.
fn now(state: &State) -> Result<Timestamp, Error> {
    match state.lookup("now") {
        Some(value) if !value.is_undefined() && !value.is_none() => {
            read_time("since: the `now` variable", &value)?
                .ok_or_else(|| invalid("since: the `now` variable is empty".to_owned()))
        }
        _ => Ok(Timestamp::now()),
    }
}

/// `duration(value)`: a number of seconds, as a human duration.
fn duration(value: &Value) -> Result<String, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    let seconds = match value.kind() {
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::String => value.as_str().and_then(|s| s.trim().parse::<f64>().ok()),
        _ => None,
    };
    match seconds {
        Some(seconds) if seconds.is_finite() => {
            let duration = SignedDuration::try_from_secs_f64(seconds).unwrap_or(if seconds < 0.0 {
                SignedDuration::MIN
            } else {
                SignedDuration::MAX
            });
            Ok(human_duration(duration))
        }
        _ => Err(invalid(format!(
            "duration: cannot read {value:?} as a number of seconds"
        ))),
    }
}

/// Formats a duration with its two largest non-zero units among days, hours, minutes and seconds:
/// `3h 12m`, `2d 4h`, `2d 5m`, `12m 5s`, `45s`. Fractions of a second are dropped; zero and
/// negative durations are `0s`.
fn human_duration(duration: SignedDuration) -> String {
    let total = duration.as_secs();
    if total <= 0 {
        return "0s".to_owned();
    }
    let parts = [
        (total / 86_400, 'd'),
        (total % 86_400 / 3_600, 'h'),
        (total % 3_600 / 60, 'm'),
        (total % 60, 's'),
    ];
    let mut out = String::new();
    for (amount, unit) in parts.iter().filter(|(amount, _)| *amount != 0).take(2) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{amount}{unit}");
    }
    out
}

/// Reads a time from a template value; `Ok(None)` for the "no time" values (see the module docs).
fn read_time(filter: &str, value: &Value) -> Result<Option<Timestamp>, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(None);
    }
    let ts = match value.kind() {
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim();
            if text.is_empty() {
                return Ok(None);
            }
            parse_time_str(text)
        }
        ValueKind::Number if value.is_integer() => {
            i128::try_from(value.clone()).ok().and_then(unix_time)
        }
        ValueKind::Number => f64::try_from(value.clone()).ok().and_then(unix_time_float),
        _ => None,
    };
    match ts {
        Some(ts) if is_go_zero_time(ts) => Ok(None),
        Some(ts) => Ok(Some(ts)),
        None => Err(invalid(format!(
            "{filter}: cannot read {value:?} as a time (expected RFC 3339 such as \
             \"2024-05-01T12:00:00Z\", \"2024-05-01 12:00:00 UTC\", \
             \"2024-05-01 12:00:00 +0200\" or a Unix time)"
        ))),
    }
}

fn is_go_zero_time(ts: Timestamp) -> bool {
    ts.as_second() == GO_ZERO_TIME_SECONDS && ts.subsec_nanosecond() == 0
}

/// Parses the string forms of a time listed in the module docs.
fn parse_time_str(text: &str) -> Option<Timestamp> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.len() <= 30 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i128>().ok().and_then(unix_time);
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    // GitLab: "2015-04-20 14:31:42 UTC".
    if let Some(civil) = text.strip_suffix(" UTC") {
        let with_offset = format!("{civil} +0000");
        return Timestamp::strptime("%Y-%m-%d %H:%M:%S%.f %z", with_offset).ok();
    }
    // GitLab: "2015-04-20 14:31:42 +0200" (and "+02:00").
    Timestamp::strptime("%Y-%m-%d %H:%M:%S%.f %z", text)
        .or_else(|_| Timestamp::strptime("%Y-%m-%d %H:%M:%S%.f %:z", text))
        .ok()
}

/// A Unix time in seconds, or in milliseconds when greater than 10^11.
fn unix_time(value: i128) -> Option<Timestamp> {
    if value > MILLISECONDS_THRESHOLD {
        Timestamp::from_millisecond(i64::try_from(value).ok()?).ok()
    } else {
        Timestamp::from_second(i64::try_from(value).ok()?).ok()
    }
}

/// A fractional Unix time, with the same seconds/milliseconds rule as [`unix_time`].
fn unix_time_float(value: f64) -> Option<Timestamp> {
    if !value.is_finite() {
        return None;
    }
    let seconds = if value > MILLISECONDS_THRESHOLD as f64 {
        value / 1000.0
    } else {
        value
    };
    let duration = SignedDuration::try_from_secs_f64(seconds).ok()?;
    Timestamp::from_duration(duration).ok()
}

/// Makes untrusted text render literally inside DingTalk markdown, while staying readable: see
/// the module documentation for exactly what it escapes.
fn md_escape(text: &str) -> String {
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

/// Shortens `text` to at most `max` UTF-8 bytes including `marker`, cutting on a char boundary.
///
/// Text that fits is returned unchanged. When `max` is too small to hold even the marker, the text
/// is cut to `max` bytes without a marker.
fn truncate_bytes(text: &str, max: usize, marker: &str) -> String {
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

/// `label_pairs`: `key=value` pairs of a map, in the map's order, minus the `exclude`d keys.
fn label_pairs(
    value: &Value,
    sep: &str,
    kv: &str,
    exclude: Option<&Value>,
) -> Result<String, Error> {
    if value.kind() != ValueKind::Map {
        return Err(invalid(format!(
            "label_pairs: expected a map (such as an alert's labels), got {} {value:?}",
            value.kind()
        )));
    }
    let excluded: Vec<String> = match exclude {
        None => Vec::new(),
        Some(list) if list.kind() == ValueKind::String => vec![list.to_string()],
        Some(list) => list
            .try_iter()
            .map_err(|_| {
                invalid(format!(
                    "label_pairs: `exclude` must be a list of keys, got {list:?}"
                ))
            })?
            .map(|key| key.to_string())
            .collect(),
    };
    let mut out = String::new();
    for key in value.try_iter()? {
        let name = key.to_string();
        if excluded.contains(&name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(sep);
        }
        let _ = write!(out, "{name}{kv}{}", value.get_item(&key)?);
    }
    Ok(out)
}

/// `refs/heads/main` → `main`, `refs/tags/v1.2` → `v1.2`; other strings unchanged.
/// The first line of a text, without its line break: a commit's subject.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end()
}

fn ref_name(reference: &str) -> &str {
    reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
}

/// The first `n` characters of a commit hash.
fn short_sha(sha: &str, n: usize) -> &str {
    match sha.char_indices().nth(n) {
        Some((end, _)) => &sha[..end],
        None => sha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn env(tz: &str) -> Environment<'static> {
        let mut env = Environment::new();
        register(&mut env, TimeZone::get(tz).expect("known time zone"));
        env
    }

    fn render(template: &str, ctx: Value) -> String {
        env("UTC")
            .render_str(template, ctx)
            .unwrap_or_else(|err| panic!("{template}: {err:#}"))
    }

    fn render_err(template: &str, ctx: Value) -> String {
        match env("UTC").render_str(template, ctx) {
            Ok(out) => panic!("{template}: expected an error, got {out:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn datetime_reads_all_time_forms() {
        let cases = [
            ("2015-04-20T14:31:42Z", "2015-04-20 14:31:42"),
            ("2015-04-20T14:31:42.123456789Z", "2015-04-20 14:31:42"),
            ("2015-04-20T16:31:42+02:00", "2015-04-20 14:31:42"),
            ("2015-04-20 14:31:42 UTC", "2015-04-20 14:31:42"),
            ("2015-04-20 16:31:42 +0200", "2015-04-20 14:31:42"),
            ("2015-04-20 16:31:42 +02:00", "2015-04-20 14:31:42"),
            ("1429540302", "2015-04-20 14:31:42"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                render("{{ t | datetime }}", context! { t => input }),
                expected,
                "{input}"
            );
        }
        assert_eq!(
            render("{{ 1429540302 | datetime }}", context! {}),
            "2015-04-20 14:31:42"
        );
        assert_eq!(
            render(
                "{{ 1429540302123 | datetime('%H:%M:%S%.3f') }}",
                context! {}
            ),
            "14:31:42.123"
        );
        assert_eq!(
            render("{{ 1429540302.5 | datetime('%S%.3f') }}", context! {}),
            "42.500"
        );
    }

    #[test]
    fn datetime_empty_values_render_empty() {
        for t in [
            Value::from("0001-01-01T00:00:00Z"),
            Value::from(""),
            Value::from(()),
        ] {
            assert_eq!(render("[{{ t | datetime }}]", context! { t => t }), "[]");
        }
        assert_eq!(render("[{{ missing | datetime }}]", context! {}), "[]");
    }

    #[test]
    fn datetime_format_by_position_or_keyword() {
        let ctx = || context! { t => "2015-04-20T14:31:42Z" };
        assert_eq!(render("{{ t | datetime('%H:%M') }}", ctx()), "14:31");
        assert_eq!(render("{{ t | datetime(format='%d/%m') }}", ctx()), "20/04");
        render_err("{{ t | datetime('%H', format='%M') }}", ctx());
        render_err("{{ t | datetime(fmt='%M') }}", ctx());
    }

    #[test]
    fn datetime_uses_configured_time_zone() {
        let ctx = || context! { t => "2015-04-20T20:31:42Z" };
        let template = "{{ t | datetime('%Y-%m-%d %H:%M %Z') }}";
        assert_eq!(
            env("UTC").render_str(template, ctx()).unwrap(),
            "2015-04-20 20:31 UTC"
        );
        assert_eq!(
            env("Asia/Shanghai").render_str(template, ctx()).unwrap(),
            "2015-04-21 04:31 CST"
        );
    }

    #[test]
    fn datetime_rejects_unreadable_values() {
        let err = render_err("{{ t | datetime }}", context! { t => "yesterday" });
        assert!(
            err.contains("datetime: cannot read 'yesterday' as a time"),
            "{err}"
        );
        let err = render_err(
            "{{ t | datetime }}",
            context! { t => "2015-04-20 14:31:42" },
        );
        assert!(err.contains("as a time"), "{err}");
        render_err("{{ t | datetime }}", context! { t => true });
        render_err(
            "{{ t | datetime }}",
            context! { t => "99999999999999999999999999" },
        );
        render_err("{{ t | datetime }}", context! { t => f64::NAN });
    }

    #[test]
    fn since_uses_now_from_context() {
        let now = "2024-05-01T12:00:00Z";
        let cases = [
            ("2024-05-01T08:47:55Z", "3h 12m"),
            ("2024-04-29T08:00:00Z", "2d 4h"),
            ("2024-04-29T11:55:00Z", "2d 5m"),
            ("2024-05-01T11:47:55Z", "12m 5s"),
            ("2024-05-01T11:59:15Z", "45s"),
            ("2024-05-01T12:00:00Z", "0s"),
            ("2024-05-01T13:00:00Z", "0s"),
            ("2024-05-01 11:59:15 UTC", "45s"),
        ];
        for (start, expected) in cases {
            assert_eq!(
                render("{{ t | since }}", context! { t => start, now => now }),
                expected,
                "{start}"
            );
        }
    }

    #[test]
    fn since_until() {
        let ctx = || {
            context! {
                start => "2024-05-01T10:00:00Z",
                end => "2024-05-01T10:30:10Z",
                firing_end => "0001-01-01T00:00:00Z",
                now => "2024-05-01T11:00:00Z",
            }
        };
        assert_eq!(render("{{ start | since(end) }}", ctx()), "30m 10s");
        assert_eq!(render("{{ start | since(until=end) }}", ctx()), "30m 10s");
        assert_eq!(render("{{ start | since(firing_end) }}", ctx()), "1h");
        assert_eq!(render("[{{ firing_end | since }}]", ctx()), "[]");
        let err = render_err(
            "{{ start | since }}",
            context! { start => "2024-05-01T10:00:00Z", now => "soon" },
        );
        assert!(
            err.contains("the `now` variable: cannot read 'soon'"),
            "{err}"
        );
    }

    #[test]
    fn duration_formats_seconds() {
        let cases = [
            ("{{ 0 | duration }}", "0s"),
            ("{{ 45 | duration }}", "45s"),
            ("{{ 725 | duration }}", "12m 5s"),
            ("{{ 11520 | duration }}", "3h 12m"),
            ("{{ 187200 | duration }}", "2d 4h"),
            ("{{ 90.7 | duration }}", "1m 30s"),
            ("{{ -5 | duration }}", "0s"),
            ("{{ 1e300 | duration }}", "106751991167300d 15h"),
            ("{{ '60' | duration }}", "1m"),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, context! {}), expected, "{template}");
        }
        render_err("{{ 'soon' | duration }}", context! {});
    }

    #[test]
    fn md_escape_neutralises_markdown() {
        let cases = [
            ("plain text, 3.14 & more", "plain text, 3.14 & more"),
            ("a *b* _c_ `d` \\e", "a \\*b\\* \\_c\\_ \\`d\\` \\\\e"),
            (
                "[link](http://x) ![img](y)",
                "\\[link\\](http://x) !\\[img\\](y)",
            ),
            ("<b>hi</b>", "&lt;b&gt;hi&lt;/b&gt;"),
            ("# Title\n## Sub", "\\# Title\n\\## Sub"),
            ("> quote", "&gt; quote"),
            (
                "- a\n+ b\n  - c\n-5 degrees",
                "\\- a\n\\+ b\n  \\- c\n-5 degrees",
            ),
            ("Title\n===\n---", "Title\n\\===\n\\---"),
            ("1. one\n2) two\n2024.", "1\\. one\n2\\) two\n2024\\."),
            ("C# is a-ok", "C# is a-ok"),
            ("1.\r\n- x\r\n", "1\\.\r\n\\- x\r\n"),
            ("钉钉 *告警*", "钉钉 \\*告警\\*"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                render("{{ t | md_escape }}", context! { t => input }),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn truncate_bytes_cuts_on_char_boundaries() {
        assert_eq!(truncate_bytes("hello", 5, "…"), "hello");
        assert_eq!(truncate_bytes("hello world", 8, "…"), "hello…");
        // "钉" is 3 bytes; 7 bytes leave 4 for text: one whole char.
        assert_eq!(truncate_bytes("钉钉钉", 7, "…"), "钉…");
        assert_eq!(truncate_bytes("钉钉钉", 9, "…"), "钉钉钉");
        assert_eq!(truncate_bytes("钉钉钉", 8, "…"), "钉…");
        assert_eq!(truncate_bytes("钉钉钉", 2, "…"), "");
        assert_eq!(truncate_bytes("abc", 0, "…"), "");
        for n in 0..12 {
            assert!(truncate_bytes("a钉b😀c", n, "…").len() <= n);
        }
        let ctx = || context! { t => "钉钉群机器人" };
        assert_eq!(render("{{ t | truncate_bytes(10) }}", ctx()), "钉钉…");
        assert_eq!(
            render("{{ t | truncate_bytes(10, marker='...') }}", ctx()),
            "钉钉..."
        );
        assert_eq!(
            render("{{ t | truncate_bytes(n=7, marker='') }}", ctx()),
            "钉钉"
        );
        render_err("{{ t | truncate_bytes }}", ctx());
    }

    #[test]
    fn label_pairs_keeps_map_order() {
        let labels: serde_json::Value = serde_json::from_str(
            r#"{"alertname": "Disk", "severity": "critical", "instance": "db1", "n": 3}"#,
        )
        .unwrap();
        let ctx = || context! { labels => minijinja::value::Serde(&labels) };
        assert_eq!(
            render("{{ labels | label_pairs }}", ctx()),
            "alertname=Disk, severity=critical, instance=db1, n=3"
        );
        assert_eq!(
            render(
                "{{ labels | label_pairs(' | ', ': ', exclude=['instance', 'n']) }}",
                ctx()
            ),
            "alertname: Disk | severity: critical"
        );
        assert_eq!(
            render("{{ labels | label_pairs(exclude='n', sep=';') }}", ctx()),
            "alertname=Disk;severity=critical;instance=db1"
        );
        let err = render_err("{{ 'x' | label_pairs }}", context! {});
        assert!(err.contains("expected a map"), "{err}");
        render_err("{{ [1, 2] | label_pairs }}", context! {});
    }

    #[test]
    fn first_line_is_the_subject() {
        assert_eq!(first_line("Fix the build\r\n\nLong body"), "Fix the build");
        assert_eq!(first_line("one line"), "one line");
        assert_eq!(first_line(""), "");
        assert_eq!(render("{{ 'a\nb' | first_line }}", context! {}), "a");
    }

    #[test]
    fn ref_name_and_short_sha() {
        let cases = [
            ("{{ 'refs/heads/main' | ref_name }}", "main"),
            ("{{ 'refs/heads/feature/x' | ref_name }}", "feature/x"),
            ("{{ 'refs/tags/v1.2' | ref_name }}", "v1.2"),
            ("{{ 'main' | ref_name }}", "main"),
            ("{{ 'refs/pull/1/head' | ref_name }}", "refs/pull/1/head"),
            (
                "{{ '9fceb02d0ae598e95dc970b74767f19372d61af8' | short_sha }}",
                "9fceb02",
            ),
            (
                "{{ '9fceb02d0ae598e95dc970b74767f19372d61af8' | short_sha(10) }}",
                "9fceb02d0a",
            ),
            ("{{ '9fceb02d0ae5' | short_sha(n=4) }}", "9fce"),
            ("{{ 'abc' | short_sha }}", "abc"),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, context! {}), expected, "{template}");
        }
    }
}

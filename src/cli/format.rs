//! How the `outbox` commands write times, durations and long texts.

use jiff::tz::TimeZone;
use jiff::{Span, SpanRelativeTo, Timestamp};

/// A duration given on the command line, as written and in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Age {
    pub text: String,
    pub ms: i64,
}

/// Parses a friendly duration (`7d`, `12h`, `1 week`), days being 24 hours.
pub fn parse_age(text: &str) -> Result<Age, String> {
    let span: Span = text
        .trim()
        .parse()
        .map_err(|e| format!("expected a duration such as 30m, 24h or 7d: {e}"))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("expected a duration such as 30m, 24h or 7d: {e}"))?;
    if duration.is_negative() {
        return Err("the age cannot be negative".to_owned());
    }
    let ms = i64::try_from(duration.as_millis()).map_err(|_| "the age is too large".to_owned())?;
    Ok(Age {
        text: text.trim().to_owned(),
        ms,
    })
}

/// Unix ms as local ISO 8601 with the offset, e.g. `2026-11-24T16:02:03+08:00`.
pub fn local_time(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// An event's name as a header line says it: ``event `push` ``, or `no event name` (a json
/// source's event without `?event=`).
pub fn event_name(name: &str) -> String {
    if name.is_empty() {
        "no event name".to_owned()
    } else {
        format!("event `{name}`")
    }
}

/// The text on one line, cut to `max` characters with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    crate::text::shorten(&crate::text::one_line(text), max)
}

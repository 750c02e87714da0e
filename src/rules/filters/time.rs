//! `datetime`, `since` and `duration`: reading times in every form senders use, and showing
//! durations the way people say them (see the [filters' documentation](super)).

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, State};

use super::args::{arg, invalid};

/// The default `datetime` format: `2024-05-01 20:00:00 +08:00`. A time shown without its zone is
/// ambiguous, so the default shows the offset of the configured `timezone`.
const DEFAULT_DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";

/// Unix times above this are taken as milliseconds rather than seconds.
const MILLISECONDS_THRESHOLD: i128 = 100_000_000_000;

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) as Unix seconds.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// `datetime(value, format="%Y-%m-%d %H:%M:%S %:z")`: formats a time in the configured zone.
pub(super) fn datetime(
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
pub(super) fn since(
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
pub(super) fn duration(value: &Value) -> Result<String, Error> {
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

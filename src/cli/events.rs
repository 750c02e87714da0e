//! `dingrelay outbox events | event | reroute | dry-run`: the event log, for operators and rule
//! authors. What each stored webhook became; routing events again after a rule is fixed; and
//! what a new rules file would have sent for the real events of the last hours.
//!
//! Like the rest of `dingrelay outbox`, it works on the file while the daemon runs. `reroute`
//! only marks events as waiting: the running daemon routes them (within a few seconds) through
//! the rules it has in force, into new messages with new msgUuids, and sends them.

use std::io::Write;

use jiff::tz::TimeZone;

use super::format::{Age, event_name, local_time, one_line};
use crate::config::Config;
use crate::outbox::{Admin, EventFilter, EventListing};
use crate::routing::route_event;

type Reported = Result<(), String>;

fn io(error: std::io::Error) -> String {
    format!("cannot write the output: {error}")
}

/// Longest note or failure shown by `events`, in characters.
const NOTE_CHARS: usize = 70;

/// The filter of `--source`, `--since` and `--until` (ages before `now_ms`), and `--limit`.
pub fn filter(
    source: Option<&str>,
    since: Option<&Age>,
    until: Option<&Age>,
    limit: Option<i64>,
    now_ms: i64,
) -> EventFilter {
    EventFilter {
        since_ms: since.map_or(i64::MIN, |a| now_ms - a.ms),
        until_ms: until.map_or(i64::MAX, |a| now_ms - a.ms),
        source: source.map(str::to_owned),
        limit: limit.unwrap_or(i64::MAX),
        ..EventFilter::default()
    }
}

/// `outbox events`: newest first, one line each.
pub fn events(
    admin: &Admin,
    filter: &EventFilter,
    waiting: bool,
    out: &mut dyn Write,
    tz: &TimeZone,
) -> Reported {
    let events = admin.events(filter, waiting).map_err(|e| e.to_string())?;
    writeln!(out, "event log {}", admin.path().display()).map_err(io)?;
    if events.is_empty() {
        writeln!(out, "no {}events", if waiting { "waiting " } else { "" }).map_err(io)?;
        return Ok(());
    }
    let mut table: Vec<[String; 6]> = vec![
        [
            "ID",
            "RECEIVED",
            "SOURCE",
            "EVENT",
            "ROUTED",
            "WHAT IT BECAME",
        ]
        .map(str::to_owned),
    ];
    for event in &events {
        table.push([
            event.id.to_string(),
            local_time(event.received_at, tz),
            event.source.clone(),
            one_line(&event.name, 24),
            routed(event, tz),
            became(event),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if i == 0 {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(io)?;
    }
    Ok(())
}

fn routed(event: &EventListing, tz: &TimeZone) -> String {
    match event.routed_at {
        None => "waiting".to_owned(),
        Some(at) if event.routings > 1 => format!("{} ({}x)", local_time(at, tz), event.routings),
        Some(at) => local_time(at, tz),
    }
}

/// One line: the messages it made, its failures, or why it made none.
fn became(event: &EventListing) -> String {
    let Some(outcome) = &event.outcome else {
        return if event.routed_at.is_some() {
            "-".to_owned()
        } else {
            "(not routed yet)".to_owned()
        };
    };
    let mut parts = Vec::new();
    if !outcome.messages.is_empty() {
        let ids: Vec<String> = outcome.messages.iter().map(|id| format!("#{id}")).collect();
        parts.push(format!(
            "{} message{} {}",
            outcome.messages.len(),
            if outcome.messages.len() == 1 { "" } else { "s" },
            ids.join(" ")
        ));
    }
    for failure in &outcome.failures {
        parts.push(one_line(
            &format!("rule `{}` failed: {}", failure.rule, failure.reason),
            NOTE_CHARS,
        ));
    }
    if let Some(note) = &outcome.note {
        parts.push(one_line(note, NOTE_CHARS));
    }
    parts.join("; ")
}

/// `outbox event ID`: everything about one event, its messages, and its body.
pub fn event(admin: &Admin, id: i64, out: &mut dyn Write, tz: &TimeZone) -> Reported {
    let filter = EventFilter {
        from_id: id,
        to_id: id,
        ..EventFilter::default()
    };
    let Some(listing) = admin
        .events(&filter, false)
        .map_err(|e| e.to_string())?
        .pop()
    else {
        return Err(format!("no event {id} in {}", admin.path().display()));
    };
    let stored = admin
        .stored_events(&filter)
        .map_err(|e| e.to_string())?
        .pop();
    writeln!(out, "event {id}").map_err(io)?;
    let fields = [
        ("source", listing.source.clone()),
        ("event", listing.name.clone()),
        (
            "dedup key",
            listing.dedup_key.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("received", local_time(listing.received_at, tz)),
        ("routed", routed(&listing, tz)),
        ("body", format!("{} bytes", listing.body_bytes)),
    ];
    for (name, value) in fields {
        writeln!(out, "  {name:<10} {value}").map_err(io)?;
    }
    if let Some(outcome) = &listing.outcome {
        if !outcome.rules.is_empty() {
            writeln!(out, "  {:<10} {}", "rules", outcome.rules.join(", ")).map_err(io)?;
        }
        for failure in &outcome.failures {
            let robot = failure
                .robot
                .as_ref()
                .map(|r| format!(", robot `{r}`"))
                .unwrap_or_default();
            writeln!(
                out,
                "  failed     rule `{}`{robot}: {} (a fallback message went instead)",
                failure.rule, failure.reason
            )
            .map_err(io)?;
        }
        if let Some(note) = &outcome.note {
            writeln!(out, "  {:<10} {note}", "note").map_err(io)?;
        }
    }
    let messages = admin.event_messages(id).map_err(|e| e.to_string())?;
    if !messages.is_empty() {
        writeln!(out, "messages (`dingrelay outbox show ID` for each):").map_err(io)?;
        for m in &messages {
            writeln!(
                out,
                "  #{}  {}  rule `{}` -> robot `{}`  {}",
                m.id,
                m.state,
                m.rule,
                m.robot,
                one_line(&m.summary, 50)
            )
            .map_err(io)?;
        }
    }
    if let Some(stored) = stored {
        if !stored.headers.is_empty() {
            writeln!(out, "headers:").map_err(io)?;
            for (name, value) in &stored.headers {
                writeln!(out, "  {name}: {}", one_line(value, 100)).map_err(io)?;
            }
        }
        writeln!(out, "body:").map_err(io)?;
        writeln!(out, "{}", String::from_utf8_lossy(&stored.body)).map_err(io)?;
    }
    Ok(())
}

/// `outbox reroute`: marks the given events (or those in the filter) waiting again.
pub fn reroute(admin: &Admin, ids: &[i64], filter: &EventFilter, out: &mut dyn Write) -> Reported {
    let mut marked = 0;
    if ids.is_empty() {
        marked = admin.reroute(filter).map_err(|e| e.to_string())?;
    } else {
        for &id in ids {
            let one = EventFilter {
                from_id: id,
                to_id: id,
                ..filter.clone()
            };
            match admin.reroute(&one).map_err(|e| e.to_string())? {
                0 => {
                    let known = admin.events(&one, false).map_err(|e| e.to_string())?;
                    let why = if known.is_empty() {
                        "no such event (purged after keep_events, or never stored)"
                    } else {
                        "it is waiting to be routed already"
                    };
                    writeln!(out, "event {id}: not marked: {why}").map_err(io)?;
                }
                n => marked += n,
            }
        }
    }
    writeln!(
        out,
        "{marked} event{} marked to be routed again; the running daemon routes {} through the rules in force within seconds, and sends what {} make{} (new messages, new msgUuids)",
        if marked == 1 { "" } else { "s" },
        if marked == 1 { "it" } else { "them" },
        if marked == 1 { "it" } else { "they" },
        if marked == 1 { "s" } else { "" },
    )
    .map_err(io)?;
    if marked == 0 && ids.is_empty() {
        return Err("no routed event matched; see `dingrelay outbox events`".to_owned());
    }
    Ok(())
}

/// `outbox dry-run`: what `config`'s rules would send for the stored events in `filter`, oldest
/// first. Sends nothing and changes nothing.
pub fn dry_run(
    config: &Config,
    admin: &Admin,
    filter: &EventFilter,
    pretty: bool,
    out: &mut dyn Write,
    tz: &TimeZone,
    now_ms: i64,
) -> Reported {
    let events = admin.stored_events(filter).map_err(|e| e.to_string())?;
    writeln!(
        out,
        "# dry run: what these rules would send for {} stored event{}; nothing is sent",
        events.len(),
        if events.len() == 1 { "" } else { "s" }
    )
    .map_err(io)?;
    let (mut messages, mut failures, mut before) = (0, 0, 0);
    for stored in &events {
        let routed = route_event(config, stored, now_ms);
        let made_before = admin
            .event_messages(stored.id)
            .map_err(|e| e.to_string())?
            .len();
        before += made_before;
        writeln!(
            out,
            "\n# event {}: source `{}`, {}, received {}; it made {made_before} message{} when routed",
            stored.id,
            stored.source,
            event_name(&stored.name),
            local_time(stored.received_at, tz),
            if made_before == 1 { "" } else { "s" }
        )
        .map_err(io)?;
        for message in &routed.messages {
            let fallback = routed.outcome.failures.iter().any(|f| {
                f.rule == message.rule && f.robot.as_ref().is_none_or(|r| r == &message.robot)
            });
            writeln!(
                out,
                "# rule `{}` -> robot `{}`{}",
                message.rule,
                message.robot,
                if fallback {
                    " (fallback: the rule failed)"
                } else {
                    ""
                }
            )
            .map_err(io)?;
            let json = if pretty {
                serde_json::to_string_pretty(&message.message)
            } else {
                serde_json::to_string(&message.message)
            };
            writeln!(out, "{}", json.unwrap_or_default()).map_err(io)?;
        }
        for failure in &routed.outcome.failures {
            writeln!(out, "# rule `{}` failed: {}", failure.rule, failure.reason).map_err(io)?;
        }
        if let Some(note) = &routed.outcome.note {
            writeln!(out, "# no message: {note}").map_err(io)?;
        }
        messages += routed.messages.len();
        failures += routed.outcome.failures.len();
    }
    writeln!(
        out,
        "\n# {} event{}: {messages} message{} would be sent ({failures} rule failure{} with a fallback); they made {before} when routed",
        events.len(),
        if events.len() == 1 { "" } else { "s" },
        if messages == 1 { "" } else { "s" },
        if failures == 1 { "" } else { "s" },
    )
    .map_err(io)?;
    Ok(())
}

//! `dingrelay outbox ...`: look at the queue and the dead letters, send again, purge.
//!
//! Works while the daemon runs: it opens the same file through its own connection ([`Admin`]);
//! WAL lets it read while the daemon writes, and its writes wait for the daemon's (5 s at most).
//! The daemon's workers poll the outbox, so a retried message is picked up without a restart.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};
use jiff::tz::TimeZone;

use super::events;
pub use super::format::{Age, parse_age};
use super::format::{local_time, one_line};
use super::output::exit_code;
use crate::outbox::{Admin, AdminError, Detail, Listing, Purgeable, RobotCounts, State};

/// Longest summary shown by `list`, in characters.
const SUMMARY_CHARS: usize = 50;
/// Longest last error shown by `list`, in characters.
const ERROR_CHARS: usize = 60;

/// What `dingrelay outbox` does.
#[derive(Debug, Clone, Subcommand)]
pub enum OutboxCommand {
    /// List queued and dead messages, after a per-robot count.
    #[command(after_help = "\
Examples:
  dingrelay outbox list                        pending and dead messages of every robot
  dingrelay outbox list --robot ops
  dingrelay outbox list --state dead
  dingrelay outbox list --state all --robot dev

Times are local. Works while the daemon runs.")]
    List {
        /// Only this robot's messages.
        #[arg(long)]
        robot: Option<String>,
        /// Which messages [default: pending and dead].
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
    },
    /// Show everything about one message, with its JSON body.
    #[command(after_help = "\
Examples:
  dingrelay outbox show 42

The id is the first column of `dingrelay outbox list`.")]
    Show {
        /// The message id.
        id: i64,
    },
    /// Send a dead (or waiting) message again: it becomes pending, due now, attempts reset.
    #[command(after_help = "\
Examples:
  dingrelay outbox retry 42                    send message 42 again
  dingrelay outbox retry --dead                send every dead message again
  dingrelay outbox retry --dead --robot ops    only the dead messages of robot ops

The running daemon picks retried messages up by itself; its maximum age counts from now.")]
    Retry {
        /// The message id.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<i64>,
        /// Every dead message (of one robot with --robot).
        #[arg(long)]
        dead: bool,
        /// With --dead: only this robot's dead messages.
        #[arg(long, conflicts_with = "id")]
        robot: Option<String>,
    },
    /// Delete dead or delivered messages. Pending messages are never purged.
    #[command(
        group(clap::ArgGroup::new("which").required(true).args(["dead", "delivered"])),
        after_help = "\
Examples:
  dingrelay outbox purge --dead                          every dead message
  dingrelay outbox purge --dead --robot ops --older-than 7d
  dingrelay outbox purge --delivered --older-than 24h

--older-than counts from when the message died or was delivered; it takes durations such as
30m, 24h, 7d or '1 week 2 days'. The daemon prunes delivered messages by itself."
    )]
    Purge {
        /// Delete dead messages.
        #[arg(long)]
        dead: bool,
        /// Delete delivered messages.
        #[arg(long)]
        delivered: bool,
        /// Only this robot's messages.
        #[arg(long)]
        robot: Option<String>,
        /// Only messages that died or were delivered longer ago than this (e.g. 7d, 12h).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Age>,
    },
    /// List stored webhooks (events), newest first, and what became of each.
    #[command(after_help = "\
Examples:
  dingrelay outbox events                      the last 50 events
  dingrelay outbox events --source alertmanager --since 2h
  dingrelay outbox events --waiting            events not routed yet

Events are kept keep_events (default 7 days) after they are routed.")]
    Events {
        /// Only this source's events.
        #[arg(long)]
        source: Option<String>,
        /// Only events received within this long (e.g. 30m, 6h, 2d).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        since: Option<Age>,
        /// Only events waiting to be routed.
        #[arg(long)]
        waiting: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one event: what it became, its messages, its headers and its body.
    #[command(after_help = "\
Examples:
  dingrelay outbox event 1234

The id is the first column of `dingrelay outbox events`, and the `event` of the 202 answer.")]
    Event {
        /// The event id.
        id: i64,
    },
    /// Route stored events again through the daemon's rules in force, and send what they make.
    #[command(after_help = "\
Examples:
  dingrelay outbox reroute 1234 1240           after fixing the rule that failed on them
  dingrelay outbox reroute --since 2h          every event of the last two hours
  dingrelay outbox reroute --source grafana --since 3h --until 1h

The running daemon picks them up within seconds. Their new messages get new msgUuids, so
DingTalk shows them even if the first routing's messages arrived: re-route on purpose.")]
    Reroute {
        /// Event ids.
        #[arg(required_unless_present = "since")]
        ids: Vec<i64>,
        /// Every routed event received within this long.
        #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with = "ids")]
        since: Option<Age>,
        /// With --since: only events received longer ago than this.
        #[arg(long, value_name = "AGE", value_parser = parse_age, requires = "since")]
        until: Option<Age>,
        /// Only this source's events.
        #[arg(long)]
        source: Option<String>,
    },
    /// Print what the rules of --config would send for the stored events; sends nothing.
    #[command(after_help = "\
Examples:
  dingrelay outbox --config rules.new.yaml dry-run --since 24h
  dingrelay outbox --config rules.new.yaml dry-run --source alertmanager --since 6h --pretty

Reads the events from the outbox of the config's state_dir (or --state-dir), routes each through
the config's rules as the daemon would (fallbacks for failing rules included), and prints every
message, then how many each event made when the daemon routed it.")]
    DryRun {
        /// Events received within this long.
        #[arg(long, value_name = "AGE", value_parser = parse_age, default_value = "24h")]
        since: Age,
        /// Only this source's events.
        #[arg(long)]
        source: Option<String>,
        /// At most this many events (the oldest first).
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
    },
}

/// `outbox list --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    Pending,
    Dead,
    Delivered,
    All,
}

/// Runs an `outbox` subcommand on `<state_dir>/outbox.sqlite3`, at the current time, showing
/// local times. Returns the exit code: 0 on success, 1 on failure.
/// Errors go to `err`, results to `out`.
pub fn run(
    state_dir: &Path,
    command: &OutboxCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    run_at(state_dir, command, out, err, now_ms(), &TimeZone::system())
}

/// [`run`] at a given time (Unix ms) and time zone (tests).
pub fn run_at(
    state_dir: &Path,
    command: &OutboxCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    now_ms: i64,
    tz: &TimeZone,
) -> u8 {
    let result = Admin::open(state_dir)
        .map_err(|e| e.to_string())
        .and_then(|admin| execute(&admin, command, out, now_ms, tz));
    match result {
        Ok(()) => 0,
        Err(error) => exit_code(writeln!(err, "error: {error}").map(|()| 1), 1),
    }
}

/// `outbox dry-run`: the stored events of `state_dir` through `config`'s rules, at `now_ms`.
/// Returns the exit code: 0 on success, 1 on failure.
pub fn dry_run_at(
    config: &crate::config::Config,
    state_dir: &Path,
    command: &OutboxCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    now_ms: i64,
    tz: &TimeZone,
) -> u8 {
    let OutboxCommand::DryRun {
        since,
        source,
        limit,
        pretty,
    } = command
    else {
        return run_at(state_dir, command, out, err, now_ms, tz);
    };
    let filter = events::filter(source.as_deref(), Some(since), None, Some(*limit), now_ms);
    let result = Admin::open(state_dir)
        .map_err(|e| e.to_string())
        .and_then(|admin| events::dry_run(config, &admin, &filter, *pretty, out, tz, now_ms));
    match result {
        Ok(()) => 0,
        Err(error) => exit_code(writeln!(err, "error: {error}").map(|()| 1), 1),
    }
}

/// The current time, Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// A failure to report: an outbox error, a refusal, or a failed write to `out`.
type Reported = Result<(), String>;

fn io(error: std::io::Error) -> String {
    format!("cannot write the output: {error}")
}

fn db(error: AdminError) -> String {
    error.to_string()
}

fn execute(
    admin: &Admin,
    command: &OutboxCommand,
    out: &mut dyn Write,
    now_ms: i64,
    tz: &TimeZone,
) -> Reported {
    match command {
        OutboxCommand::List { robot, state } => list(admin, robot.as_deref(), *state, out, tz),
        OutboxCommand::Show { id } => show(admin, *id, out, tz),
        OutboxCommand::Retry { id, dead, robot } => {
            retry(admin, *id, *dead, robot.as_deref(), out, now_ms)
        }
        OutboxCommand::Purge {
            dead,
            delivered,
            robot,
            older_than,
        } => {
            let which = match (*dead, *delivered) {
                (true, false) => Purgeable::Dead,
                (false, true) => Purgeable::Delivered,
                _ => return Err("say what to purge: --dead or --delivered".to_owned()),
            };
            purge(
                admin,
                which,
                robot.as_deref(),
                older_than.as_ref(),
                out,
                now_ms,
            )
        }
        OutboxCommand::Events {
            source,
            since,
            waiting,
            limit,
        } => {
            let filter = events::filter(
                source.as_deref(),
                since.as_ref(),
                None,
                Some(*limit),
                now_ms,
            );
            events::events(admin, &filter, *waiting, out, tz)
        }
        OutboxCommand::Event { id } => events::event(admin, *id, out, tz),
        OutboxCommand::Reroute {
            ids,
            since,
            until,
            source,
        } => {
            let filter = events::filter(
                source.as_deref(),
                since.as_ref(),
                until.as_ref(),
                None,
                now_ms,
            );
            events::reroute(admin, ids, &filter, out)
        }
        OutboxCommand::DryRun { .. } => Err(
            "dry-run needs the rules of --config (dingrelay outbox --config FILE dry-run)"
                .to_owned(),
        ),
    }
}

fn list(
    admin: &Admin,
    robot: Option<&str>,
    filter: Option<StateFilter>,
    out: &mut dyn Write,
    tz: &TimeZone,
) -> Reported {
    let counts: Vec<RobotCounts> = admin
        .counts()
        .map_err(db)?
        .into_iter()
        .filter(|c| robot.is_none_or(|r| c.robot == r))
        .collect();
    writeln!(out, "outbox {}", admin.path().display()).map_err(io)?;
    if counts.is_empty() {
        match robot {
            Some(robot) => writeln!(out, "robot `{robot}`: no messages").map_err(io)?,
            None => writeln!(out, "the outbox is empty").map_err(io)?,
        }
        return Ok(());
    }
    for c in &counts {
        writeln!(
            out,
            "robot `{}`: {} pending, {} dead, {} delivered",
            c.robot, c.pending, c.dead, c.delivered
        )
        .map_err(io)?;
    }

    let (mut rows, what) = match filter {
        None => {
            let mut rows = admin.list(Some(State::Pending), robot).map_err(db)?;
            rows.extend(admin.list(Some(State::Dead), robot).map_err(db)?);
            rows.sort_by_key(|r| r.id);
            (rows, "pending or dead messages")
        }
        Some(StateFilter::Pending) => (
            admin.list(Some(State::Pending), robot).map_err(db)?,
            "pending messages",
        ),
        Some(StateFilter::Dead) => (
            admin.list(Some(State::Dead), robot).map_err(db)?,
            "dead messages",
        ),
        Some(StateFilter::Delivered) => (
            admin.list(Some(State::Delivered), robot).map_err(db)?,
            "delivered messages",
        ),
        Some(StateFilter::All) => (admin.list(None, robot).map_err(db)?, "messages"),
    };
    writeln!(out).map_err(io)?;
    if rows.is_empty() {
        writeln!(out, "no {what}").map_err(io)?;
        return Ok(());
    }
    rows.dedup_by_key(|r| r.id);
    print_table(&rows, out, tz)
}

fn print_table(rows: &[Listing], out: &mut dyn Write, tz: &TimeZone) -> Reported {
    let header = [
        "ID",
        "ROBOT",
        "STATE",
        "TRIES",
        "ACCEPTED",
        "NEXT ATTEMPT",
        "RULE",
        "SUMMARY",
        "LAST ERROR",
    ];
    let mut table: Vec<[String; 9]> = vec![header.map(str::to_owned)];
    for r in rows {
        let next = match r.state {
            State::Pending => local_time(r.next_attempt_at, tz),
            State::Delivered | State::Dead => "-".to_owned(),
        };
        table.push([
            r.id.to_string(),
            r.robot.clone(),
            r.state.to_string(),
            r.attempts.to_string(),
            local_time(r.accepted_at, tz),
            next,
            r.rule.clone(),
            one_line(&r.summary, SUMMARY_CHARS),
            r.last_error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| one_line(e, ERROR_CHARS)),
        ]);
    }
    let mut widths = [0usize; 9];
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
            if i == 0 || i == 3 {
                // Numbers align right.
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else if i == row.len() - 1 {
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

fn show(admin: &Admin, id: i64, out: &mut dyn Write, tz: &TimeZone) -> Reported {
    let Some(d) = admin.show(id).map_err(db)? else {
        return Err(format!("no message {id} in {}", admin.path().display()));
    };
    let Detail {
        id,
        uuid,
        robot,
        rule,
        source,
        dedup_key,
        body,
        summary,
        link,
        state,
        attempts,
        accepted_at,
        age_from,
        next_attempt_at,
        delivered_at,
        dead_at,
        last_error,
        recipients,
    } = d;
    let opt_time = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), |ms| local_time(ms, tz));
    let next = match state {
        State::Pending => local_time(next_attempt_at, tz),
        State::Delivered | State::Dead => "-".to_owned(),
    };
    let fields: [(&str, String); 15] = [
        ("state", state.to_string()),
        ("robot", robot),
        ("rule", rule),
        ("source", source),
        ("msgUuid", uuid),
        ("dedup key", dedup_key.unwrap_or_else(|| "-".to_owned())),
        ("attempts", attempts.to_string()),
        ("accepted", local_time(accepted_at, tz)),
        ("age counts from", local_time(age_from, tz)),
        ("next attempt", next),
        ("delivered", opt_time(delivered_at)),
        ("dead since", opt_time(dead_at)),
        ("summary", summary),
        ("link", link.unwrap_or_else(|| "-".to_owned())),
        ("last error", last_error.unwrap_or_else(|| "-".to_owned())),
    ];
    writeln!(out, "message {id}").map_err(io)?;
    for (name, value) in fields {
        writeln!(out, "  {name:<16} {value}").map_err(io)?;
        if name == "robot" && !recipients.is_empty() {
            writeln!(out, "  {:<16} {}", "to", recipients.join(", ")).map_err(io)?;
        }
    }
    match serde_json::from_str::<serde_json::Value>(&body)
        .and_then(|v| serde_json::to_string_pretty(&v))
    {
        Ok(pretty) => {
            writeln!(out, "body (sent with msgUuid added):").map_err(io)?;
            writeln!(out, "{pretty}").map_err(io)?;
        }
        Err(error) => {
            writeln!(out, "body (stored text; not valid JSON: {error}):").map_err(io)?;
            writeln!(out, "{body}").map_err(io)?;
        }
    }
    Ok(())
}

fn retry(
    admin: &Admin,
    id: Option<i64>,
    dead: bool,
    robot: Option<&str>,
    out: &mut dyn Write,
    now_ms: i64,
) -> Reported {
    match (id, dead) {
        (Some(id), false) => {
            if admin.retry(id, now_ms).map_err(db)? {
                writeln!(
                    out,
                    "message {id} is pending again, due now, attempts reset; the daemon sends it on its next poll"
                )
                .map_err(io)?;
                return Ok(());
            }
            match admin.show(id).map_err(db)? {
                None => Err(format!("no message {id} in {}", admin.path().display())),
                Some(detail) => Err(format!(
                    "message {id} is {}: only pending or dead messages can be retried",
                    detail.state
                )),
            }
        }
        (None, true) => {
            let n = admin.retry_dead(robot, now_ms).map_err(db)?;
            let whose = robot.map_or_else(String::new, |r| format!(" of robot `{r}`"));
            if n == 0 {
                writeln!(out, "no dead messages{whose} to retry").map_err(io)?;
            } else {
                writeln!(
                    out,
                    "{n} dead {}{whose} pending again, due now; the daemon sends them on its next poll",
                    plural(n, "message is", "messages are")
                )
                .map_err(io)?;
            }
            Ok(())
        }
        _ => Err("say what to retry: a message id, or --dead".to_owned()),
    }
}

fn purge(
    admin: &Admin,
    which: Purgeable,
    robot: Option<&str>,
    older_than: Option<&Age>,
    out: &mut dyn Write,
    now_ms: i64,
) -> Reported {
    let n = admin
        .purge(which, robot, older_than.map(|a| a.ms), now_ms)
        .map_err(db)?;
    let state = match which {
        Purgeable::Dead => "dead",
        Purgeable::Delivered => "delivered",
    };
    let whose = robot.map_or_else(String::new, |r| format!(" of robot `{r}`"));
    let age = older_than.map_or_else(String::new, |a| format!(" older than {}", a.text));
    writeln!(
        out,
        "purged {n} {state} {}{whose}{age}",
        plural(n, "message", "messages")
    )
    .map_err(io)?;
    Ok(())
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: OutboxCommand,
    }

    fn parse(args: &[&str]) -> Result<OutboxCommand, clap::Error> {
        let mut all = vec!["outbox"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.command)
    }

    #[test]
    fn ages_are_friendly_durations_with_24_hour_days() {
        assert_eq!(parse_age("7d").unwrap().ms, 7 * 86_400_000);
        assert_eq!(parse_age("12h").unwrap().ms, 12 * 3_600_000);
        assert_eq!(parse_age("1 week 2 days").unwrap().ms, 9 * 86_400_000);
        assert_eq!(parse_age("30m").unwrap().ms, 1_800_000);
        assert!(parse_age("soon").is_err());
        assert!(parse_age("-1d").is_err());
    }

    #[test]
    fn the_command_line_rejects_ambiguous_requests() {
        assert!(parse(&["retry"]).is_err(), "an id or --dead is required");
        assert!(parse(&["retry", "3", "--dead"]).is_err());
        assert!(
            parse(&["retry", "3", "--robot", "ops"]).is_err(),
            "--robot needs --dead"
        );
        assert!(
            parse(&["purge"]).is_err(),
            "--dead or --delivered is required"
        );
        assert!(parse(&["purge", "--dead", "--delivered"]).is_err());
        assert!(parse(&["purge", "--pending"]).is_err());
        assert!(parse(&["list", "--state", "lost"]).is_err());
        assert!(matches!(
            parse(&["purge", "--dead", "--robot", "ops", "--older-than", "7d"]).unwrap(),
            OutboxCommand::Purge {
                dead: true,
                delivered: false,
                older_than: Some(Age {
                    ms: 604_800_000,
                    ..
                }),
                ..
            }
        ));
        assert!(matches!(
            parse(&["retry", "--dead", "--robot", "ops"]).unwrap(),
            OutboxCommand::Retry {
                id: None,
                dead: true,
                robot: Some(_)
            }
        ));
        assert!(matches!(
            parse(&["list", "--state", "all"]).unwrap(),
            OutboxCommand::List {
                state: Some(StateFilter::All),
                robot: None
            }
        ));
    }

    #[test]
    fn event_commands_take_ids_or_a_time_range() {
        assert!(parse(&["reroute"]).is_err(), "ids or --since is required");
        assert!(parse(&["reroute", "3", "--since", "2h"]).is_err());
        assert!(
            parse(&["reroute", "--until", "1h"]).is_err(),
            "--until needs --since"
        );
        assert!(matches!(
            parse(&["reroute", "3", "4"]).unwrap(),
            OutboxCommand::Reroute { ids, since: None, .. } if ids == [3, 4]
        ));
        assert!(matches!(
            parse(&[
                "reroute", "--since", "3h", "--until", "1h", "--source", "am"
            ])
            .unwrap(),
            OutboxCommand::Reroute {
                since: Some(Age { ms: 10_800_000, .. }),
                until: Some(_),
                source: Some(_),
                ..
            }
        ));
        assert!(matches!(
            parse(&["dry-run"]).unwrap(),
            OutboxCommand::DryRun {
                since: Age { ms: 86_400_000, .. },
                limit: 1000,
                pretty: false,
                ..
            }
        ));
        assert!(matches!(
            parse(&["events", "--waiting"]).unwrap(),
            OutboxCommand::Events {
                waiting: true,
                limit: 50,
                ..
            }
        ));
        assert!(parse(&["event"]).is_err(), "an id is required");
    }

    #[test]
    fn long_texts_are_cut_on_one_line() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("磁盘空间不足告警", 5), "磁盘空间…");
        assert_eq!(one_line("short", 5), "short");
    }

    #[test]
    fn times_are_local_iso_with_offset() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(local_time(0, &tz), "1970-01-01T08:00:00+08:00");
        assert_eq!(local_time(i64::MAX, &tz), format!("{} ms", i64::MAX));
    }

    use crate::dingtalk::message::{Link, Markdown, Text};
    use crate::dingtalk::{Message, MessageBody};
    use crate::outbox::{Enqueued, NewMessage, Outbox};

    /// A state directory removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            TempDir(std::env::temp_dir().join(format!(
                "dingrelay-cmd-outbox-{}-{name}-{}",
                std::process::id(),
                rand::random::<u64>()
            )))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const T0: i64 = 1_795_000_000_000; // 2026-11-18T19:06:40+08:00

    fn new(robot: &str, rule: &str, body: MessageBody) -> NewMessage {
        NewMessage {
            robot: robot.to_owned(),
            rule: rule.to_owned(),
            source: "alertmanager".to_owned(),
            dedup_key: Some(format!("{robot}-{rule}")),
            recipients: Vec::new(),
            message: Message {
                body,
                at: None,
                msg_uuid: None,
            },
        }
    }

    fn markdown(title: &str) -> MessageBody {
        MessageBody::Markdown {
            markdown: Markdown {
                title: title.to_owned(),
                text: format!("### {title}\n\nsecret-free text"),
            },
        }
    }

    /// ops: 1 pending (retried once), 2 dead, 3 delivered; dev: 4 pending.
    async fn seeded(name: &str) -> TempDir {
        let dir = TempDir::new(name);
        let outbox = Outbox::open(&dir.0).unwrap();
        let batch = vec![
            new("ops", "alerts-firing", markdown("[FIRING:2] DiskSpace")),
            new(
                "ops",
                "alerts-firing-too",
                MessageBody::Text {
                    text: Text {
                        content: "line one\nline two".to_owned(),
                    },
                },
            ),
            new(
                "ops",
                "github-release",
                MessageBody::Link {
                    link: Link {
                        title: "v1.0 released".to_owned(),
                        text: "notes".to_owned(),
                        message_url: "https://example.com/r/1".to_owned(),
                        pic_url: None,
                    },
                },
            ),
            new("dev", "ci", markdown("Build 磁盘空间不足 failed on main")),
        ];
        let ids = outbox.enqueue(batch, T0).await.unwrap();
        assert_eq!(
            ids,
            (1..=4)
                .map(|id| Enqueued::Accepted { id })
                .collect::<Vec<_>>()
        );
        outbox
            .mark_retry(&[1], T0 + 90_000, "HTTP 502 Bad Gateway")
            .await
            .unwrap();
        let long = format!(
            "errcode 310000: keywords not in content {}",
            "x".repeat(100)
        );
        outbox.mark_dead(&[2], T0 + 1_000, &long).await.unwrap();
        outbox.mark_delivered(&[3], T0 + 2_000).await.unwrap();
        outbox.close().await;
        dir
    }

    fn run_cmd(dir: &TempDir, args: &[&str]) -> (u8, String) {
        let command = parse(args).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let code = run_at(&dir.0, &command, &mut out, &mut err, T0 + 10_000, &tz);
        // Errors go to `err` and nothing else does: the text is one or the other.
        assert!(out.is_empty() || err.is_empty(), "both written to");
        out.extend(err);
        let text = String::from_utf8(out).unwrap();
        let path = dir.0.join(crate::outbox::FILE_NAME);
        (code, text.replace(&path.display().to_string(), "<outbox>"))
    }

    #[tokio::test]
    async fn list_prints_counts_then_pending_and_dead_messages() {
        let dir = seeded("list").await;
        let (code, text) = run_cmd(&dir, &["list"]);
        assert_eq!(code, 0, "{text}");
        let expected = "\
outbox <outbox>
robot `dev`: 1 pending, 0 dead, 0 delivered
robot `ops`: 1 pending, 1 dead, 1 delivered

ID  ROBOT  STATE    TRIES  ACCEPTED                   NEXT ATTEMPT               RULE               SUMMARY                      LAST ERROR
 1  ops    pending      1  2026-11-18T19:06:40+08:00  2026-11-18T19:08:10+08:00  alerts-firing      [FIRING:2] DiskSpace         HTTP 502 Bad Gateway
 2  ops    dead         1  2026-11-18T19:06:40+08:00  -                          alerts-firing-too  line one                     errcode 310000: keywords not in content xxxxxxxxxxxxxxxxxxx…
 4  dev    pending      0  2026-11-18T19:06:40+08:00  2026-11-18T19:06:40+08:00  ci                 Build 磁盘空间不足 failed on main  -
";
        assert_eq!(text, expected);

        let (code, text) = run_cmd(&dir, &["list", "--robot", "ops", "--state", "all"]);
        assert_eq!(code, 0, "{text}");
        assert!(!text.contains("`dev`"), "{text}");
        let ids: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("ID"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);

        let (_, text) = run_cmd(&dir, &["list", "--state", "dead", "--robot", "dev"]);
        assert!(text.ends_with("\nno dead messages\n"), "{text}");
        let (_, text) = run_cmd(&dir, &["list", "--robot", "nobody"]);
        assert!(text.ends_with("robot `nobody`: no messages\n"), "{text}");
    }

    #[tokio::test]
    async fn show_prints_every_field_and_the_pretty_body() {
        let dir = seeded("show").await;
        let (code, text) = run_cmd(&dir, &["show", "3"]);
        assert_eq!(code, 0, "{text}");
        let admin = Admin::open(&dir.0).unwrap();
        let uuid = admin.show(3).unwrap().unwrap().uuid;
        let expected = format!(
            "\
message 3
  state            delivered
  robot            ops
  rule             github-release
  source           alertmanager
  msgUuid          {uuid}
  dedup key        ops-github-release
  attempts         0
  accepted         2026-11-18T19:06:40+08:00
  age counts from  2026-11-18T19:06:40+08:00
  next attempt     -
  delivered        2026-11-18T19:06:42+08:00
  dead since       -
  summary          v1.0 released
  link             https://example.com/r/1
  last error       -
body (sent with msgUuid added):
{{
  \"msgtype\": \"link\",
  \"link\": {{
    \"title\": \"v1.0 released\",
    \"text\": \"notes\",
    \"messageUrl\": \"https://example.com/r/1\"
  }}
}}
"
        );
        assert_eq!(text, expected);

        let (code, text) = run_cmd(&dir, &["show", "99"]);
        assert_eq!(code, 1);
        assert_eq!(text, "error: no message 99 in <outbox>\n");
    }

    #[tokio::test]
    async fn retry_and_purge_report_what_they_did() {
        let dir = seeded("retry").await;
        let (code, text) = run_cmd(&dir, &["retry", "3"]);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            "error: message 3 is delivered: only pending or dead messages can be retried\n"
        );
        let (code, text) = run_cmd(&dir, &["retry", "77"]);
        assert_eq!(
            (code, text.as_str()),
            (1, "error: no message 77 in <outbox>\n")
        );
        let (code, text) = run_cmd(&dir, &["retry", "--dead", "--robot", "dev"]);
        assert_eq!(
            (code, text.as_str()),
            (0, "no dead messages of robot `dev` to retry\n")
        );
        let (code, text) = run_cmd(&dir, &["purge", "--dead", "--older-than", "1d"]);
        assert_eq!(
            (code, text.as_str()),
            (0, "purged 0 dead messages older than 1d\n")
        );
        let (code, text) = run_cmd(&dir, &["retry", "--dead"]);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.starts_with("1 dead message is pending again"),
            "{text}"
        );
        let (code, text) = run_cmd(&dir, &["retry", "1"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.starts_with("message 1 is pending again"), "{text}");
        let (code, text) = run_cmd(&dir, &["purge", "--delivered", "--robot", "ops"]);
        assert_eq!(
            (code, text.as_str()),
            (0, "purged 1 delivered message of robot `ops`\n")
        );

        let (_, text) = run_cmd(&dir, &["list"]);
        assert!(
            text.contains("robot `ops`: 2 pending, 0 dead, 0 delivered"),
            "{text}"
        );
        let admin = Admin::open(&dir.0).unwrap();
        let retried = admin.show(1).unwrap().unwrap();
        assert_eq!(retried.attempts, 0);
        assert_eq!(retried.next_attempt_at, T0 + 10_000);
        assert_eq!(retried.age_from, T0 + 10_000);
    }

    #[test]
    fn a_missing_outbox_is_a_clear_error() {
        let dir = TempDir::new("missing");
        let (code, text) = run_cmd(&dir, &["list"]);
        assert_eq!(code, 1);
        assert!(
            text.starts_with("error: no outbox at ")
                && text.ends_with("has the daemon run with this state_dir?\n"),
            "{text}"
        );
        assert!(!dir.0.exists(), "nothing is created");
    }
}

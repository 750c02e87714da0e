//! Template filters that `rules.yaml` templates can use, on top of minijinja's built-in ones.
//!
//! [`register`] adds them to an [`Environment`]:
//!
//! | filter | example | result |
//! |---|---|---|
//! | `datetime(format="%Y-%m-%d %H:%M:%S %:z")` | `{{ alert.startsAt \| datetime("%H:%M %:z") }}` | `14:31 +08:00` |
//! | `since(until=none)` | `{{ alert.startsAt \| since }}` | `3h 12m` |
//! | `duration` | `{{ 3725 \| duration }}` | `1h 2m` |
//! | `md_escape` | `{{ commit.message \| md_escape }}` | text that renders literally in DingTalk markdown |
//! | `md_url` | `[source]({{ alert.generatorURL \| md_url }})` | the URL, safe as a markdown link target; `""` unless http(s) or dingtalk |
//! | `truncate_bytes(n, marker="…")` | `{{ text \| truncate_bytes(2000) }}` | at most 2000 bytes |
//! | `label_pairs(sep=", ", kv="=", exclude=[])` | `{{ alert.labels \| label_pairs }}` | `alertname=Disk, severity=critical` |
//! | `ref_name` | `{{ ref \| ref_name }}` | `main` for `refs/heads/main` |
//! | `short_sha(n=7)` | `{{ sha \| short_sha }}` | `9fceb02` |
//! | `distinct_labels(common, keys=...)` | `{{ alert.labels \| distinct_labels(commonLabels) \| join(" · ") }}` | `DiskFull · instance=db2` ([`labels`]) |
//! | `silence_url(base, keys=...)` | `{{ alert.labels \| silence_url(externalURL) }}` | Alertmanager's new-silence page for the alert ([`labels`]) |
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
//!
//! # `md_url`
//!
//! Makes an untrusted URL (an alert's `generatorURL`, a branch name in a path) safe as the target
//! of a markdown link, `[text]({{ url | md_url }})`: the link ends at the template's `)`, whatever
//! the URL holds, so a URL cannot close the link early and add text or links of its own.
//! Exactly what it does:
//! - a value that is not a string, or whose text (white space and control characters trimmed)
//!   does not start with `http://`, `https://` or `dingtalk://` (any case), gives `""`: no
//!   `javascript:` links, and `{% if url | md_url %}` tells whether there is a link to show;
//! - spaces, control characters, non-ASCII characters (as their UTF-8 bytes) and `(` `)` `<` `>`
//!   `\` `` ` `` `"` are percent-encoded (`)` → `%29`, a space → `%20`);
//! - everything else, `%` included, is left as it is: a URL without those characters comes out
//!   unchanged, escapes already in it are not encoded twice, and `md_url` of its own result
//!   changes nothing.
//!
//! The built-in templates put every URL of a markdown link through it; `silence_url` returns
//! what `md_url` would (see [`labels`]).

mod args;
mod labels;
mod text;
mod time;

use std::borrow::Cow;

use jiff::tz::TimeZone;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, State};

use args::{arg, required};
use labels::label_pairs;
use text::{first_line, md_escape, md_url, ref_name, short_sha, truncate_bytes};
use time::{datetime, duration, since};

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
    env.add_filter("md_url", |value: Value| md_url(&value));
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
    labels::register(env);
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
            ("2015-04-20T14:31:42Z", "2015-04-20 14:31:42 +00:00"),
            (
                "2015-04-20T14:31:42.123456789Z",
                "2015-04-20 14:31:42 +00:00",
            ),
            ("2015-04-20T16:31:42+02:00", "2015-04-20 14:31:42 +00:00"),
            ("2015-04-20 14:31:42 UTC", "2015-04-20 14:31:42 +00:00"),
            ("2015-04-20 16:31:42 +0200", "2015-04-20 14:31:42 +00:00"),
            ("2015-04-20 16:31:42 +02:00", "2015-04-20 14:31:42 +00:00"),
            ("1429540302", "2015-04-20 14:31:42 +00:00"),
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
            "2015-04-20 14:31:42 +00:00"
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
        // The default format shows the zone's offset: a time without its zone is ambiguous.
        assert_eq!(
            env("Asia/Shanghai")
                .render_str("{{ t | datetime }}", ctx())
                .unwrap(),
            "2015-04-21 04:31:42 +08:00"
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
    fn md_url_encodes_what_could_end_a_link() {
        let cases = [
            // Unchanged: what real senders send.
            (
                "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0&g0.tab=1",
                "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0&g0.tab=1",
            ),
            (
                "https://github.com/o/r/compare/9fceb02d0ae5...4d2ab4e76d09",
                "https://github.com/o/r/compare/9fceb02d0ae5...4d2ab4e76d09",
            ),
            (
                "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fx&pc_slide=false",
                "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fx&pc_slide=false",
            ),
            (
                "HTTPS://Example.com/a_b*c[d]",
                "HTTPS://Example.com/a_b*c[d]",
            ),
            // Encoded: what could close the link or start another.
            (
                "http://prom) **INJECTED** [LOGIN HERE](http://evil.example/",
                "http://prom%29%20**INJECTED**%20[LOGIN%20HERE]%28http://evil.example/",
            ),
            (
                "https://github.com/o/r/tree/fix(login)",
                "https://github.com/o/r/tree/fix%28login%29",
            ),
            ("http://x/<b>\\`\"", "http://x/%3Cb%3E%5C%60%22"),
            ("http://x/a\nb\tc", "http://x/a%0Ab%09c"),
            ("http://x/告警", "http://x/%E5%91%8A%E8%AD%A6"),
            ("  http://x/a \n", "http://x/a"),
            // Refused: not a link DingTalk opens.
            ("javascript:alert(1)", ""),
            ("JavaScript://%0Aalert(1)", ""),
            ("data:text/html,<b>x</b>", ""),
            ("ftp://x/y", ""),
            ("/relative/path", ""),
            ("prom:9090/graph", ""),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(
                render("{{ u | md_url }}", context! { u => input }),
                expected,
                "{input:?}"
            );
            assert_eq!(
                render("{{ u | md_url | md_url }}", context! { u => input }),
                expected,
                "md_url twice, {input:?}"
            );
        }
        for value in [Value::from(()), Value::from(42), Value::from(true)] {
            assert_eq!(render("[{{ u | md_url }}]", context! { u => value }), "[]");
        }
        assert_eq!(render("[{{ missing | md_url }}]", context! {}), "[]");
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
